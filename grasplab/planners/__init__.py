"""Planners: GRASP and its baselines (CEM, GD, MPPI, LatCo), one batched interface.

Every planner is pure (it holds only a frozen, validated config) and solves all ``B`` problems
of a :class:`PlanProblem` in one ``plan`` call, returning a :class:`PlanResult` with a trace.
"""

from __future__ import annotations

from typing import Any

from grasplab.planners.base import (
    Planner,
    PlannerConfig,
    PlanProblem,
    PlanResult,
    Probe,
    goal_cost,
)
from grasplab.planners.gd import GDConfig, GDPlanner
from grasplab.planners.grasp import GRASPConfig, GRASPPlanner
from grasplab.planners.latco import LatCoConfig, LatCoPlanner
from grasplab.planners.sampling import CEMConfig, CEMPlanner, MPPIConfig, MPPIPlanner

PLANNERS: dict[str, tuple[type, type[PlannerConfig]]] = {
    "grasp": (GRASPPlanner, GRASPConfig),
    "cem": (CEMPlanner, CEMConfig),
    "gd": (GDPlanner, GDConfig),
    "mppi": (MPPIPlanner, MPPIConfig),
    "latco": (LatCoPlanner, LatCoConfig),
}
"""Registry: planner name -> (planner class, config class)."""


def make_planner(name: str, config: dict[str, Any] | PlannerConfig | None = None) -> Planner:
    """Build a planner by registry name from a config object or a plain dict of overrides.

    Raises:
        ValueError: Unknown planner name, unknown config field or invalid value (named).
    """
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; known: {sorted(PLANNERS)}")
    planner_cls, config_cls = PLANNERS[name]
    if config is None or isinstance(config, dict):
        config = config_cls.from_dict(config or {})
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
    "goal_cost",
    "make_planner",
]
