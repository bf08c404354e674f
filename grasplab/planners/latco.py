"""LatCo: plain lifted collocation (Rybkin et al. 2021), the paper's lifted baseline.

The same lifted objective as GRASP with full gradients through the model's state input, no
state noise, no sync and (by default) no dense goal term: ``s_H := goal`` makes the last
dynamics residual the goal term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from grasplab.planners.base import (
    PlannerConfig,
    PlanProblem,
    PlanResult,
    Probe,
    non_negative,
    positive,
)
from grasplab.planners.grasp import GRASPConfig, run_lifted
from grasplab.planners.streams import RandomSource


@dataclass(frozen=True)
class LatCoConfig(PlannerConfig):
    """LatCo hyperparameters (lifted Adam step sizes as GRASP's authors' fork)."""

    n_steps: int = 750
    """Lifted iterations."""
    lr_states: float = 0.1
    """Adam step size for the virtual states, in units of the model's ``latent_spread`` (as
    GRASP's)."""
    lr_actions: float = 0.005
    """Adam step size for the actions."""
    goal_weight: float = 0.0
    """Optional dense goal term weight (0 = plain LatCo)."""
    init_noise: float = 0.001
    """Std of the noise on the straight-line state initialisation (units of ``latent_spread``)."""
    probe_every: int = 25
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_steps": (positive, "must be > 0"),
        "lr_states": (non_negative, "must be >= 0"),
        "lr_actions": (positive, "must be > 0"),
        "goal_weight": (non_negative, "must be >= 0"),
        "init_noise": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }

    def as_lifted(self) -> GRASPConfig:
        """The equivalent GRASP configuration: no stop-gradient, no noise, no sync."""
        return GRASPConfig(
            n_steps=self.n_steps,
            lr_states=self.lr_states,
            lr_actions=self.lr_actions,
            noise_scale=0.0,
            goal_weight=self.goal_weight,
            sync_interval=0,
            init_noise=self.init_noise,
            detach_states=False,
            probe_every=self.probe_every,
        )


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
