"""Import paths of the user's own code: ``pkg.module:attr`` (or Hydra's ``pkg.module.attr``).

A user's world model or planner enters grasplab as an import path plus keyword arguments,
never as a pickled object: the path travels to every worker as plain data and each worker
imports it there (the user's package travels with the job, or is installed).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any


def split_target(path: Any, what: str) -> tuple[str, str]:
    """``"pkg.mod:attr"`` or ``"pkg.mod.attr"`` -> ``("pkg.mod", "attr")``.

    Raises:
        ValueError: Not a string of that form (the message names ``what``).
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{what} must be an import path 'pkg.module:name', got {path!r}")
    module, sep, attr = path.strip().partition(":")
    if not sep:
        module, _, attr = module.rpartition(".")
    if not module or not attr or not all(p.isidentifier() for p in [*module.split("."), attr]):
        raise ValueError(f"{what} must be an import path 'pkg.module:name', got {path!r}")
    return module, attr


def import_target(path: Any, what: str) -> Any:
    """The object named by an import path.

    Args:
        path: ``pkg.module:attr`` (``attr`` may be dotted) or ``pkg.module.attr``.
        what: What the path is for, named in errors (``world_model.target``).

    Raises:
        ValueError: One line naming the path and why it cannot be imported.
    """
    module_name, attr = split_target(path, what)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as error:  # the user's module may raise anything on import
        raise ValueError(
            f"{what} {path!r}: cannot import module {module_name!r} "
            f"({type(error).__name__}: {first_line(error)})"
        ) from error
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def call_with_accepted(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], **offered: Any
) -> Any:
    """``factory(**kwargs, **offered)``, passing only the ``offered`` names it declares.

    ``kwargs`` always go in (a wrong one fails like any call); of ``offered`` only those that
    ``factory``'s signature names explicitly are passed (``**kwargs`` catch-alls do not count).
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: offer nothing
        params = {}
    extra = {k: v for k, v in offered.items() if k in params and k not in kwargs}
    return factory(**kwargs, **extra)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type when empty)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
