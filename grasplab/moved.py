"""Names that moved: importing one from its old home fails with one line naming the new one."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def moved_names(module: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``module`` whose moved names fail naming their home.

    Args:
        module: The old module's name (``__name__``).
        homes: Moved name -> its new dotted home (``package.module.name``).

    Returns:
        The function to assign to the old module's ``__getattr__``: for a moved name it raises
        :class:`ImportError` (so ``from old import name`` shows the message); for any other
        name the usual :class:`AttributeError`.
    """

    def __getattr__(name: str) -> object:
        if name in homes:
            raise ImportError(f"{module}.{name} moved to {homes[name]}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
