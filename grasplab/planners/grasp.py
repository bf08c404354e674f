"""GRASP: Gradient RelAxed Stochastic Planner (Psenka et al., arXiv 2602.00475).

Lifted virtual states optimised in parallel over time with one batched model call per
iteration, stop-gradient through the model's state input, a dense goal-shaping term, Gaussian
noise on the states only, and a periodic sync on the true shooting loss (GD or CEM). See
``shared/docs/GRASP.md`` for the derivation; :func:`grasplab.planners.lifted.lifted_losses`
for the objective.
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
    goal_cost,
    initial_actions,
    randn,
    randn_into,
    terminal_state,
)
from grasplab.planners.configs import GRASPConfig
from grasplab.planners.configs import Schedule as Schedule
from grasplab.planners.lifted import (
    fused_lifted_losses,
    initial_states,
    latent_units,
    lifted_losses,
    schedule_factor,
)
from grasplab.planners.streams import RandomSource
from grasplab.world_models.base import WorldModel, rollout


class GRASPPlanner:
    """GRASP; pure: holds only its config.

    Args:
        config: Hyperparameters (defaults when omitted).
    """

    def __init__(self, config: GRASPConfig | None = None) -> None:
        self.config = config or GRASPConfig()

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call; returns the last iterate (after a sync)."""
        return run_lifted(problem, self.config, init, generator, probe)


class _Sync:
    """The periodic sync on the true shooting loss; updates actions only."""

    def __init__(self, problem: PlanProblem, config: GRASPConfig) -> None:
        self.problem = problem
        self.config = config
        self.optimizer: torch.optim.Adam | None = None

    def __call__(
        self, actions: Tensor, states: Tensor, generator: RandomSource | None
    ) -> tuple[Tensor, int]:
        """Run ``sync_steps``; returns per-problem true cost ``(B,)`` and model steps used."""
        if self.config.sync_mode == "gd":
            return self._gd(actions)
        return self._cem(actions, states, generator)

    def _gd(self, actions: Tensor) -> tuple[Tensor, int]:
        p, cfg = self.problem, self.config
        if self.optimizer is None or cfg.sync_optimizer == "fresh":
            self.optimizer = torch.optim.Adam([actions], lr=cfg.sync_lr)
        low, high = p.bounds()
        for _ in range(cfg.sync_steps):
            cost = p.cost(terminal_state(p.model, p.z0, actions), p.goal)
            self.optimizer.zero_grad(set_to_none=True)
            reduce(cost, cfg.batch_reduction).backward()
            self.optimizer.step()
            if cfg.clamp_actions:
                with torch.no_grad():
                    actions.clamp_(low, high)
        return cost.detach(), cfg.sync_steps * p.horizon

    @torch.no_grad()
    def _cem(
        self, actions: Tensor, states: Tensor, generator: RandomSource | None
    ) -> tuple[Tensor, int]:
        p, cfg = self.problem, self.config
        low, high = p.bounds()
        B, H, A = actions.shape
        N = cfg.sync_samples
        roll = rollout(p.model, p.z0, actions)  # (B, H, D)
        targets = torch.cat([states, p.goal.unsqueeze(1)], dim=1)
        drift = goal_cost(roll, targets).sqrt()  # (B, H) RMS drift per step
        std = (cfg.sync_std_scale * drift).clamp(0.01, 1.0).unsqueeze(-1) * (high - low) / 2
        mean = actions.detach().clone()
        best, best_cost = mean.clone(), p.cost(roll[:, -1], p.goal)
        z0 = p.z0.unsqueeze(1).expand(B, N, -1)
        goal = p.goal.unsqueeze(1)
        for _ in range(cfg.sync_steps):
            noise = randn((B, N, H, A), mean, generator)
            samples = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(low, high)
            samples[:, 0] = mean  # keep the current plan among the candidates
            cost = p.cost(terminal_state(p.model, z0, samples), goal)  # (B, N)
            elite_cost, idx = cost.topk(cfg.sync_elites, dim=1, largest=False)
            elites = samples.gather(1, idx.view(B, -1, 1, 1).expand(-1, -1, H, A))
            mean, std = elites.mean(dim=1), elites.std(dim=1).clamp_min(1e-3)
            better = elite_cost[:, 0] < best_cost
            best = torch.where(better.view(B, 1, 1), elites[:, 0], best)
            best_cost = torch.where(better, elite_cost[:, 0], best_cost)
        actions.copy_(best)
        return best_cost, H + cfg.sync_steps * N * H


def run_lifted(
    problem: PlanProblem,
    config: GRASPConfig,
    init: PlanResult | None,
    generator: RandomSource | None,
    probe: Probe | None,
) -> PlanResult:
    """The lifted optimisation loop (GRASP; LatCo is the special case without noise/sync/sg)."""
    cfg, p = config, problem
    z0, goal = p.z0.detach(), p.goal.detach()
    low, high = p.bounds()
    actions = initial_actions(p, init).requires_grad_(True)
    # Virtual states are optimised in units of the model's latent spread (1 when it declares
    # none): Adam's steps (~lr_states) and the noise (sigma) are fractions of that spread.
    unit = latent_units(p.model, z0)
    scaled = (initial_states(p, init, cfg.init_noise, generator) / unit).requires_grad_(True)
    optimizer = main_optimizer(scaled, actions, cfg)
    losses = _losses_fn(p, z0, unit, goal, cfg.detach_states, cfg.compile_losses)
    noise = torch.empty_like(scaled, requires_grad=False)
    sync = _Sync(p, cfg)
    probes = ProbeSchedule(probe, cfg.probe_every, p.batch, z0)
    trace: dict[str, list[Tensor]] = {k: [] for k in ("iteration", "loss_dyn", "loss_goal")}
    sync_trace: dict[str, list[Tensor]] = {"sync_iteration": [], "sync_cost": []}
    model_steps, iteration, synced = 0, 0, False
    for iteration in range(cfg.n_steps):
        sigma = cfg.noise_scale * schedule_factor(
            cfg.noise_schedule, iteration, cfg.n_steps, cfg.sync_interval
        )
        gamma = cfg.goal_weight * schedule_factor(
            cfg.goal_schedule, iteration, cfg.n_steps, cfg.sync_interval
        )
        loss_dyn, loss_goal = losses(scaled, actions)
        optimizer.zero_grad(set_to_none=True)
        reduce(loss_dyn + gamma * loss_goal, cfg.batch_reduction).backward()
        optimizer.step()
        with torch.no_grad():
            if cfg.clamp_actions:
                actions.clamp_(low, high)
            if sigma > 0:
                scaled.add_(randn_into(noise, generator), alpha=sigma)
            actions.copy_(probes.apply(actions))
        model_steps += p.horizon
        trace["iteration"].append(torch.tensor(iteration))
        trace["loss_dyn"].append(loss_dyn.detach())
        trace["loss_goal"].append(loss_goal.detach())
        synced = cfg.sync_interval > 0 and (iteration + 1) % cfg.sync_interval == 0
        if synced:
            model_steps += _run_sync(
                sync, actions, scaled.detach() * unit, generator, probes, sync_trace, iteration
            )
            if cfg.reset_optimizer:
                optimizer = main_optimizer(scaled, actions, cfg)
        if probes(iteration, actions.detach().clamp(low, high), steps=model_steps):
            break
    if cfg.sync_interval > 0 and not synced and not probes.all_solved():
        model_steps += _run_sync(
            sync, actions, scaled.detach() * unit, generator, probes, sync_trace, iteration
        )
        probes(iteration, actions.detach().clamp(low, high), force=True, steps=model_steps)
    trace.update(sync_trace)
    return finish(
        p,
        probes.apply(actions.detach().clamp(low, high)),
        trace,
        model_steps,
        iteration + 1,
        extras={"virtual_states": scaled.detach() * unit},
        **probes.result_fields(),
    )


def _losses_fn(
    p: PlanProblem,
    z0: Tensor,
    unit: Tensor,
    goal: Tensor,
    detach_states: bool,
    compiled: bool = False,
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(scaled states (B, H-1, D), actions (B, H, A)) -> (L_dyn, L_goal)``, each ``(B,)``.

    ``compiled``: :func:`lifted_losses` through ``torch.compile`` (``compile_losses``). Else
    GRASP's case (stop-gradient, a model without its own ``cost``) takes
    :func:`fused_lifted_losses` with one input buffer for the whole run; the others (LatCo, the
    no-stop-gradient ablation, a model's own cost) take :func:`lifted_losses`.
    """
    if compiled:
        step = torch.compile(_scaled_lifted_losses)
        return lambda s, a: step(p.model, z0, s, unit, a, goal, detach_states)
    if detach_states and not callable(getattr(p.model, "cost", None)):
        inputs = z0.new_empty(p.batch, p.horizon, p.model.state_dim)
        return lambda s, a: fused_lifted_losses(p.model, z0, s, unit, a, goal, inputs)
    return lambda s, a: lifted_losses(p.model, z0, s * unit, a, goal, detach_states)


def _scaled_lifted_losses(
    model: WorldModel,
    z0: Tensor,
    scaled: Tensor,
    unit: Tensor,
    actions: Tensor,
    goal: Tensor,
    detach_states: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`lifted_losses` of the states ``scaled * unit``; what ``compile_losses`` compiles."""
    return lifted_losses(model, z0, scaled * unit, actions, goal, detach_states)


def main_optimizer(states: Tensor, actions: Tensor, cfg: GRASPConfig) -> torch.optim.Adam:
    """The lifted loop's Adam: states at ``lr_states``, actions at ``lr_actions``.

    Fused (one pass over the virtual states per step instead of ~7) on CUDA; the same update up
    to float rounding (BENCHMARKS section 7). Not on the CPU: torch's CPU fused kernel updates
    the vector-width body and the tail of its range by different code, so an element's
    rounding would depend on where its problem sits in the batch, and an episode's plan would
    change with the chunk it is planned in (:class:`~grasplab.planners.streams.EpisodeStreams`).
    """
    groups = [
        {"params": [states], "lr": cfg.lr_states},
        {"params": [actions], "lr": cfg.lr_actions},
    ]
    return torch.optim.Adam(groups, fused=states.device.type in FUSED_ADAM_DEVICES or None)


FUSED_ADAM_DEVICES = ("cuda",)
"""Devices on which the lifted loop uses torch's fused Adam (see :func:`main_optimizer`)."""


def reduce(losses: Tensor, how: str) -> Tensor:
    """Per-problem losses ``(B,)`` reduced over the batch (``sum`` or ``mean``)."""
    return losses.mean() if how == "mean" else losses.sum()


def _run_sync(
    sync: _Sync,
    actions: Tensor,
    states: Tensor,
    generator: RandomSource | None,
    probes: ProbeSchedule,
    sync_trace: dict[str, list[Tensor]],
    iteration: int,
) -> int:
    cost, steps = sync(actions, states.detach(), generator)
    with torch.no_grad():
        actions.copy_(probes.apply(actions))
    sync_trace["sync_iteration"].append(torch.tensor(iteration))
    sync_trace["sync_cost"].append(cost.detach())
    return steps
