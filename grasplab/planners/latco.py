"""LatCo: plain lifted collocation (Rybkin et al. 2021), the paper's lifted baseline.

The same lifted objective as GRASP with full gradients through the model's state input, no
state noise, no sync and (by default) no dense goal term: ``s_H := goal`` makes the last
dynamics residual the goal term.
"""

from __future__ import annotations

from grasplab.planners.base import PlanProblem, PlanResult, Probe
from grasplab.planners.configs import LatCoConfig
from grasplab.planners.grasp import run_lifted
from grasplab.planners.streams import RandomSource


class LatCoPlanner:
    """Plain lifted collocation; pure: holds only its config."""

    def __init__(self, config: LatCoConfig | None = None) -> None:
        self.config = config or LatCoConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call."""
        return run_lifted(problem, self.config.as_lifted(), init, generator, probe)
