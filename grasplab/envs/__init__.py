"""Torch-native, functional, batched environments and their registry; real simulators.

``make("ballnav")``, ``make("wall", door_width=10.0)``, ``make("pointmaze", layout="large")``:
each name maps to an env class and its frozen config dataclass; keyword overrides replace config
fields and are validated by the config.

``make_sim("pointmaze-umaze")``, ``make_sim("pointmaze-medium")``, ``make_sim("pusht",
workers=2)``: real simulators (:class:`Simulator`, the ``sims`` extra) that execute plans in
MuJoCo / pymunk through Gymnasium; :class:`GymSimulator` adapts any Gymnasium env. A user's own
adapter enters by import path: ``make_sim("my_pkg.my_module:make_my_sim")`` calls that factory.

An evaluation protocol names a real simulator as ``env: "sim:<name or module:factory>"``
(:data:`SIM_PREFIX`); :func:`is_sim` tells the two kinds of env names apart.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from grasplab.envs.configs import BallNavConfig, PointMazeConfig, WallConfig

if TYPE_CHECKING:
    from grasplab.envs.base import Env, Tasks
    from grasplab.envs.sim import Simulator

_REGISTRY: dict[str, tuple[type, str]] = {
    "ballnav": (BallNavConfig, "grasplab.envs.ballnav:BallNavEnv"),
    "wall": (WallConfig, "grasplab.envs.wall:WallEnv"),
    "pointmaze": (PointMazeConfig, "grasplab.envs.pointmaze:PointMazeEnv"),
}
"""Name -> (config dataclass, ``module:class`` of the env, imported when one is built)."""

_EXPORTS = {
    "Env": "grasplab.envs.base",
    "Tasks": "grasplab.envs.base",
    "GymSimulator": "grasplab.envs.gym_sim",
    "GymSpec": "grasplab.envs.gym_sim",
    "reset_option": "grasplab.envs.gym_sim",
    "Execution": "grasplab.envs.sim",
    "Simulator": "grasplab.envs.sim",
    "episode_success": "grasplab.envs.sim",
}
"""Names that load their module (torch, numpy) when first used."""


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grasplab.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def names() -> list[str]:
    """Registered environment names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[type, str]:
    """The ``(config class, env class path)`` of ``name``; ``ValueError`` when unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def default_config(name: str) -> Any:
    """The default (frozen) config dataclass of environment ``name``.

    Raises:
        ValueError: When ``name`` is not registered.
    """
    return _entry(name)[0]()


def env_config(name: str, **overrides: Any) -> Any:
    """The validated config of environment ``name`` with ``overrides`` replaced (no torch).

    Args:
        name: A registered name (see :func:`names`).
        **overrides: Config fields to replace, e.g. ``max_step=0.5``.

    Raises:
        ValueError: On an unknown name, an unknown config field or an invalid value (the
            message names it).
    """
    config = default_config(name)
    fields = {f.name for f in dataclasses.fields(config)}
    for key in overrides:
        if key not in fields:
            raise ValueError(
                f"{name}: unknown config field {key!r}; fields: {', '.join(sorted(fields))}"
            )
    return dataclasses.replace(config, **overrides)


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
    config = env_config(name, **overrides)
    module, _, attr = _entry(name)[1].partition(":")
    return getattr(importlib.import_module(module), attr)(config)


_SIMS: dict[str, tuple[str, dict[str, Any]]] = {
    "pointmaze-umaze": ("grasplab.envs.sim_pointmaze", {"layout": "umaze"}),
    "pointmaze-medium": ("grasplab.envs.sim_pointmaze", {"layout": "medium"}),
    "pusht": ("grasplab.envs.sim_pusht", {}),
}
SIMS_EXTRA = 'pip install -e ".[sims]"'
"""How to install what the real simulators need."""
SIM_PREFIX = "sim:"
"""Prefix of a protocol's ``env`` naming a real simulator: ``sim:pusht``, ``sim:pkg.mod:fn``."""
SIM_METHODS = ("reset_to", "step", "render", "execute", "success", "distance", "close")
"""What a simulator adapter must offer (``reset_to``: the way to reset to a given state)."""


def is_sim(env: str) -> bool:
    """Whether a protocol's ``env`` names a real simulator (``sim:...``)."""
    return isinstance(env, str) and env.startswith(SIM_PREFIX)


def sim_name(env: str) -> str:
    """``sim:pusht`` -> ``pusht``; ``ValueError`` unless ``env`` names a simulator."""
    if not is_sim(env) or not env[len(SIM_PREFIX) :]:
        raise ValueError(f"expected 'sim:<simulator>', got {env!r}")
    return env[len(SIM_PREFIX) :]


def check_sim_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is registered or looks like ``module:factory``."""
    module, sep, attr = name.partition(":")
    if name in _SIMS or (sep and module and attr.isidentifier()):
        return
    raise ValueError(
        f"unknown simulator {name!r}; known: {', '.join(sim_names())}, or an import path "
        "'package.module:factory'"
    )


def _factory(name: str) -> Callable[..., Any]:
    """The factory of ``module:attr`` (``ValueError`` naming what is missing)."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"simulator {name!r}: cannot import {module_name!r} ({err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"simulator {name!r}: {module_name} has no callable {attr!r}")
    return factory


def check_adapter(sim: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``sim`` offers every :data:`SIM_METHODS` and its sizes.

    The message names what is missing; a missing ``reset_to`` means the adapter has no way to
    reset to a given state, so plans could not be executed from the task's starts.
    """
    missing = [m for m in SIM_METHODS if not callable(getattr(sim, m, None))]
    if "reset_to" in missing:
        raise ValueError(
            f"simulator {name!r} has no reset_to(states): no way to reset to a given state, so "
            "plans cannot be executed from the tasks' starts"
        )
    missing += [
        a for a in ("state_dim", "action_dim", "action_low", "action_high") if not hasattr(sim, a)
    ]
    if missing:
        raise ValueError(f"simulator {name!r} lacks {', '.join(missing)} (see grasplab.envs.sim)")


def sim_names() -> list[str]:
    """Registered real-simulator names, sorted."""
    return sorted(_SIMS)


def make_sim(name: str, **kwargs: Any) -> Simulator:
    """Build real simulator ``name``.

    Args:
        name: A registered name (see :func:`sim_names`) or the import path
            ``package.module:factory`` of a callable taking ``**kwargs`` and returning a
            :class:`Simulator` (checked by :func:`check_adapter`).
        **kwargs: ``workers`` (processes sharding each batch, default 1), ``action_block``
            (env steps per model step, default 1), ``image_size`` (default 64).

    Returns:
        The simulator; close it when done (it is also a context manager).

    Raises:
        ValueError: On an unknown name, an invalid keyword value, or an adapter lacking a
            method (e.g. no ``reset_to``: no way to reset to a given state).
        ImportError: When the ``sims`` extra is not installed (the message says how).
    """
    check_sim_name(name)
    if name not in _SIMS:
        sim = _factory(name)(**kwargs)
        try:
            check_adapter(sim, name)
        except ValueError:
            close = getattr(sim, "close", None)
            if callable(close):
                close()
            raise
        return sim
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
    "SIM_PREFIX",
    "Simulator",
    "Tasks",
    "default_config",
    "check_adapter",
    "env_config",
    "check_sim_name",
    "episode_success",
    "is_sim",
    "make",
    "make_sim",
    "names",
    "reset_option",
    "sim_name",
    "sim_names",
]
