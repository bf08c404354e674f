"""GD: gradient descent on the actions through the full serial rollout (shooting)."""

from __future__ import annotations

import torch

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
from grasplab.planners.configs import GDConfig
from grasplab.planners.streams import RandomSource


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
