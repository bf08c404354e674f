"""CEM and MPPI: sampling planners sharing one batched loop.

Each iteration samples candidates ``(B, S, H, A)`` around a Gaussian ``(mean, std)`` ``(B, H, A)``,
rolls all ``B x S`` of them out in one serial pass (no Python loop over problems or samples),
scores the terminal cost ``(B, S)``, and refits the Gaussian from the top-k elites.
"""

from __future__ import annotations

from collections.abc import Callable

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
)
from grasplab.planners.configs import CEMConfig, MPPIConfig
from grasplab.planners.streams import RandomSource
from grasplab.world_models.base import WorldModel

Refit = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
"""``refit(elites (B, K, H, A), elite_cost (B, K), half_range (A,)) -> mean, std (B, H, A)``."""


class CEMPlanner:
    """Cross-entropy method; pure: holds only its config."""

    def __init__(self, config: CEMConfig | None = None) -> None:
        self.config = config or CEMConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call; returns the final Gaussian mean."""
        cfg = self.config

        def refit(elites: Tensor, cost: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
            return elites.mean(dim=1), elites.std(dim=1).clamp_min(cfg.min_std * half)

        return sample_loop(problem, init, generator, probe, cfg, cfg.var_scale, refit)


class MPPIPlanner:
    """MPPI with elites (TD-MPC2 style); pure: holds only its config."""

    def __init__(self, config: MPPIConfig | None = None) -> None:
        self.config = config or MPPIConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call; returns the final weighted mean."""
        cfg = self.config

        def refit(elites: Tensor, cost: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
            c_min = cost[:, :1]
            spread = (cost[:, -1:] - c_min).clamp_min(1e-12)
            w = torch.softmax(-(cost - c_min) / (cfg.temperature * spread), dim=1)
            w = w.view(*w.shape, 1, 1)  # (B, K, 1, 1)
            mean = (w * elites).sum(dim=1)
            var = (w * (elites - mean.unsqueeze(1)).pow(2)).sum(dim=1)
            return mean, var.sqrt().clamp(cfg.min_std * half, cfg.max_std * half)

        return sample_loop(problem, init, generator, probe, cfg, cfg.init_std, refit)


def terminal_state_time_major(model: WorldModel, z0: Tensor, actions: Tensor) -> Tensor:
    """Last state ``(..., D)`` of the rollout of time-major actions ``(H, ..., A)``."""
    z = z0
    for t in range(actions.shape[0]):
        z = model.step(z, actions[t])
    return z


def sample_loop(
    problem: PlanProblem,
    init: PlanResult | None,
    generator: RandomSource | None,
    probe: Probe | None,
    cfg: CEMConfig | MPPIConfig,
    init_std: float,
    refit: Refit,
) -> PlanResult:
    """The shared sample -> roll out -> select elites -> refit loop."""
    p = problem
    z0, goal = p.z0.detach(), p.goal.detach()
    low, high = p.bounds()
    half = (high - low) / 2
    B, H, A, S, K = p.batch, p.horizon, p.model.action_dim, cfg.n_samples, cfg.n_elites
    mean = initial_actions(p, init)
    std = (init_std * half).expand(B, H, A).clone()
    z0s, goals = z0.unsqueeze(1).expand(B, S, -1), goal.unsqueeze(1)
    rows = torch.arange(B, device=z0.device).unsqueeze(1)
    probes = ProbeSchedule(probe, cfg.probe_every, B, z0)
    trace: dict[str, list[Tensor]] = {"iteration": [], "elite_cost": [], "std": []}
    iteration = 0
    with torch.no_grad():
        for iteration in range(cfg.n_iterations):
            # Candidates are drawn time-major (H, B, S, A) so that every rollout step reads a
            # contiguous (B, S, A) slice; in-place ops avoid extra (B, S, H, A) temporaries.
            samples = randn((H, B, S, A), mean, generator, batch_dim=1)
            samples.mul_(std.transpose(0, 1).unsqueeze(2)).add_(mean.transpose(0, 1).unsqueeze(2))
            samples.clamp_(low, high)
            cost = p.cost(terminal_state_time_major(p.model, z0s, samples), goals)  # (B, S)
            elite_cost, idx = cost.topk(K, dim=1, largest=False, sorted=True)
            elites = samples[:, rows, idx].movedim(0, 2)  # (B, K, H, A)
            mean, std = refit(elites, elite_cost, half)
            mean = probes.apply(mean)
            trace["iteration"].append(torch.tensor(iteration))
            trace["elite_cost"].append(elite_cost[:, 0])
            trace["std"].append(std.mean(dim=(1, 2)))
            if probes(iteration, mean, steps=(iteration + 1) * S * H):
                break
    return finish(
        p,
        probes.apply(mean),
        trace,
        (iteration + 1) * S * H,
        iteration + 1,
        extras={"std": std},
        **probes.result_fields(),
    )
