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


def moved_module(
    module: str,
    home: str,
    renamed: Mapping[str, str] | None = None,
    elsewhere: Mapping[str, str] | None = None,
) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for a module whose every name moved to ``home``.

    Args:
        module: The old module's name (``__name__``).
        home: The module that now holds its names.
        renamed: Old name -> new name, for names that changed on the way.
        elsewhere: Old name -> its full new dotted home, for names that went elsewhere.

    Returns:
        The function to assign to the old module's ``__getattr__``: any public or listed name
        raises :class:`ImportError` naming ``home``; dunder names the usual
        :class:`AttributeError`.
    """
    renamed = dict(renamed or {})
    elsewhere = dict(elsewhere or {})

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new = elsewhere.get(name, f"{home}.{renamed.get(name, name)}")
        raise ImportError(f"{module}.{name} moved to {new}")

    return __getattr__
