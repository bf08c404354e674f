"""A user's planner: random shooting around the best plan, with a shrinking spread.

Its config is a plain frozen dataclass (not derived from grasplab's ``PlannerConfig``): grasplab
finds it as the planner's ``config_class`` attribute, and its field names are the search-space
names and the MLflow params.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from grasplab.planners.base import (
    PlanProblem,
    PlanResult,
    Probe,
    ProbeSchedule,
    finish,
    initial_actions,
    randn,
    terminal_state,
)


@dataclass(frozen=True)
class ShootingConfig:
    """Random-shooting knobs (validated on construction)."""

    n_samples: int = 64
    """Candidate plans per round and problem."""
    n_rounds: int = 8
    """Sampling rounds."""
    var_scale: float = 1.0
    """First round's spread, as a fraction of the half action range."""
    shrink: float = 0.7
    """Spread multiplier after each round."""
    probe_every: int = 1
    """Rounds between calls of the caller's success probe."""

    def __post_init__(self) -> None:
        for name in ("n_samples", "n_rounds", "probe_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ShootingConfig.{name} must be an int >= 1, got {value!r}")
        if not 0 < self.var_scale <= 10 or not 0 < self.shrink <= 1:
            raise ValueError("ShootingConfig: need 0 < var_scale <= 10 and 0 < shrink <= 1")


class ShootingPlanner:
    """Pure: holds only its frozen config; solves all ``B`` problems in one batched call."""

    config_class = ShootingConfig

    def __init__(self, config: ShootingConfig | None = None) -> None:
        self.config = config or ShootingConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: torch.Generator | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Best of ``n_rounds x n_samples`` candidates ``(B, S, H, A)`` per problem."""
        cfg, p = self.config, problem
        low, high = p.bounds()
        B, H, A, S = p.batch, p.horizon, p.model.action_dim, cfg.n_samples
        z0, goal = p.z0.detach(), p.goal.detach()
        probes = ProbeSchedule(probe, cfg.probe_every, B, z0)
        trace: dict[str, list[Tensor]] = {"iteration": [], "best_cost": []}
        rows = torch.arange(B, device=z0.device)
        with torch.no_grad():
            best = initial_actions(p, init)
            best_cost = p.cost(terminal_state(p.model, z0, best), goal)  # (B,)
            std = cfg.var_scale * (high - low) / 2
            round_ = 0
            for round_ in range(cfg.n_rounds):
                noise = randn((B, S, H, A), z0, generator)
                samples = (best.unsqueeze(1) + std * noise).clamp(low, high)
                final = terminal_state(p.model, z0.unsqueeze(1).expand(B, S, -1), samples)
                cost, index = p.cost(final, goal.unsqueeze(1)).min(dim=1)  # (B,)
                better = cost < best_cost
                best = torch.where(better.view(B, 1, 1), samples[rows, index], best)
                best = probes.apply(best)
                best_cost = torch.minimum(cost, best_cost)
                std = std * cfg.shrink
                trace["iteration"].append(torch.tensor(round_))
                trace["best_cost"].append(best_cost.clone())
                if probes(round_, best):
                    break
        steps = H + (round_ + 1) * S * H
        solved = probes.solved if probe is not None else None
        return finish(p, probes.apply(best), trace, steps, round_ + 1, solved=solved)
