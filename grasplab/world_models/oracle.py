"""An environment's own differentiable dynamics exposed as a (state-space) world model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from grasplab.world_models.base import check_step_inputs

if TYPE_CHECKING:
    from grasplab.envs.base import Env


class OracleModel:
    """A torch-native environment's true dynamics as a :class:`WorldModel`.

    Latents are unit-scale states ``z = (s - env.state_loc) / env.state_scale`` so that planner
    step sizes transfer between environments. One model step consumes an action block of
    ``action_block`` environment actions: ``action_dim = action_block * env.action_dim``, the
    block laid out as ``[a_1, ..., a_k]``. Actions outside the env's bounds saturate (clamp), as
    actuators do; planners keep their actions inside the bounds anyway.

    Args:
        env: A torch-native environment (``grasplab.envs.make(...)``).
        action_block: Environment steps per model step (frame-skip), ``>= 1``.
    """

    def __init__(self, env: Env, action_block: int = 1) -> None:
        if action_block < 1:
            raise ValueError(f"action_block must be >= 1, got {action_block}")
        self.env = env
        self.action_block = int(action_block)
        self.state_dim = int(env.state_dim)
        self.action_dim = int(env.action_dim) * self.action_block

    def encode(self, obs: Tensor) -> Tensor:
        """Env states ``(..., S)`` -> unit-scale latents ``(..., S)``."""
        if obs.shape[-1] != self.state_dim:
            raise ValueError(f"obs has last dim {obs.shape[-1]}, expected S={self.state_dim}")
        return (obs - self.env.state_loc.to(obs)) / self.env.state_scale.to(obs)

    def decode(self, z: Tensor) -> Tensor:
        """Unit-scale latents ``(..., S)`` -> env states ``(..., S)``."""
        return z * self.env.state_scale.to(z) + self.env.state_loc.to(z)

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """``(..., S), (..., k * A_env) -> (..., S)``: ``k`` true env steps, differentiable."""
        check_step_inputs(self, z, a)
        env = self.env
        low, high = env.action_low.to(a), env.action_high.to(a)
        blocks = a.unflatten(-1, (self.action_block, env.action_dim))
        s = self.decode(z)
        for i in range(self.action_block):
            s = env.step(s, blocks[..., i, :].clamp(low, high), check=False)
        return self.encode(s)
