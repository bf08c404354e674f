"""``MLPModel``: residual state-space dynamics with data-derived input/output normalisation.

Latent = normalised env state features ``z = (phi(s) - state_loc) / state_scale`` (statistics of
the training data, stored as buffers in the checkpoint). ``phi`` is the identity, except that each
state dim named in ``angle_dims`` (radians) becomes the pair ``(sin, cos)``, left on the unit
circle (location 0, scale 1): wrap-around is then no jump, and the latent distance planners
minimise grows with the angle error (chord ``2 sin(d / 2)``, about ``d`` radians) whatever the
angle. Push-T's ``(agent x, agent y, block x, block y, block angle)`` thus becomes the 6-d latent
``(agent xy, block xy normalised, sin, cos)``. One model step consumes an action block of ``k``
env actions ``[a_1, ..., a_k]`` and predicts ``z' = z + delta_loc + delta_scale * f([z, a_n])``
where ``a_n`` is the normalised block and ``f`` an MLP trained to output unit-scale increments.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from grasplab.world_models.base import check_step_inputs


@dataclass(frozen=True)
class MLPConfig:
    """Shape and size of an :class:`MLPModel` (frozen, validated)."""

    state_dim: int
    """Env state size ``S`` (latent size ``D = S + len(angle_dims)``)."""
    env_action_dim: int
    """Env action size ``A_env``."""
    action_block: int = 1
    """Env steps per model step (frame-skip ``k``); ``action_dim = k * A_env``."""
    width: int = 256
    """Hidden units per layer."""
    depth: int = 3
    """Hidden layers."""
    angle_dims: tuple[int, ...] = ()
    """Env state dims that are angles (radians): each enters the latent as ``(sin, cos)``."""

    def __post_init__(self) -> None:
        for name in ("state_dim", "env_action_dim", "action_block", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MLPConfig.{name} must be an int >= 1, got {value!r}")
        dims = tuple(self.angle_dims)
        object.__setattr__(self, "angle_dims", dims)
        ok = all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        if not ok or len(set(dims)) != len(dims) or not all(0 <= d < self.state_dim for d in dims):
            raise ValueError(
                f"MLPConfig.angle_dims must be distinct state dims in [0, {self.state_dim}), "
                f"got {list(dims)}"
            )

    @property
    def latent_dim(self) -> int:
        """Latent size ``D``: one dim per state dim, two per angle."""
        return self.state_dim + len(self.angle_dims)


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

    Shapes: ``encode`` ``(..., S) -> (..., D)``; ``step`` ``(..., D), (..., k*A_env) -> (..., D)``;
    ``decode`` ``(..., D) -> (..., S)``, for any leading dims, on the module's device
    (``D = S + len(angle_dims)``; ``D = S`` without angles).

    Args:
        config: An :class:`MLPConfig`.
    """

    kind = "mlp"
    observation = "state"

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.obs_dim = config.state_dim
        self.state_dim = config.latent_dim
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
        angles = torch.zeros(S, dtype=torch.bool)
        angles[self._angle_features()] = True
        self.register_buffer("angle_mask", angles, persistent=False)

    # -- checkpoint interface ------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, values: dict[str, Any]) -> MLPModel:
        """Build (untrained) from :meth:`config_dict` output."""
        return cls(MLPConfig(**values))

    # -- state features ------------------------------------------------------------------------

    def _angle_features(self) -> list[int]:
        """Latent indices of the ``(sin, cos)`` features, in state order."""
        out, j = [], 0
        for i in range(self.obs_dim):
            if i in self.config.angle_dims:
                out += [j, j + 1]
                j += 2
            else:
                j += 1
        return out

    def features(self, states: Tensor) -> Tensor:
        """Env states ``(..., S)`` -> unnormalised features ``(..., D)`` (angles as sin, cos)."""
        if not self.config.angle_dims:
            return states
        parts = []
        for i, x in enumerate(states.unbind(-1)):
            parts += [x.sin(), x.cos()] if i in self.config.angle_dims else [x]
        return torch.stack(parts, dim=-1)

    def from_features(self, f: Tensor) -> Tensor:
        """Features ``(..., D)`` -> env states ``(..., S)`` (angles in ``[0, 2 pi)``)."""
        if not self.config.angle_dims:
            return f
        parts, j = [], 0
        for i in range(self.obs_dim):
            if i in self.config.angle_dims:
                parts.append(torch.atan2(f[..., j], f[..., j + 1]) % (2 * math.pi))
                j += 2
            else:
                parts.append(f[..., j])
                j += 1
        return torch.stack(parts, dim=-1)

    # -- normalisation -------------------------------------------------------------------------

    @torch.no_grad()
    def fit_normalization(self, states: Tensor, actions: Tensor, next_states: Tensor) -> None:
        """Set the statistics from data transitions (angle features stay on the unit circle).

        Args:
            states: ``(N, S)`` env states.
            actions: ``(N, k*A_env)`` action blocks.
            next_states: ``(N, S)`` env states ``k`` env steps later.
        """
        f, f_next = self.features(states), self.features(next_states)
        keep = self.angle_mask
        self.state_loc.copy_(torch.where(keep, 0.0, f.mean(0)))
        self.state_scale.copy_(torch.where(keep, 1.0, f.std(0).clamp_min(1e-6)))
        self.action_loc.copy_(actions.mean(0))
        self.action_scale.copy_(actions.std(0).clamp_min(1e-6))
        delta = (f_next - f) / self.state_scale
        self.delta_loc.copy_(delta.mean(0))
        self.delta_scale.copy_(delta.std(0).clamp_min(1e-6))

    # -- WorldModel ----------------------------------------------------------------------------

    def encode(self, obs: Tensor) -> Tensor:
        """Env states ``(..., S)`` -> latents ``(..., D)``."""
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs has last dim {obs.shape[-1]}, expected S={self.obs_dim}")
        f = self.features(obs.to(self.state_loc.dtype))
        return (f - self.state_loc) / self.state_scale

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(..., D)`` -> env states ``(..., S)``."""
        return self.from_features(z * self.state_scale + self.state_loc)

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step ``(..., S), (..., k*A_env) -> (..., S)``, differentiable."""
        check_step_inputs(self, z, a)
        return z + self.delta_loc + self.delta_scale * self.increment(z, a)

    def increment(self, z: Tensor, a: Tensor) -> Tensor:
        """The network's unit-scale increment ``(..., S)`` (the training target's space)."""
        a_n = (a - self.action_loc) / self.action_scale
        return self.net(torch.cat([z, a_n], dim=-1))
