"""``PatchModel``: a DINO-WM-class world model over a grid of patch features.

DINO-WM encodes each image with a frozen, pretrained DINOv2 into a grid of patch tokens and
trains a predictor over that grid, conditioned on the action. ``PatchModel`` has the same
structure at a size that trains and plans on a CPU:

- **Latent**: a ``g x g`` grid of ``C``-channel patch features, ``P = g * g`` tokens, presented
  to planners as flat vectors of ``D = P * C`` (``token_shape = (P, C)`` declares the grid; the
  flattening is token-major: ``z.view(..., P, C)``). The model is flat-native: it does not
  declare ``state_shape``, which would mean that its ``encode`` / ``step`` take the grid itself
  (:func:`grasplab.world_models.as_flat`). The default is 8 x 8 patches x 16 channels:
  ``D = 1024``.
- **Encoder**: chosen by import path (``encoder = "pkg.module:factory"``, built with
  ``encoder_kwargs``), so a user with DINOv2 weights plugs them in. The factory returns an
  ``nn.Module`` mapping images ``(N, 3, H, W)`` in ``[0, 1]`` to patch features ``(N, P, C)``.
  The default, :class:`ConvPatchEncoder`, is trained first as an autoencoder and then frozen, as
  DINO-WM freezes DINOv2 (:func:`freeze_encoder`).
- **Predictor**: residual, over the patch grid: a 3x3 conv mixing neighbouring patches, then a
  per-patch MLP, conditioned on the action block through a per-channel scale and shift (FiLM).
  One batched call handles any number of (state, action) pairs, so one GRASP iteration over
  ``B`` problems x ``H`` steps is one call.

Latents are normalised per channel (``latent_loc`` / ``latent_scale``, measured on training
data), so planners see unit-scale features; ``latent_spread`` (per dimension) is set by training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from grasplab.targets import import_target
from grasplab.world_models.base import check_step_inputs
from grasplab.world_models.pixel import PixelModel

DEFAULT_ENCODER = "grasplab.world_models.patch:ConvPatchEncoder"


@dataclass(frozen=True)
class PatchConfig:
    """Shape and size of a :class:`PatchModel` (frozen, validated)."""

    env_action_dim: int
    """Env action size ``A_env``."""
    action_block: int = 1
    """Env steps per model step (frame-skip ``k``); ``action_dim = k * A_env``."""
    image_size: int = 64
    """Side of the square RGB input images."""
    grid: int = 8
    """Patches per side ``g`` (``P = g * g`` tokens)."""
    channels: int = 16
    """Feature channels per patch ``C`` (``D = P * C``)."""
    hidden: int = 48
    """Hidden channels of the predictor."""
    encoder: str = DEFAULT_ENCODER
    """Import path of the encoder factory (see the module's docstring)."""
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the encoder factory (besides ``image_size``, ``grid``,
    ``channels``, which every factory receives)."""
    action_loc: float = 0.0
    """Actions enter the predictor as ``(a - action_loc) / action_scale`` (env units), as in
    :class:`~grasplab.world_models.pixel.PixelConfig`."""
    action_scale: float = 1.0
    """See ``action_loc``; e.g. Push-T's targets in ``[0, 512]`` pixels: 256 and 128."""
    residual_decoder: bool = False
    """The decoder predicts a residual over the static background: ``recon = background +
    decoder(z)`` (linear; :meth:`PatchModel.decode` clips to ``[0, 1]``), the background
    ``(H, W, 3)`` a buffer set by training (:meth:`PatchModel.set_background`) and saved with the
    weights, so that the table and the goal cost the decoder nothing. False (every checkpoint
    before it): ``sigmoid(decoder(z))``."""
    decoder_width: int = 32
    """Hidden channels of the :class:`PatchDecoder` (the autoencoder's half)."""

    def __post_init__(self) -> None:
        ints = ("env_action_dim", "action_block", "image_size", "grid", "channels", "hidden")
        for name in (*ints, "decoder_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PatchConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.encoder_kwargs, dict):
            raise ValueError("PatchConfig.encoder_kwargs must be a dict")
        if not self.action_scale > 0:
            raise ValueError(f"PatchConfig.action_scale must be > 0, got {self.action_scale!r}")
        object.__setattr__(self, "encoder_kwargs", dict(self.encoder_kwargs))

    @property
    def tokens(self) -> int:
        """``P``."""
        return self.grid * self.grid


class ConvPatchEncoder(nn.Module):
    """Strided convolutions from ``image_size`` down to a ``grid x grid`` map of features.

    Args:
        image_size: Input side (a multiple of ``grid`` whose ratio is a power of two).
        grid: Output side ``g``.
        channels: Output channels ``C``.
        width: Channels of the hidden layers.
    """

    def __init__(self, image_size: int, grid: int, channels: int, width: int = 32) -> None:
        super().__init__()
        ratio = image_size // grid
        if image_size % grid or ratio & (ratio - 1):
            raise ValueError(
                f"ConvPatchEncoder: image_size / grid must be a power of two, got "
                f"{image_size} / {grid}"
            )
        layers: list[nn.Module] = []
        c_in = 3
        while ratio > 1:
            layers += [nn.Conv2d(c_in, width, 4, stride=2, padding=1), nn.GELU()]
            c_in, ratio = width, ratio // 2
        layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` in ``[0, 1]`` -> patch features ``(N, P, C)``."""
        x = self.net(images)  # (N, C, g, g)
        return x.flatten(2).transpose(1, 2)


class ViTPatchEncoder(nn.Module):
    """A plain ViT (DINOv2's layout: patch embedding, [CLS], learned positions, pre-norm blocks).

    With the defaults it has DINOv2-small's shape (patch 14, width 384, 12 blocks, 6 heads);
    randomly initialised here, since the pretrained weights cannot be downloaded. A projection
    to ``channels`` follows (``nn.Identity`` when ``channels == width``). Output: the patch
    tokens, ``(N, (image_size / patch)^2, channels)``; ``grid`` must equal ``image_size / patch``.
    """

    def __init__(
        self,
        image_size: int,
        grid: int,
        channels: int,
        patch: int = 14,
        width: int = 384,
        depth: int = 12,
        heads: int = 6,
    ) -> None:
        super().__init__()
        if image_size % patch or image_size // patch != grid:
            raise ValueError(
                f"ViTPatchEncoder: image_size / patch = {image_size} / {patch} must equal grid "
                f"{grid}"
            )
        self.embed = nn.Conv2d(3, width, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(0.02 * torch.randn(1, grid * grid + 1, width))
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.project = nn.Identity() if channels == width else nn.Linear(width, channels)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> patch tokens ``(N, P, channels)`` (the [CLS] token dropped)."""
        x = self.embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        x = self.norm(self.blocks(x))
        return self.project(x[:, 1:])


class PatchDecoder(nn.Module):
    """Transposed convolutions from the patch grid back to an image (the autoencoder's half)."""

    def __init__(self, image_size: int, grid: int, channels: int, width: int = 32) -> None:
        super().__init__()
        ratio = image_size // grid
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.GELU()]
        while ratio > 1:
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GELU()]
            ratio //= 2
        layers += [nn.Conv2d(width, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.grid = grid

    def forward(self, features: Tensor) -> Tensor:
        """Patch features ``(N, P, C)`` -> ``(N, 3, H, W)``: logits, or a background residual.

        Logits of ``[0, 1]``; a residual over the background with
        ``PatchConfig.residual_decoder``.
        """
        n, p, c = features.shape
        x = features.transpose(1, 2).reshape(n, c, self.grid, self.grid)
        return self.net(x)


class PatchPredictor(nn.Module):
    """Residual predictor over the patch grid, conditioned on the action block (FiLM)."""

    def __init__(self, grid: int, channels: int, hidden: int, action_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.mix = nn.Conv2d(channels, hidden, 3, padding=1)
        self.film = nn.Linear(action_dim, 2 * hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Conv2d(hidden, hidden, 1), nn.GELU())
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity map
        nn.init.zeros_(self.out.bias)

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        """``z (N, P, C)``, ``a (N, A)`` -> next patch features ``(N, P, C)``."""
        n, p, c = z.shape
        x = z.transpose(1, 2).reshape(n, c, self.grid, self.grid)
        scale, shift = self.film(a).chunk(2, dim=-1)
        h = self.mix(x) * (1 + scale[..., None, None]) + shift[..., None, None]
        delta = self.out(self.mlp(h))
        return z + delta.flatten(2).transpose(1, 2)


class PatchModel(nn.Module):
    """A patch-grid world model (a :class:`~grasplab.world_models.WorldModel` over images).

    Shapes: ``encode`` ``(..., H, W, 3)`` uint8 (0..255) or float (``[0, 1]``) -> ``(..., D)``
    with ``D = P * C``; ``step`` ``(..., D), (..., k * A_env) -> (..., D)``;
    ``token_shape = (P, C)``: ``z.view(..., P, C)`` is the token grid.

    Args:
        config: A :class:`PatchConfig`.
    """

    kind = "patch"
    observation = "pixels"

    def __init__(self, config: PatchConfig) -> None:
        super().__init__()
        self.config = config
        P, C = config.tokens, config.channels
        self.token_shape = (P, C)
        self.state_dim = P * C
        self.action_block = config.action_block
        self.action_dim = config.env_action_dim * config.action_block
        factory = import_target(config.encoder, "PatchConfig.encoder")
        self.encoder = factory(
            image_size=config.image_size,
            grid=config.grid,
            channels=C,
            **config.encoder_kwargs,
        )
        if not isinstance(self.encoder, nn.Module):
            raise ValueError(f"encoder {config.encoder!r} must return an nn.Module")
        self.decoder = PatchDecoder(config.image_size, config.grid, C, config.decoder_width)
        if config.residual_decoder:
            side = config.image_size
            self.register_buffer("background", torch.full((side, side, 3), 0.5))
        self.predictor = PatchPredictor(config.grid, C, config.hidden, self.action_dim)
        self.register_buffer("latent_loc", torch.zeros(C))
        self.register_buffer("latent_scale", torch.ones(C))

    # -- checkpoint interface ------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, values: dict[str, Any]) -> PatchModel:
        """Build (untrained) from :meth:`config_dict` output."""
        return cls(PatchConfig(**values))

    # -- raw computations (used by training) ---------------------------------------------------

    images_to_input = PixelModel.images_to_input
    """``(N, H, W, 3)`` uint8 or float -> ``(N, 3, H, W)`` floats in ``[0, 1]`` (the pixel
    model's conversion: same ``config.image_size`` and ``latent_loc`` dtype contract)."""

    def features(self, obs: Tensor) -> Tensor:
        """Raw patch features ``(..., P, C)`` of images ``(..., H, W, 3)``."""
        lead = obs.shape[:-3]
        x = self.images_to_input(obs.reshape(-1, *obs.shape[-3:]))
        f = self.encoder(x)
        P, C = self.token_shape
        if f.shape[1:] != (P, C):
            raise ValueError(
                f"encoder {self.config.encoder!r} returned {tuple(f.shape[1:])} per image, "
                f"expected (P, C) = ({P}, {C})"
            )
        return f.reshape(*lead, P, C)

    # -- WorldModel ----------------------------------------------------------------------------

    def encode(self, obs: Tensor) -> Tensor:
        """Images ``(..., H, W, 3)`` -> normalised flat latents ``(..., D)``."""
        z = (self.features(obs) - self.latent_loc) / self.latent_scale
        return z.flatten(-2)

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step ``(..., D), (..., k * A_env) -> (..., D)``, differentiable."""
        check_step_inputs(self, z, a)
        lead = z.shape[:-1]
        P, C = self.token_shape
        tokens = z.reshape(-1, P, C)
        a = (a.reshape(-1, self.action_dim).to(z) - self.config.action_loc) / (
            self.config.action_scale
        )
        out = self.predictor(tokens, a)
        return out.reshape(*lead, P * C)

    def reconstruct(self, features: Tensor) -> Tensor:
        """Raw patch features ``(N, P, C)`` -> images ``(N, H, W, 3)``, the training target's units.

        In ``[0, 1]``, except for a residual decoder's overshoot, which :meth:`decode` clips.
        """
        out = self.decoder(features).permute(0, 2, 3, 1)
        if self.config.residual_decoder:
            return self.background + out
        return torch.sigmoid(out)

    def decode(self, z: Tensor) -> Tensor:
        """Normalised latents ``(..., D)`` -> reconstructed images ``(..., H, W, 3)`` in [0, 1]."""
        lead = z.shape[:-1]
        P, C = self.token_shape
        raw = z.reshape(-1, P, C) * self.latent_scale + self.latent_loc
        x = self.reconstruct(raw).clamp(0.0, 1.0)
        return x.reshape(*lead, *x.shape[1:])

    @torch.no_grad()
    def set_background(self, background: Tensor) -> None:
        """The residual decoder's static background ``(H, W, 3)`` in ``[0, 1]``."""
        if not self.config.residual_decoder:
            raise ValueError("set_background: this PatchModel has no residual decoder")
        self.background.copy_(background)

    @torch.no_grad()
    def set_latent_normalization(self, features: Tensor) -> None:
        """Per-channel location and scale from raw patch features ``(N, P, C)``."""
        flat = features.reshape(-1, features.shape[-1])
        self.latent_loc.copy_(flat.mean(0))
        self.latent_scale.copy_(flat.std(0).clamp_min(1e-6))


def freeze_encoder(model: PatchModel) -> None:
    """Freeze the encoder (after its autoencoder stage), as DINO-WM freezes DINOv2."""
    model.encoder.requires_grad_(False)
    model.encoder.eval()
