"""GD: gradient descent on the actions through the full serial rollout (shooting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from grasplab.planners.base import (
    PlannerConfig,
    PlanProblem,
    PlanResult,
    Probe,
    ProbeSchedule,
    finish,
    initial_actions,
    non_negative,
    positive,
    randn,
    terminal_state,
)
from grasplab.planners.streams import RandomSource


@dataclass(frozen=True)
class GDConfig(PlannerConfig):
    """GD hyperparameters (defaults: MPC-GD of the robust-WM paper, Adam lr 0.2).

    DINO-WM's setting (``optimizer="sgd"``, ``lr=1.0``, ``n_steps=1000``,
    ``action_noise=0.003``) is one override away.
    """

    n_steps: int = 300
    """Gradient steps on the actions."""
    lr: float = 0.2
    """Step size."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser for the actions."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to the actions after each step (DINO-WM: 0.003)."""
    probe_every: int = 10
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_steps": (positive, "must be > 0"),
        "lr": (positive, "must be > 0"),
        "action_noise": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }


class GDPlanner:
    """Shooting gradient descent; pure: holds only its config."""

    def __init__(self, config: GDConfig | None = None) -> None:
        self.config = config or GDConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call."""
        cfg, p = self.config, problem
        z0, goal = p.z0.detach(), p.goal.detach()
        low, high = p.bounds()
        actions = initial_actions(p, init).requires_grad_(True)
        opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
        optimizer = opt_cls([actions], lr=cfg.lr)
        probes = ProbeSchedule(probe, cfg.probe_every, p.batch, z0)
        trace: dict[str, list[torch.Tensor]] = {"iteration": [], "cost": []}
        iteration = 0
        for iteration in range(cfg.n_steps):
            cost = p.cost(terminal_state(p.model, z0, actions), goal)
            optimizer.zero_grad(set_to_none=True)
            cost.sum().backward()
            optimizer.step()
            with torch.no_grad():
                if cfg.action_noise > 0:
                    actions.add_(cfg.action_noise * randn(tuple(actions.shape), actions, generator))
                actions.clamp_(low, high)
                actions.copy_(probes.apply(actions))
            trace["iteration"].append(torch.tensor(iteration))
            trace["cost"].append(cost.detach())
            if probes(iteration, actions, steps=(iteration + 1) * p.horizon):
                break
        return finish(
            p,
            probes.apply(actions.detach()),
            trace,
            (iteration + 1) * p.horizon,
            iteration + 1,
            **probes.result_fields(),
        )
