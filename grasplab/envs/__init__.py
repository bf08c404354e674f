"""Torch-native, functional, batched environments and their registry.

``make("ballnav")``, ``make("wall", door_width=10.0)``, ``make("pointmaze", layout="large")``:
each name maps to an env class and its frozen config dataclass; keyword overrides replace config
fields and are validated by the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from grasplab.envs import ballnav, pointmaze, wall
from grasplab.envs.base import Env, Tasks

_REGISTRY: dict[str, tuple[Callable[[], Any], Callable[[Any], Env]]] = {
    "ballnav": (ballnav.default_config, ballnav.BallNavEnv),
    "wall": (wall.default_config, wall.WallEnv),
    "pointmaze": (pointmaze.default_config, pointmaze.PointMazeEnv),
}


def names() -> list[str]:
    """Registered environment names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[Callable[[], Any], Callable[[Any], Env]]:
    """The ``(default_config, env_class)`` of ``name``; ``ValueError`` when unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def default_config(name: str) -> Any:
    """The default (frozen) config dataclass of environment ``name``.

    Raises:
        ValueError: When ``name`` is not registered.
    """
    return _entry(name)[0]()


def make(name: str, **overrides: Any) -> Env:
    """Build environment ``name`` from its default config with ``overrides`` replaced.

    Args:
        name: A registered name (see :func:`names`).
        **overrides: Config fields to replace, e.g. ``max_step=0.5``.

    Returns:
        The environment.

    Raises:
        ValueError: On an unknown name, an unknown config field or an invalid value (the
            message names it).
    """
    make_config, env_class = _entry(name)
    config = make_config()
    fields = {f.name for f in dataclasses.fields(config)}
    for key in overrides:
        if key not in fields:
            raise ValueError(
                f"{name}: unknown config field {key!r}; fields: {', '.join(sorted(fields))}"
            )
    return env_class(dataclasses.replace(config, **overrides))


__all__ = ["Env", "Tasks", "default_config", "make", "names"]
