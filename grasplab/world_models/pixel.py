"""``PixelModel``: a conv encoder from RGB images to a latent and a residual latent predictor.

Latent ``z = [e, m]`` of size ``D = latent_dim + memory_dim``:

- ``e = enc(image)``: what one image shows (the agent's position).
- ``m``: a memory part the encoder sets to zero and only the predictor writes. One image cannot
  show a velocity; ``pointmaze`` has one. Start states and goals of tasks are at rest, so
  ``m = 0`` is exact there, and along a rollout the predictor carries the velocity in ``m``.
  Environments whose state is a position only use ``memory_dim = 0``.

Both parts are presented at unit scale: ``z = (raw - latent_loc) / latent_scale`` with one scalar
scale per part, measured on the training data after training (a per-dim scale would blow up
near-constant dims and distort the latent distance planners minimise).

Anti-collapse: a pixel decoder (reconstruction). Justification: it cannot collapse, needs no
batch statistics (small CPU batches make VICReg's variance/covariance estimates noisy), and it
anchors the latent to what the image shows, so latent distance tracks where the agent is. What
it reconstructs is the image's foreground: the per-pixel difference from the static background
(the training data's per-pixel median, stored as a buffer), pooled to half resolution and
Gaussian-blurred (:meth:`PixelModel.heatmap`). A plain RGB autoencoder was tried first and
failed: the agent covers ~7 of 4096 pixels, so reconstructing the maze alone is a deep local
minimum (the latent carried no position at all, linear R^2 < 0.1). The blurred foreground gives
the decoder a gradient wherever the agent is. The decoder is not used for planning.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from grasplab.world_models.base import check_step_inputs
from grasplab.world_models.mlp import mlp


@dataclass(frozen=True)
class PixelConfig:
    """Shape and size of a :class:`PixelModel` (frozen, validated)."""

    env_action_dim: int
    """Env action size ``A_env``."""
    action_block: int = 1
    """Env steps per model step (frame-skip ``k``); ``action_dim = k * A_env``."""
    latent_dim: int = 16
    """Encoded part of the latent."""
    memory_dim: int = 0
    """Predictor-only part of the latent (zero at ``encode``: a state at rest)."""
    channels: int = 16
    """Channels of the first conv layer (doubling twice)."""
    width: int = 256
    """Hidden units of the predictor MLP."""
    depth: int = 2
    """Hidden layers of the predictor MLP."""
    image_size: int = 64
    """Side of the square RGB input images (a power of two >= 8)."""
    keypoints: int = 16
    """Spatial-softmax keypoints of the encoder."""
    blur: float = 1.5
    """Gaussian blur (pixels at half resolution) of the reconstructed foreground heatmap."""
    action_loc: float = 0.0
    """Actions enter the predictor as ``(a - action_loc) / action_scale`` (env units)."""
    action_scale: float = 1.0
    """See ``action_loc``; e.g. Push-T's targets in ``[0, 512]`` pixels: 256 and 128."""

    def __post_init__(self) -> None:
        for name in (
            "env_action_dim",
            "action_block",
            "latent_dim",
            "channels",
            "width",
            "depth",
            "keypoints",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PixelConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.memory_dim, int) or self.memory_dim < 0:
            raise ValueError(f"PixelConfig.memory_dim must be an int >= 0, got {self.memory_dim!r}")
        if not self.action_scale > 0:
            raise ValueError(f"PixelConfig.action_scale must be > 0, got {self.action_scale!r}")
        size = self.image_size
        if not isinstance(size, int) or size < 8 or size & (size - 1):
            raise ValueError(f"PixelConfig.image_size must be a power of two >= 8, got {size!r}")

    @property
    def downsamples(self) -> int:
        """Stride-2 conv layers from ``image_size`` down to 4 pixels."""
        return int(math.log2(self.image_size)) - 2


def _channels(config: PixelConfig) -> list[int]:
    """Conv channels per stage: ``c, 2c, 2c, 4c, 4c, ...`` (``downsamples`` entries)."""
    c = config.channels
    return [c * min(2 ** ((i + 1) // 2), 4) for i in range(config.downsamples)]


class Encoder(nn.Module):
    """Conv features + spatial softmax keypoints: ``(N, 6, H, W)`` -> ``(N, latent_dim)``.

    Two stride-2 convs and one stride-1 conv give ``keypoints`` feature maps at a quarter of
    the resolution, standardised per image and map (so that a small object is a strong outlier
    from the first step on); a spatial softmax (learned temperature) turns each into its expected
    image coordinates in ``[-1, 1]^2`` (Finn et al., Deep Spatial Autoencoders), a linear head maps
    the ``2 * keypoints`` coordinates to the latent. Coordinates are well-scaled and vary
    smoothly with where things are, which a plain conv + flatten head did not achieve on a tiny
    agent (its latents varied by 1e-4 across images at initialisation and never recovered).
    """

    def __init__(self, config: PixelConfig) -> None:
        super().__init__()
        c = config.channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * c, config.keypoints, 3, padding=1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(config.keypoints, 1))
        self.head = nn.Linear(2 * config.keypoints, config.latent_dim)
        side = torch.linspace(-1.0, 1.0, config.image_size // 4)
        grid = torch.stack(torch.meshgrid(side, side, indexing="ij")).flatten(1)  # (2, h*w)
        self.register_buffer("grid", grid, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[image, image - background]`` ``(N, 6, H, W)`` -> ``(N, latent_dim)``."""
        maps = self.conv(x).flatten(2)  # (N, K, h*w)
        maps = (maps - maps.mean(-1, keepdim=True)) / (maps.std(-1, keepdim=True) + 1e-5)
        attention = torch.softmax(maps * self.log_temperature.exp(), dim=-1)
        points = attention @ self.grid.to(x).T  # (N, K, 2)
        return self.head(points.flatten(1))


class Decoder(nn.Module):
    """``(N, latent_dim)`` -> heatmaps ``(N, 1, H/2, W/2)`` (see :meth:`PixelModel.heatmap`)."""

    def __init__(self, config: PixelConfig) -> None:
        super().__init__()
        sizes = _channels(config)[::-1]
        self.start = sizes[0]
        self.head = nn.Linear(config.latent_dim, sizes[0] * 16)
        layers: list[nn.Module] = []
        outs = [*sizes[1:-1], 1]
        for size_in, size in zip(sizes[:-1], outs, strict=True):
            layers += [nn.SiLU(), nn.ConvTranspose2d(size_in, size, 4, stride=2, padding=1)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.deconv = nn.Sequential(*layers)

    def forward(self, e: Tensor) -> Tensor:
        """Latents ``(N, latent_dim)`` -> heatmaps ``(N, 1, H/2, W/2)``."""
        return self.deconv(self.head(e).unflatten(-1, (self.start, 4, 4)))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, 1, h, w)`` maps (zero padding)."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = nn.functional.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return nn.functional.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


class PixelModel(nn.Module):
    """Conv encoder + residual latent predictor (a :class:`WorldModel` over images).

    Shapes: ``encode`` ``(..., H, W, 3)`` uint8 (0..255) or float (``[0, 1]``) -> ``(..., D)``;
    ``step`` ``(..., D), (..., k*A_env) -> (..., D)`` for any leading dims.

    Args:
        config: A :class:`PixelConfig`.
    """

    kind = "pixel"
    observation = "pixels"

    def __init__(self, config: PixelConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.memory_dim = config.memory_dim
        self.state_dim = config.latent_dim + config.memory_dim
        self.action_block = config.action_block
        self.action_dim = config.env_action_dim * config.action_block
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.predictor = mlp(
            self.state_dim + self.action_dim, config.width, config.depth, self.state_dim
        )
        size = config.image_size
        self.register_buffer("background", torch.zeros(size, size, 3))
        self.register_buffer("latent_loc", torch.zeros(self.state_dim))
        self.register_buffer("latent_scale", torch.ones(self.state_dim))

    # -- checkpoint interface ------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, values: dict[str, Any]) -> PixelModel:
        """Build (untrained) from :meth:`config_dict` output."""
        return cls(PixelConfig(**values))

    # -- raw (unnormalised) computations, used by training -------------------------------------

    def images_to_input(self, obs: Tensor) -> Tensor:
        """``(N, H, W, 3)`` uint8 or float -> ``(N, 3, H, W)`` floats in ``[0, 1]``."""
        size = self.config.image_size
        if obs.shape[-3:] != (size, size, 3):
            raise ValueError(f"images must be (..., {size}, {size}, 3), got {tuple(obs.shape)}")
        dtype = self.latent_loc.dtype
        x = obs.to(dtype) / 255.0 if obs.dtype == torch.uint8 else obs.to(dtype)
        return x.permute(0, 3, 1, 2)

    def embed(self, obs: Tensor) -> Tensor:
        """Raw encoded part ``(..., latent_dim)`` of images ``(..., H, W, 3)``."""
        lead = obs.shape[:-3]
        x = self.images_to_input(obs.reshape(-1, *obs.shape[-3:]))
        return self.encoder(x - self.background.permute(2, 0, 1)).reshape(*lead, self.latent_dim)

    def raw_step(self, raw: Tensor, a: Tensor) -> Tensor:
        """Predictor in raw coordinates ``(..., D), (..., A) -> (..., D)``."""
        a = (a - self.config.action_loc) / self.config.action_scale
        return raw + self.predictor(torch.cat([raw, a], dim=-1))

    def with_memory(self, e: Tensor) -> Tensor:
        """Raw latent ``(..., D)`` from an encoded part ``(..., latent_dim)`` (memory zero)."""
        pad = e.new_zeros((*e.shape[:-1], self.memory_dim))
        return torch.cat([e, pad], dim=-1)

    def reconstruct(self, e: Tensor) -> Tensor:
        """Heatmaps ``(..., H/2, W/2)`` decoded from raw encoded parts ``(..., latent_dim)``."""
        lead = e.shape[:-1]
        x = self.decoder(e.reshape(-1, self.latent_dim))[:, 0]
        return x.reshape(*lead, *x.shape[1:])

    def heatmap(self, obs: Tensor) -> Tensor:
        """The decoder's target: blurred foregrounds ``(..., H/2, W/2)`` of ``(..., H, W, 3)``.

        ``max_c |image - background|`` per pixel, 2x2 average-pooled, Gaussian-blurred.
        """
        lead = obs.shape[:-3]
        x = self.images_to_input(obs.reshape(-1, *obs.shape[-3:]))
        fg = (x - self.background.permute(2, 0, 1)).abs().amax(1, keepdim=True)
        fg = gaussian_blur(nn.functional.avg_pool2d(fg, 2), self.config.blur)[:, 0]
        return fg.reshape(*lead, *fg.shape[1:])

    # -- WorldModel ----------------------------------------------------------------------------

    def encode(self, obs: Tensor) -> Tensor:
        """Images ``(..., H, W, 3)`` -> unit-scale latents ``(..., D)`` (memory at rest)."""
        raw = self.with_memory(self.embed(obs))
        return (raw - self.latent_loc) / self.latent_scale

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step ``(..., D), (..., k*A_env) -> (..., D)``, differentiable."""
        check_step_inputs(self, z, a)
        raw = z * self.latent_scale + self.latent_loc
        return (self.raw_step(raw, a) - self.latent_loc) / self.latent_scale

    def decode(self, z: Tensor) -> Tensor:
        """Unit-scale latents ``(..., D)`` -> decoded foreground heatmaps ``(..., H/2, W/2)``."""
        raw = z * self.latent_scale + self.latent_loc
        return self.reconstruct(raw[..., : self.latent_dim])

    @torch.no_grad()
    def set_latent_normalization(self, encoded: Tensor, memory: Tensor | None) -> None:
        """Unit-scale statistics: per-dim location, one scalar scale per latent part.

        Args:
            encoded: Raw encoded parts ``(N, latent_dim)`` of data images.
            memory: Raw memory parts ``(N', memory_dim)`` along predicted rollouts (or None).
        """
        loc = torch.zeros_like(self.latent_loc)
        scale = torch.ones_like(self.latent_scale)
        d = self.latent_dim
        loc[:d] = encoded.mean(0)
        scale[:d] = (encoded - loc[:d]).square().mean().sqrt().clamp_min(1e-6)
        if self.memory_dim and memory is not None:
            # memory stays centred at 0 (= at rest) so that encode's zero memory is meaningful
            scale[d:] = memory.square().mean().sqrt().clamp_min(1e-6)
        self.latent_loc.copy_(loc)
        self.latent_scale.copy_(scale)
