"""Planners: GRASP and its baselines (CEM, GD, MPPI, LatCo), one batched interface.

Every planner is pure (it holds only a frozen, validated config) and solves all ``B`` problems
of a :class:`PlanProblem` in one ``plan`` call, returning a :class:`PlanResult` with a trace.
A user's planner enters by import path (:func:`planner_classes`) beside the built-in five.
"""

from __future__ import annotations

from typing import Any

from grasplab.planners.base import (
    Planner,
    PlannerConfig,
    PlanProblem,
    PlanResult,
    Probe,
    check_config_class,
    config_from_dict,
    config_to_dict,
    goal_cost,
    model_cost,
)
from grasplab.planners.gd import GDConfig, GDPlanner
from grasplab.planners.grasp import GRASPConfig, GRASPPlanner
from grasplab.planners.latco import LatCoConfig, LatCoPlanner
from grasplab.planners.sampling import CEMConfig, CEMPlanner, MPPIConfig, MPPIPlanner
from grasplab.targets import import_target

PLANNERS: dict[str, tuple[type, type[PlannerConfig]]] = {
    "grasp": (GRASPPlanner, GRASPConfig),
    "cem": (CEMPlanner, CEMConfig),
    "gd": (GDPlanner, GDConfig),
    "mppi": (MPPIPlanner, MPPIConfig),
    "latco": (LatCoPlanner, LatCoConfig),
}
"""Registry: planner name -> (planner class, config class)."""


CONFIG_ATTRIBUTES = ("config_class", "Config")
"""Where a planner class given by import path declares its frozen config dataclass."""


def is_target(name: str) -> bool:
    """True when ``name`` is an import path (``pkg.module:Planner``), not a registry name."""
    return ":" in name or "." in name


def planner_classes(name: str) -> tuple[type, type]:
    """``(planner class, config class)`` of a registry name or an import path.

    A planner given by import path (``pkg.module:MyPlanner`` or ``pkg.module.MyPlanner``) is a
    class built as ``MyPlanner(config)`` with a ``plan`` method (the :class:`Planner` protocol);
    its frozen config dataclass is its ``config_class`` attribute (or ``Config``). The config's
    fields are the search-space names and the MLflow params, as for the built-in planners.

    Raises:
        ValueError: Unknown name, unimportable path, or a class that does not fit (named).
    """
    if name in PLANNERS:
        return PLANNERS[name]
    if not isinstance(name, str) or not is_target(name):
        raise ValueError(f"unknown planner {name!r}; known: {sorted(PLANNERS)}")
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


__all__ = [
    "PLANNERS",
    "CEMConfig",
    "CEMPlanner",
    "GDConfig",
    "GDPlanner",
    "GRASPConfig",
    "GRASPPlanner",
    "LatCoConfig",
    "LatCoPlanner",
    "MPPIConfig",
    "MPPIPlanner",
    "PlanProblem",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "Probe",
    "config_from_dict",
    "config_to_dict",
    "goal_cost",
    "make_planner",
    "model_cost",
    "planner_classes",
]
