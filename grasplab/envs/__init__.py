"""Torch-native, functional, batched environments and their registry; real simulators.

``make("ballnav")``, ``make("wall", door_width=10.0)``, ``make("pointmaze", layout="large")``:
each name maps to an env class and its frozen config dataclass; keyword overrides replace config
fields and are validated by the config.

``make_sim("pointmaze-umaze")``, ``make_sim("pointmaze-medium")``, ``make_sim("pusht",
workers=2)``: real simulators (:class:`Simulator`, the ``sims`` extra) that execute plans in
MuJoCo / pymunk through Gymnasium; :class:`GymSimulator` adapts any Gymnasium env.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from grasplab.envs import ballnav, pointmaze, wall
from grasplab.envs.base import Env, Tasks
from grasplab.envs.gym_sim import GymSimulator, GymSpec, reset_option
from grasplab.envs.sim import Execution, Simulator, episode_success

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


_SIMS: dict[str, tuple[str, dict[str, Any]]] = {
    "pointmaze-umaze": ("grasplab.envs.sim_pointmaze", {"layout": "umaze"}),
    "pointmaze-medium": ("grasplab.envs.sim_pointmaze", {"layout": "medium"}),
    "pusht": ("grasplab.envs.sim_pusht", {}),
}
SIMS_EXTRA = 'pip install -e ".[sims]"'
"""How to install what the real simulators need."""


def sim_names() -> list[str]:
    """Registered real-simulator names, sorted."""
    return sorted(_SIMS)


def make_sim(name: str, **kwargs: Any) -> Simulator:
    """Build real simulator ``name``.

    Args:
        name: A registered name (see :func:`sim_names`).
        **kwargs: ``workers`` (processes sharding each batch, default 1), ``action_block``
            (env steps per model step, default 1), ``image_size`` (default 64).

    Returns:
        The simulator; close it when done (it is also a context manager).

    Raises:
        ValueError: On an unknown name or an invalid keyword value.
        ImportError: When the ``sims`` extra is not installed (the message says how).
    """
    if name not in _SIMS:
        raise ValueError(f"unknown simulator {name!r}; known: {', '.join(sim_names())}")
    module_name, fixed = _SIMS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if (err.name or "").startswith("grasplab"):
            raise
        raise ImportError(
            f"simulator {name!r} needs the `sims` extra (missing module {err.name!r}): {SIMS_EXTRA}"
        ) from err
    return module.make(**fixed, **kwargs)


__all__ = [
    "Env",
    "Execution",
    "GymSimulator",
    "GymSpec",
    "SIMS_EXTRA",
    "Simulator",
    "Tasks",
    "default_config",
    "episode_success",
    "make",
    "make_sim",
    "names",
    "reset_option",
    "sim_names",
]
