"""A DINO-WM-style world model: latents are patch tokens ``(P, C)``, not flat vectors.

Each of the ``P`` patches is a fixed random linear embedding (``C`` channels) of the env's
unit-scale state, and the dynamics are the env's exact ones, read back through the embedding's
pseudo-inverse. It is cheap (a few matrix products per step), differentiable, and it exercises
what a real patch-token model needs from grasplab: a declared ``state_shape`` and a ``cost``
over patches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grasplab.envs import Env
from grasplab.world_models import OracleModel


class PatchTokenModel:
    """Patch-token latents ``(..., P, C)`` of a grasplab torch env, exact dynamics.

    Attributes:
        state_shape: ``(P, C)``: grasplab presents ``D = P * C`` flat latents to planners.
        action_dim: ``action_block * env.action_dim``.
        device: Where the embedding lives (the worker's device).
    """

    def __init__(
        self,
        env: Env,
        action_block: int,
        device: torch.device,
        patches: int = 4,
        channels: int = 8,
        seed: int = 0,
    ) -> None:
        self.oracle = OracleModel(env, action_block)
        S = self.oracle.state_dim
        if patches * channels < S:
            raise ValueError(f"patches x channels must be >= the env's state size {S}")
        generator = torch.Generator().manual_seed(seed)
        embed = torch.randn(S, patches * channels, generator=generator) / math.sqrt(S)
        self.embed = embed.to(device)  # (S, P*C)
        self.unembed = torch.linalg.pinv(embed).to(device)  # (P*C, S)
        self.state_shape = (patches, channels)
        self.action_dim = self.oracle.action_dim
        self.device = torch.device(device)

    def encode(self, obs: Tensor) -> Tensor:
        """Env states ``(..., S)`` -> patch tokens ``(..., P, C)``."""
        flat = self.oracle.encode(obs) @ self.embed.to(obs)
        return flat.unflatten(-1, self.state_shape)

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """``(..., P, C), (..., A) -> (..., P, C)``: the env's true step in token space."""
        s = z.flatten(-2) @ self.unembed.to(z)
        return (self.oracle.step(s, a) @ self.embed.to(z)).unflatten(-1, self.state_shape)

    def cost(self, z: Tensor, goal: Tensor) -> Tensor:
        """MSE over patches ``(..., P, C), (..., P, C) -> (...)``; broadcasts; lower is better."""
        return (z - goal).pow(2).mean(dim=-1).mean(dim=-1)


def make_model(
    device: torch.device,
    env: Env,
    action_block: int,
    patches: int = 4,
    channels: int = 8,
    seed: int = 0,
) -> PatchTokenModel:
    """The factory grasplab calls on every worker (``world_model.target``).

    Args:
        device: The worker's device (always given by grasplab).
        env: The protocol's torch env (given because this signature names it).
        action_block: The protocol's action block (given because this signature names it).
        patches: ``P``, from ``world_model.kwargs``.
        channels: ``C``, from ``world_model.kwargs``.
        seed: Seed of the fixed embedding, from ``world_model.kwargs``.
    """
    return PatchTokenModel(env, action_block, device, patches, channels, seed)
