"""``MLPModel``: residual state-space dynamics with data-derived input/output normalisation.

Latent = normalised env state ``z = (s - state_loc) / state_scale`` (statistics of the training
data, stored as buffers in the checkpoint). One model step consumes an action block of ``k`` env
actions ``[a_1, ..., a_k]`` and predicts ``z' = z + delta_loc + delta_scale * f([z, a_n])`` where
``a_n`` is the normalised block and ``f`` an MLP trained to output unit-scale increments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from grasplab.world_models.base import check_step_inputs


@dataclass(frozen=True)
class MLPConfig:
    """Shape and size of an :class:`MLPModel` (frozen, validated)."""

    state_dim: int
    """Env state size ``S`` (= latent size ``D``)."""
    env_action_dim: int
    """Env action size ``A_env``."""
    action_block: int = 1
    """Env steps per model step (frame-skip ``k``); ``action_dim = k * A_env``."""
    width: int = 256
    """Hidden units per layer."""
    depth: int = 3
    """Hidden layers."""

    def __post_init__(self) -> None:
        for name in ("state_dim", "env_action_dim", "action_block", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MLPConfig.{name} must be an int >= 1, got {value!r}")


def mlp(inputs: int, width: int, depth: int, outputs: int) -> nn.Sequential:
    """``depth`` SiLU hidden layers of ``width`` units; the last layer starts at zero.

    Smooth activations keep action Jacobians informative for gradient planners; the zero output
    layer makes a fresh residual model the identity.
    """
    layers: list[nn.Module] = []
    size = inputs
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.SiLU()]
        size = width
    last = nn.Linear(size, outputs)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class MLPModel(nn.Module):
    """Residual MLP dynamics over normalised env states (a :class:`WorldModel`).

    Shapes: ``encode`` ``(..., S) -> (..., S)``; ``step`` ``(..., S), (..., k*A_env) -> (..., S)``
    for any leading dims, on the module's device.

    Args:
        config: An :class:`MLPConfig`.
    """

    kind = "mlp"
    observation = "state"

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.state_dim = config.state_dim
        self.action_dim = config.env_action_dim * config.action_block
        self.action_block = config.action_block
        S, A = self.state_dim, self.action_dim
        for name, size, fill in [
            ("state_loc", S, 0.0),
            ("state_scale", S, 1.0),
            ("action_loc", A, 0.0),
            ("action_scale", A, 1.0),
            ("delta_loc", S, 0.0),
            ("delta_scale", S, 1.0),
        ]:
            self.register_buffer(name, torch.full((size,), fill))
        self.net = mlp(S + A, config.width, config.depth, S)

    # -- checkpoint interface ------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, values: dict[str, Any]) -> MLPModel:
        """Build (untrained) from :meth:`config_dict` output."""
        return cls(MLPConfig(**values))

    # -- normalisation -------------------------------------------------------------------------

    @torch.no_grad()
    def fit_normalization(self, states: Tensor, actions: Tensor, next_states: Tensor) -> None:
        """Set the statistics from data transitions.

        Args:
            states: ``(N, S)`` env states.
            actions: ``(N, k*A_env)`` action blocks.
            next_states: ``(N, S)`` env states ``k`` env steps later.
        """
        self.state_loc.copy_(states.mean(0))
        self.state_scale.copy_(states.std(0).clamp_min(1e-6))
        self.action_loc.copy_(actions.mean(0))
        self.action_scale.copy_(actions.std(0).clamp_min(1e-6))
        delta = (next_states - states) / self.state_scale
        self.delta_loc.copy_(delta.mean(0))
        self.delta_scale.copy_(delta.std(0).clamp_min(1e-6))

    # -- WorldModel ----------------------------------------------------------------------------

    def encode(self, obs: Tensor) -> Tensor:
        """Env states ``(..., S)`` -> latents ``(..., S)``."""
        if obs.shape[-1] != self.state_dim:
            raise ValueError(f"obs has last dim {obs.shape[-1]}, expected S={self.state_dim}")
        return (obs.to(self.state_loc.dtype) - self.state_loc) / self.state_scale

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(..., S)`` -> env states ``(..., S)``."""
        return z * self.state_scale + self.state_loc

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step ``(..., S), (..., k*A_env) -> (..., S)``, differentiable."""
        check_step_inputs(self, z, a)
        return z + self.delta_loc + self.delta_scale * self.increment(z, a)

    def increment(self, z: Tensor, a: Tensor) -> Tensor:
        """The network's unit-scale increment ``(..., S)`` (the training target's space)."""
        a_n = (a - self.action_loc) / self.action_scale
        return self.net(torch.cat([z, a_n], dim=-1))
