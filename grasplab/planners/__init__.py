"""Planners: GRASP and its baselines (CEM, GD, MPPI, LatCo), one batched interface.

Every planner is pure (it holds only a frozen, validated config) and solves all ``B`` problems
of a :class:`PlanProblem` in one ``plan`` call, returning a :class:`PlanResult` with a trace.
A user's planner enters by import path (:func:`planner_classes`) beside the built-in five.

The configs and the registry of names (:data:`CONFIGS`, :func:`config_class`,
:func:`planner_names`, :func:`config_from_dict`, :func:`config_to_dict`) import no torch: a
process that only checks planner configs (a sweep's driver) need not load it. The planners, the
shared types and :data:`PLANNERS` load lazily, on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from grasplab.planners.configs import (
    CEMConfig,
    GDConfig,
    GRASPConfig,
    LatCoConfig,
    MPPIConfig,
    PlannerConfig,
    check_config_class,
    config_from_dict,
    config_to_dict,
)
from grasplab.targets import import_target

if TYPE_CHECKING:
    from grasplab.planners.base import Planner

CONFIGS: dict[str, type[PlannerConfig]] = {
    "grasp": GRASPConfig,
    "cem": CEMConfig,
    "gd": GDConfig,
    "mppi": MPPIConfig,
    "latco": LatCoConfig,
}
"""Registry: planner name -> config class; no torch (the planners: :func:`planner_classes`)."""

_PLANNER_CLASSES = {
    "grasp": ("grasplab.planners.grasp", "GRASPPlanner"),
    "cem": ("grasplab.planners.sampling", "CEMPlanner"),
    "gd": ("grasplab.planners.gd", "GDPlanner"),
    "mppi": ("grasplab.planners.sampling", "MPPIPlanner"),
    "latco": ("grasplab.planners.latco", "LatCoPlanner"),
}
"""Registry name -> (module, class name) of the built-in planner, imported on first use."""

_EXPORTS = {
    "Planner": "grasplab.planners.base",
    "PlanProblem": "grasplab.planners.base",
    "PlanResult": "grasplab.planners.base",
    "Probe": "grasplab.planners.base",
    "goal_cost": "grasplab.planners.base",
    "model_cost": "grasplab.planners.base",
    "GDPlanner": "grasplab.planners.gd",
    "GRASPPlanner": "grasplab.planners.grasp",
    "LatCoPlanner": "grasplab.planners.latco",
    "CEMPlanner": "grasplab.planners.sampling",
    "MPPIPlanner": "grasplab.planners.sampling",
}
"""Lazily loaded attribute -> the module (importing torch) that defines it."""

CONFIG_ATTRIBUTES = ("config_class", "Config")
"""Where a planner class given by import path declares its frozen config dataclass."""


def is_target(name: str) -> bool:
    """True when ``name`` is an import path (``pkg.module:Planner``), not a registry name."""
    return ":" in name or "." in name


def planner_names() -> list[str]:
    """The built-in planners' registry names, sorted."""
    return sorted(CONFIGS)


def config_class(name: str) -> type:
    """The config class of a registry name (no torch imported) or of an import path.

    A registry name's config class comes from :data:`CONFIGS`; an import path's is its planner
    class's (:func:`planner_classes`, which imports the user's module).

    Raises:
        ValueError: Unknown name, unimportable path, or a class that does not fit (named).
    """
    if name in CONFIGS:
        return CONFIGS[name]
    return planner_classes(name)[1]


def planner_classes(name: str) -> tuple[type, type]:
    """``(planner class, config class)`` of a registry name or an import path.

    A built-in planner's module (and torch) is imported on first use. A planner given by import
    path (``pkg.module:MyPlanner`` or ``pkg.module.MyPlanner``) is a class built as
    ``MyPlanner(config)`` with a ``plan`` method (the :class:`Planner` protocol); its frozen
    config dataclass is its ``config_class`` attribute (or ``Config``). The config's fields are
    the search-space names and the MLflow params, as for the built-in planners.

    Raises:
        ValueError: Unknown name, unimportable path, or a class that does not fit (named).
    """
    if name in CONFIGS:
        module, attribute = _PLANNER_CLASSES[name]
        return getattr(importlib.import_module(module), attribute), CONFIGS[name]
    if not isinstance(name, str) or not is_target(name):
        raise ValueError(f"unknown planner {name!r}; known: {planner_names()}")
    planner_cls = import_target(name, "planner.target")
    if not isinstance(planner_cls, type) or not callable(getattr(planner_cls, "plan", None)):
        raise ValueError(f"planner.target {name!r} is not a class with a plan() method")
    config_cls = next(
        (getattr(planner_cls, a) for a in CONFIG_ATTRIBUTES if hasattr(planner_cls, a)), None
    )
    if config_cls is None:
        raise ValueError(
            f"planner.target {name!r} declares no config dataclass "
            f"(a class attribute {' or '.join(CONFIG_ATTRIBUTES)})"
        )
    check_config_class(config_cls, f"planner.target {name!r}")
    return planner_cls, config_cls


def make_planner(name: str, config: dict[str, Any] | PlannerConfig | None = None) -> Planner:
    """Build a planner by registry name or import path from a config object or a dict.

    Raises:
        ValueError: Unknown planner name, unknown config field or invalid value (named).
    """
    planner_cls, config_cls = planner_classes(name)
    if config is None or isinstance(config, dict):
        config = config_from_dict(config_cls, config or {})
    if not isinstance(config, config_cls):
        raise ValueError(f"planner {name!r} needs a {config_cls.__name__}, got {type(config)}")
    return planner_cls(config)


def _planners() -> dict[str, tuple[type, type[PlannerConfig]]]:
    """``PLANNERS``: registry name -> (planner class, config class); imports every planner."""
    return {name: planner_classes(name) for name in CONFIGS}


__all__ = [
    "CEMConfig",
    "CONFIGS",
    "GDConfig",
    "GRASPConfig",
    "LatCoConfig",
    "MPPIConfig",
    "PLANNERS",
    "PlannerConfig",
    "config_class",
    "config_from_dict",
    "config_to_dict",
    "make_planner",
    "planner_classes",
    "planner_names",
]
__all__ += sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "PLANNERS":
        # Registry: planner name -> (planner class, config class); built once (importing torch),
        # then a plain module attribute.
        planners = globals()["PLANNERS"] = _planners()
        return planners
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grasplab.planners' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
