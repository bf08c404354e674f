"""The lifted (collocation) objective shared by GRASP and LatCo.

Virtual states ``s_1..s_{H-1}`` ``(B, H-1, D)`` and actions ``(B, H, A)`` are optimised jointly;
``s_0 = z0`` and ``s_H := goal`` are fixed. Per iteration ONE batched ``step`` call evaluates
``F(s_t, a_t)`` for all ``B x H`` (problem, t) pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grasplab.planners.base import PlanProblem, PlanResult, goal_cost, model_cost, randn
from grasplab.planners.streams import RandomSource
from grasplab.world_models.base import WorldModel


def lifted_losses(
    model: WorldModel,
    z0: Tensor,
    states: Tensor,
    actions: Tensor,
    goal: Tensor,
    detach_states: bool,
) -> tuple[Tensor, Tensor]:
    """Per-problem dynamics and goal losses ``(B,), (B,)`` from one batched model call.

    ``L_dyn = sum_t mean_D (F(s_t, a_t) - s_{t+1})^2`` and
    ``L_goal = sum_t cost(F(s_t, a_t), goal)``, with ``s_t`` detached in ``F``'s input when
    ``detach_states`` (GRASP's stop-gradient), so states get gradient only as targets. ``cost`` is
    the model's own goal cost when it has one (:func:`model_cost`), else ``mean_D (. - goal)^2``;
    the dynamics residual stays a squared latent error whatever the model's goal cost.

    Args:
        model: World model.
        z0: Start ``(B, D)``.
        states: Virtual states ``(B, H-1, D)``.
        actions: Actions ``(B, H, A)``.
        goal: Goal ``(B, D)``.
        detach_states: Cut the gradient through ``F``'s state input.
    """
    inputs = torch.cat([z0.unsqueeze(1), states], dim=1)  # (B, H, D): s_0..s_{H-1}
    if detach_states:
        inputs = inputs.detach()
    pred = model.step(inputs, actions)  # (B, H, D): one call over all (problem, t) pairs
    # targets s_1..s_H with s_H := goal, without a concatenated copy of the states
    loss_dyn = goal_cost(pred[:, :-1], states).sum(dim=1) + goal_cost(pred[:, -1], goal)
    loss_goal = model_cost(model, pred, goal.unsqueeze(1)).sum(dim=1)
    return loss_dyn, loss_goal


def fused_lifted_losses(
    model: WorldModel,
    z0: Tensor,
    scaled: Tensor,
    unit: Tensor,
    actions: Tensor,
    goal: Tensor,
    inputs: Tensor,
) -> tuple[Tensor, Tensor]:
    """GRASP's :func:`lifted_losses` in fewer passes over the ``(B, H, D)`` tensors.

    The same losses ``(B,), (B,)`` and gradients (to float rounding) as
    ``lifted_losses(model, z0, scaled * unit, actions, goal, detach_states=True)`` for a model
    without its own ``cost`` (the squared latent error), which is what this path is for: the
    states' unit is applied once, straight into the model's input buffer, and both costs and
    their backward are one autograd node (:class:`_SquaredErrors`) instead of ~20 elementwise
    passes (slices, their zero-filled backward copies, accumulations, the unit's backward).

    Args:
        model: World model (no ``cost`` method).
        z0: Start ``(B, D)``.
        scaled: Virtual states in units of ``unit`` ``(B, H-1, D)``; gets the gradient.
        unit: The states' unit ``(D,)`` (:func:`latent_units`).
        actions: Actions ``(B, H, A)``.
        goal: Goal ``(B, D)``.
        inputs: A ``(B, H, D)`` buffer, overwritten with the model's input ``s_0..s_{H-1}``.
    """
    with torch.no_grad():
        inputs[:, 0].copy_(z0)
        torch.mul(scaled, unit, out=inputs[:, 1:])
    pred = model.step(inputs, actions)  # (B, H, D): one call over all (problem, t) pairs
    return _SquaredErrors.apply(pred, scaled, inputs[:, 1:], unit, goal)


class _SquaredErrors(torch.autograd.Function):
    """``L_dyn, L_goal`` ``(B,), (B,)`` of predictions ``(B, H, D)`` with a hand-fused backward.

    ``L_dyn = sum_t mean_D (pred_t - s_{t+1})^2`` with ``s_H := goal`` and
    ``L_goal = sum_t mean_D (pred_t - goal)^2``; the state gradient goes to ``scaled``
    (``states = scaled * unit``), as in :func:`lifted_losses` with the stop-gradient.
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx: torch.autograd.function.FunctionCtx,
        pred: Tensor,
        scaled: Tensor,
        states: Tensor,
        unit: Tensor,
        goal: Tensor,
    ) -> tuple[Tensor, Tensor]:
        to_goal = pred - goal.unsqueeze(1)  # (B, H, D); its last step is also L_dyn's last
        to_next = pred[:, :-1] - states  # (B, H-1, D)
        loss_goal = _mean_square(to_goal).sum(dim=1)
        loss_dyn = _mean_square(to_next).sum(dim=1) + _mean_square(to_goal[:, -1])
        ctx.save_for_backward(to_goal, to_next, unit)
        return loss_dyn, loss_goal

    @staticmethod
    def backward(  # noqa: D102
        ctx: torch.autograd.function.FunctionCtx, grad_dyn: Tensor, grad_goal: Tensor
    ) -> tuple[Tensor | None, ...]:
        to_goal, to_next, unit = ctx.saved_tensors
        D = to_goal.shape[-1]
        dyn = (2 * grad_dyn / D).view(-1, 1, 1)  # d mean_D(r^2) / dr = 2 r / D
        grad_pred = grad_scaled = None
        if ctx.needs_input_grad[0]:
            grad_pred = to_goal * (2 * grad_goal / D).view(-1, 1, 1)
            grad_pred[:, :-1].addcmul_(to_next, dyn)
            grad_pred[:, -1:].addcmul_(to_goal[:, -1:], dyn)
        if ctx.needs_input_grad[1]:
            grad_scaled = to_next * (-dyn * unit)
        return grad_pred, grad_scaled, None, None, None


def _mean_square(x: Tensor) -> Tensor:
    """``mean_D x^2``: ``(..., D) -> (...)``, in one pass without a squared copy of ``x``.

    Equal to ``x.pow(2).mean(-1)`` up to float rounding (~1e-7 relative); no gradient (the
    backward of :class:`_SquaredErrors` is written out).
    """
    return torch.linalg.vector_norm(x, dim=-1).square() / x.shape[-1]


def latent_units(model: WorldModel, like: Tensor) -> Tensor:
    """The unit of state-space step sizes and noise: ``(D,)`` on ``like``'s device and dtype.

    A model that declares ``latent_spread`` (the per-dimension std of its latents on its
    training data, ``(D,)``; grasplab's checkpoints record it) makes ``lr_states``,
    ``noise_scale`` and ``init_noise`` fractions of that spread, so that they mean the same on
    latents of any scale. Without it the unit is 1 (raw latent units).
    """
    spread = getattr(model, "latent_spread", None)
    D = model.state_dim
    if spread is None:
        return like.new_ones(D)
    spread = torch.as_tensor(spread).to(like)
    if spread.shape != (D,):
        raise ValueError(f"model.latent_spread must be (D={D},), got {tuple(spread.shape)}")
    if like.device.type != "meta" and not bool((spread > 0).all() and spread.isfinite().all()):
        raise ValueError("model.latent_spread must be finite and > 0")
    return spread


def initial_states(
    problem: PlanProblem,
    init: PlanResult | None,
    noise: float,
    generator: RandomSource | None,
) -> Tensor:
    """Virtual states ``(B, H-1, D)``: warm start, else the line from ``z0`` to the goal + noise.

    ``noise`` is in units of :func:`latent_units`.
    """
    B, H, D = problem.batch, problem.horizon, problem.model.state_dim
    z0, goal = problem.z0.detach(), problem.goal.detach()
    warm = None if init is None else init.extras.get("virtual_states")
    if warm is not None and warm.shape == (B, H - 1, D):
        return warm.detach().to(z0).clone()
    frac = torch.arange(1, H, device=z0.device, dtype=z0.dtype) / H  # (H-1,)
    line = z0.unsqueeze(1) + frac.view(1, -1, 1) * (goal - z0).unsqueeze(1)
    if noise > 0:
        unit = latent_units(problem.model, line)
        line = line + noise * unit * randn(tuple(line.shape), line, generator)
    return line.contiguous()


def schedule_factor(kind: str, iteration: int, n_steps: int, sync_interval: int) -> float:
    """Multiplier in ``[0, 1]`` for sigma/gamma schedules at ``iteration``.

    ``constant``: 1. ``linear``: decays linearly to 0 over the whole run. ``phase``: decays
    linearly to 0 within each sync phase (restarting after every sync).
    """
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return 1.0 - iteration / max(n_steps - 1, 1)
    period = sync_interval if sync_interval > 0 else n_steps
    return 1.0 - (iteration % period) / max(period - 1, 1)
