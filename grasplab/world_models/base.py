"""The world-model protocol and the serial rollout helper.

Shapes: ``D`` = latent state size, ``A`` = action size (already ``k * env_action_dim`` when a model
step consumes an action block of ``k`` environment actions), ``H`` = horizon in model steps.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class WorldModel(Protocol):
    """A differentiable latent dynamics model ``F(z, a) -> z'``.

    Attributes:
        state_dim: Latent size ``D``.
        action_dim: Action size ``A`` consumed by one model step.

    Optional attributes a model may declare:
        latent_spread: ``(D,)`` per-dimension std of ``encode``'s outputs on the model's
            training data. Planners that step in latent space (GRASP, LatCo) measure their state
            step sizes and noise in these units, so the same hyperparameters mean the same on
            latents of any scale. grasplab's checkpoints record it (``info["latent_spread"]``).
    """

    state_dim: int
    action_dim: int

    def encode(self, obs: Tensor) -> Tensor:
        """Map observations ``(..., *obs_shape)`` to latents ``(..., D)``."""
        ...

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step ``(..., D), (..., A) -> (..., D)``, batched over any leading dims."""
        ...


def check_step_inputs(model: WorldModel, z: Tensor, a: Tensor) -> None:
    """Raise ``ValueError`` naming the problem when ``z``/``a`` do not fit ``model``.

    Args:
        model: The world model.
        z: Latents ``(..., D)``.
        a: Actions ``(..., A)`` with the same leading dims as ``z``.
    """
    if z.shape[-1] != model.state_dim:
        raise ValueError(f"state has last dim {z.shape[-1]}, model expects D={model.state_dim}")
    if a.shape[-1] != model.action_dim:
        raise ValueError(f"action has last dim {a.shape[-1]}, model expects A={model.action_dim}")
    if z.shape[:-1] != a.shape[:-1]:
        raise ValueError(
            f"state leading dims {tuple(z.shape[:-1])} != action leading dims {tuple(a.shape[:-1])}"
        )


def rollout(model: WorldModel, z0: Tensor, actions: Tensor) -> Tensor:
    """Roll ``model`` forward serially from ``z0`` under ``actions``.

    Args:
        model: The world model.
        z0: Start latents ``(..., D)`` (``(B, D)`` in the common case).
        actions: Action sequences ``(..., H, A)`` with the same leading dims as ``z0``.

    Returns:
        Predicted latents ``(..., H, D)``: entry ``t`` is the state after action ``t``.
    """
    if actions.dim() < 2 or actions.shape[:-2] != z0.shape[:-1]:
        raise ValueError(
            f"rollout: z0 {tuple(z0.shape)} and actions {tuple(actions.shape)} must be "
            "(..., D) and (..., H, A) with the same leading dims"
        )
    states = []
    z = z0
    for t in range(actions.shape[-2]):
        z = model.step(z, actions[..., t, :])
        states.append(z)
    if not states:
        return z0.new_zeros((*z0.shape[:-1], 0, z0.shape[-1]))
    return torch.stack(states, dim=-2)
