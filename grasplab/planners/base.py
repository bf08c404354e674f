"""Shared planner types: :class:`PlanProblem`, :class:`PlanResult`, the planner protocol, configs.

Shapes: ``B`` problems solved in one call, ``H`` horizon (model steps), ``D`` latent size, ``A``
action size, ``S`` samples. Costs are lower-is-better; the planning cost of a plan is the
terminal shooting cost ``cost(F^H(z0, a), goal)`` under the model: the model's own ``cost(z, goal)``
when it has one (e.g. MSE over patches, a cosine distance), else ``mean_D (z - goal)^2``
(:func:`goal_cost`).

The configs (:class:`PlannerConfig`, its validators and dict round-trips) live in
:mod:`grasplab.planners.configs`, which imports no torch; they are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from grasplab.planners.configs import PlannerConfig
from grasplab.planners.configs import check_config_class as check_config_class
from grasplab.planners.configs import config_from_dict as config_from_dict
from grasplab.planners.configs import config_to_dict as config_to_dict
from grasplab.planners.configs import non_negative as non_negative
from grasplab.planners.configs import positive as positive
from grasplab.planners.configs import unit_interval as unit_interval
from grasplab.planners.streams import EpisodeStreams, RandomSource
from grasplab.world_models.base import WorldModel, rollout

Probe = Callable[[int, Tensor], Tensor]
"""``probe(iteration, actions (B, H, A)) -> solved (B,) bool``: the caller's success check."""


@dataclass(frozen=True)
class PlanProblem:
    """``B`` planning problems sharing a model, horizon and action bounds.

    Attributes:
        model: The world model planned through.
        z0: Encoded start states ``(B, D)``.
        goal: Encoded goals ``(B, D)``.
        horizon: Plan length ``H`` in model steps.
        action_low: Lower action bounds ``(A,)``.
        action_high: Upper action bounds ``(A,)``.
    """

    model: WorldModel
    z0: Tensor
    goal: Tensor
    horizon: int
    action_low: Tensor
    action_high: Tensor

    def __post_init__(self) -> None:
        D, A = self.model.state_dim, self.model.action_dim
        if self.z0.dim() != 2 or self.z0.shape[1] != D:
            raise ValueError(f"PlanProblem.z0 must be (B, D={D}), got {tuple(self.z0.shape)}")
        if self.goal.shape != self.z0.shape:
            raise ValueError(
                f"PlanProblem.goal must match z0 {tuple(self.z0.shape)}, "
                f"got {tuple(self.goal.shape)}"
            )
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"PlanProblem.horizon must be an int >= 1, got {self.horizon!r}")
        for name in ("action_low", "action_high"):
            bound = getattr(self, name)
            if bound.shape != (A,):
                raise ValueError(f"PlanProblem.{name} must be (A={A},), got {tuple(bound.shape)}")
        if self.z0.device.type != "meta" and bool((self.action_low >= self.action_high).any()):
            raise ValueError("PlanProblem.action_low must be < action_high elementwise")

    def cost(self, z: Tensor, goal: Tensor) -> Tensor:
        """Goal cost ``(..., D), (..., D) -> (...)`` (broadcasting): :func:`model_cost`."""
        return model_cost(self.model, z, goal)

    @property
    def batch(self) -> int:
        """``B``."""
        return int(self.z0.shape[0])

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Action bounds ``(A,)`` on the problem's device and dtype."""
        return self.action_low.to(self.z0), self.action_high.to(self.z0)


@dataclass
class PlanResult:
    """What a planner returns.

    Attributes:
        actions: The plan ``(B, H, A)``, inside the action bounds.
        cost: True shooting cost of the plan under the model ``(B,)``.
        states: Predicted states of the plan's rollout ``(B, H, D)``.
        trace: Per-record diagnostics, each ``(R,)`` or ``(R, B)``; ``trace["iteration"]`` says
            which iteration each record belongs to.
        model_steps: World-model ``step`` evaluations per batch element (forward passes; a
            backward pass is not counted separately).
        iterations: Iterations run (fewer than configured when every problem was solved early).
        extras: What a warm start needs (e.g. GRASP's ``virtual_states`` ``(B, H-1, D)``, CEM's
            ``std`` ``(B, H, A)``).
        solved: ``(B,)`` bool, problems the probe reported solved (all False without a probe).
        solved_steps: ``(B,)`` float64, the model steps spent when the probe first reported each
            problem solved (NaN for the others; None without a probe).
    """

    actions: Tensor
    cost: Tensor
    states: Tensor
    trace: dict[str, Tensor]
    model_steps: int
    iterations: int
    extras: dict[str, Tensor] = field(default_factory=dict)
    solved: Tensor | None = None
    solved_steps: Tensor | None = None

    def shifted(self, executed: int, horizon: int | None = None) -> PlanResult:
        """Warm start for the next MPC replan after executing ``executed`` model steps.

        Drops the executed steps; with ``horizon`` None it repeats the last action (and last
        virtual state) to keep the length, otherwise it keeps the first ``horizon`` remaining
        steps (a shrinking horizon). The trace is dropped.
        """
        if executed <= 0 and horizon is None:
            return self

        def shift(x: Tensor, length: int) -> Tensor:
            k = min(executed, x.shape[1])
            rest = x[:, k:]
            if horizon is not None:
                return rest[:, :length]
            pad = x[:, -1:].expand(-1, length - rest.shape[1], *x.shape[2:])
            return torch.cat([rest, pad], dim=1)

        H = self.actions.shape[1]
        new_h = H if horizon is None else horizon
        extras = {
            k: shift(v, new_h - (H - v.shape[1])) for k, v in self.extras.items() if v.dim() >= 3
        }
        return PlanResult(
            actions=shift(self.actions, new_h),
            cost=self.cost,
            states=shift(self.states, new_h),
            trace={},
            model_steps=0,
            iterations=0,
            extras=extras,
        )


class Planner(Protocol):
    """A pure planner: it holds only its frozen config."""

    config: PlannerConfig

    def plan(
        self,
        problem: PlanProblem,
        init: PlanResult | None = None,
        *,
        generator: RandomSource | None = None,
        probe: Probe | None = None,
    ) -> PlanResult:
        """Solve all ``B`` problems in one call.

        ``generator``: a ``torch.Generator`` shared by the batch, or
        :class:`~grasplab.planners.streams.EpisodeStreams` (one stream per problem, so a
        problem's plan does not depend on the others in the batch).
        """
        ...


def goal_cost(z: Tensor, goal: Tensor) -> Tensor:
    """Squared latent distance averaged over ``D``: ``(..., D), (..., D) -> (...)``."""
    return (z - goal).pow(2).mean(dim=-1)


def model_cost(model: WorldModel, z: Tensor, goal: Tensor) -> Tensor:
    """The model's ``cost(z, goal)`` if it defines one, else :func:`goal_cost`.

    Args:
        model: The world model; an optional ``cost`` method maps latents ``(..., D)`` and goals
            broadcastable to them to costs ``(...)``, lower is better, differentiable.
        z: Latents ``(..., D)``.
        goal: Goals ``(..., D)``, broadcastable against ``z``.

    Returns:
        Costs ``(...)``.
    """
    cost = getattr(model, "cost", None)
    return cost(z, goal) if callable(cost) else goal_cost(z, goal)


def terminal_state(model: WorldModel, z0: Tensor, actions: Tensor) -> Tensor:
    """Last state of the serial rollout ``(..., D)`` without stacking intermediate states."""
    z = z0
    for t in range(actions.shape[-2]):
        z = model.step(z, actions[..., t, :])
    return z


def randn(
    shape: tuple[int, ...],
    like: Tensor,
    generator: RandomSource | None,
    batch_dim: int = 0,
) -> Tensor:
    """Standard normal draws of ``shape`` on ``like``'s device/dtype from ``generator``.

    A generator on another device draws there and the result is moved, so that a CPU
    generator gives the same numbers whatever the planning device. On ``meta`` no draw happens.
    With :class:`~grasplab.planners.streams.EpisodeStreams`, the slice ``b`` along
    ``batch_dim`` (the problems' dimension) comes from problem ``b``'s own stream.
    """
    if like.device.type == "meta":
        return torch.empty(shape, device="meta", dtype=like.dtype)
    if isinstance(generator, EpisodeStreams):
        return generator.normal(shape, batch_dim=batch_dim, dtype=like.dtype, device=like.device)
    device = generator.device if generator is not None else like.device
    out = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return out.to(like.device)


def randn_into(out: Tensor, generator: RandomSource | None, batch_dim: int = 0) -> Tensor:
    """Fill ``out`` in place with the draws :func:`randn` would return for its shape.

    Reuses ``out``'s memory (no new tensor per draw); the same numbers as ``randn(out.shape,
    out, generator)`` from the same generator state.
    """
    if out.device.type == "meta":
        return out
    if isinstance(generator, EpisodeStreams):
        return out.copy_(randn(tuple(out.shape), out, generator, batch_dim))
    if generator is not None and generator.device != out.device:
        return out.copy_(randn(tuple(out.shape), out, generator))
    return out.normal_(generator=generator)


def initial_actions(problem: PlanProblem, init: PlanResult | None) -> Tensor:
    """Warm-start actions from ``init`` if given, else the middle of the bounds; ``(B, H, A)``."""
    low, high = problem.bounds()
    B, H, A = problem.batch, problem.horizon, problem.model.action_dim
    if init is not None:
        if init.actions.shape != (B, H, A):
            raise ValueError(
                f"init.actions must be (B, H, A)={(B, H, A)}, got {tuple(init.actions.shape)}"
            )
        return init.actions.detach().to(problem.z0).clamp(low, high).clone()
    mid = torch.where((low <= 0) & (high >= 0), torch.zeros_like(low), (low + high) / 2)
    return mid.expand(B, H, A).clone()


class ProbeSchedule:
    """Calls the caller's probe every ``every`` iterations; remembers solved plans.

    Once the probe reports problem ``b`` solved, its plan is frozen: :meth:`apply` restores the
    plan the probe saw, so the returned plan is the one that reached the goal. ``solved_steps``
    ``(B,)`` float64 holds the planner's model steps when each problem was first reported
    solved (NaN until then): what that problem cost, whatever else shared its batch.
    """

    def __init__(self, probe: Probe | None, every: int, batch: int, like: Tensor) -> None:
        self.probe = probe
        self.every = every
        self.solved = torch.zeros(batch, dtype=torch.bool, device=like.device)
        self.solved_steps = torch.full((batch,), math.nan, dtype=torch.float64)
        self.frozen: Tensor | None = None

    def __call__(
        self, iteration: int, actions: Tensor, force: bool = False, steps: int | None = None
    ) -> bool:
        """Probe if due (or ``force``); returns True when every problem is solved.

        ``steps``: the planner's model steps so far (recorded for newly solved problems).
        """
        if self.probe is None or not (force or (iteration + 1) % self.every == 0):
            return False
        actions = actions.detach()
        solved = self.probe(iteration, actions).to(self.solved.device, torch.bool)
        if solved.shape != self.solved.shape:
            raise ValueError(f"probe must return (B,)={tuple(self.solved.shape)} bools")
        fresh = solved & ~self.solved
        if steps is not None:
            self.solved_steps[fresh.cpu()] = float(steps)
        new = fresh.view(-1, *([1] * (actions.dim() - 1)))
        self.frozen = torch.where(new, actions, actions if self.frozen is None else self.frozen)
        self.solved |= solved
        return bool(self.solved.all())

    def all_solved(self) -> bool:
        """True when a probe is attached and every problem is solved."""
        return self.probe is not None and bool(self.solved.all())

    def apply(self, actions: Tensor) -> Tensor:
        """``actions (B, ...)`` with solved problems' rows replaced by their frozen plans."""
        if self.frozen is None:
            return actions
        mask = self.solved.view(-1, *([1] * (actions.dim() - 1)))
        return torch.where(mask, self.frozen, actions)

    def result_fields(self) -> dict[str, Tensor | None]:
        """``solved`` and ``solved_steps`` for :func:`finish` (None without a probe)."""
        if self.probe is None:
            return {"solved": None, "solved_steps": None}
        return {"solved": self.solved, "solved_steps": self.solved_steps}


def finish(
    problem: PlanProblem,
    actions: Tensor,
    trace: dict[str, list[Tensor]],
    model_steps: int,
    iterations: int,
    extras: dict[str, Tensor] | None = None,
    solved: Tensor | None = None,
    solved_steps: Tensor | None = None,
) -> PlanResult:
    """Assemble a :class:`PlanResult`: roll the plan out once for its states and true cost."""
    with torch.no_grad():
        actions = actions.detach()
        states = rollout(problem.model, problem.z0.detach(), actions)
        cost = problem.cost(states[:, -1], problem.goal.detach())
    stacked = {k: torch.stack(v) for k, v in trace.items() if v}
    return PlanResult(
        actions=actions,
        cost=cost,
        states=states,
        trace=stacked,
        model_steps=model_steps + problem.horizon,
        iterations=iterations,
        extras=extras or {},
        solved=solved,
        solved_steps=solved_steps,
    )
