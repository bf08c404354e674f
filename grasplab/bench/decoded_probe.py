"""A position read-out for world models with an image decoder: decode, then find the agent.

The ridge linear probe of :func:`grasplab.bench.quality.fit_position_probe` reads the keypoint
pixel models (16-d latents) well, but over a 1,024-d patch latent it amplifies the
off-manifold errors of PREDICTED latents into position errors of tens of env units (docs/recipes.md
section 6). A model that decodes its latents to images (``PatchModel.decode(z) -> (..., H, W,
3)`` in ``[0, 1]``) can be read through its own decoder instead:

1. the static background: the per-pixel median of many decoded renders of random free states
   (the agent moves, the layout does not), and the agent's colour: the median colour of the
   true renders' pixels that differ from their median by more than :data:`AGENT_DIFFERENCE`;
2. the agent heatmap of a decoded image: its excess over the background projected on the
   agent's colour (per pixel, ``(image - background) . (colour - background) / |colour -
   background|^2``, clamped at 0; 1 where the decoder draws the agent's colour), keeping only
   the pixels above ``relative_threshold`` x the image's maximum (robust to a predicted agent
   that blurs or fades, where an absolute threshold loses it);
3. the heatmap's centroid in pixel coordinates, mapped to env positions by an affine map (six
   numbers) fitted by least squares on encode -> decode of TRUE renders; its error on held-out
   renders is reported.

Designed on ``wall-patch-b1`` and ``pointmaze-patch-b1`` against channel-summed absolute
differences, absolute thresholds (they lose a predicted agent that fades), soft-argmax, a window
around the peak and quadratic / cubic calibrations: among the best on predicted latents at
k <= 20 on both (a relative threshold of 0.3 was ~5% lower there, 0.5 slightly lower on true
renders), see BENCHMARKS.md 7.2.
A benchmark component, not part of the models (the layering keeps ``grasplab/world_models/``
free of ``grasplab/bench``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

AGENT_DIFFERENCE = 0.5
"""Channel-summed ``|render - median render|`` above which a true pixel belongs to the agent."""


@dataclass(frozen=True)
class DecodedPositionProbe:
    """Latents ``(..., D)`` -> positions ``(..., 2)`` (env units) through ``model.decode``.

    Attributes:
        model: A model whose ``decode`` maps ``(N, D)`` to images ``(N, H, W, 3)`` in [0, 1].
        background: The decoded background ``(H, W, 3)``.
        direction: Per pixel ``(colour - background) / |colour - background|^2``, ``(H, W, 3)``.
        weight: The affine map ``[cx, cy, 1] @ weight`` from centroid pixels, ``(3, 2)``.
        relative_threshold: Heatmap pixels kept: above this fraction of the image's maximum.
        heldout_error: Mean Euclidean error on held-out true renders (encode -> decode), env
            units.
        r2: Coefficient of determination on those renders (both coordinates pooled).
        count: Renders the map was fitted on.
        chunk: Latents decoded per call.
    """

    model: nn.Module = field(repr=False)
    background: Tensor
    direction: Tensor
    weight: Tensor
    relative_threshold: float
    heldout_error: float = float("nan")
    r2: float = float("nan")
    count: int = 0
    chunk: int = 256

    def heatmap(self, images: Tensor) -> Tensor:
        """Agent heatmaps ``(N, H, W)`` (>= 0, thresholded) of images ``(N, H, W, 3)``."""
        excess = (images - self.background.to(images)) * self.direction.to(images)
        h = excess.sum(-1).clamp_min(0)
        top = h.amax(dim=(-2, -1), keepdim=True)
        return (h - self.relative_threshold * top).clamp_min(0)

    def centroid(self, images: Tensor) -> Tensor:
        """Heatmap centroids ``(N, 2)`` as ``(x, y)`` pixel coordinates (pixel centres at +0.5).

        An image without any heatmap mass reads as the image centre.
        """
        h = self.heatmap(images)
        rows, cols = h.shape[-2:]
        ys = torch.arange(rows, dtype=h.dtype, device=h.device) + 0.5
        xs = torch.arange(cols, dtype=h.dtype, device=h.device) + 0.5
        mass = h.sum(dim=(-2, -1))
        empty = mass <= 0
        mass = torch.where(empty, torch.ones_like(mass), mass)
        cx = torch.where(empty, xs.mean(), (h.sum(-2) * xs).sum(-1) / mass)
        cy = torch.where(empty, ys.mean(), (h.sum(-1) * ys).sum(-1) / mass)
        return torch.stack([cx, cy], dim=-1)

    def read_images(self, images: Tensor) -> Tensor:
        """Positions ``(..., 2)`` of images ``(..., H, W, 3)`` in [0, 1]."""
        lead = images.shape[:-3]
        c = self.centroid(images.reshape(-1, *images.shape[-3:]))
        return _affine(c, self.weight.to(c)).reshape(*lead, 2)

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        """Positions ``(..., 2)`` from latents ``(..., D)`` (decoded in chunks, no gradient)."""
        flat = z.reshape(-1, z.shape[-1])
        parts = [
            self.read_images(self.model.decode(flat[i : i + self.chunk]))
            for i in range(0, len(flat), self.chunk)
        ]
        out = torch.cat(parts) if parts else flat.new_zeros(0, 2)
        return out.reshape(*z.shape[:-1], 2)

    def summary(self) -> dict[str, Any]:
        """Its accuracy and settings, for reports."""
        return {
            "kind": "decoded",
            "heldout_error": self.heldout_error,
            "r2": self.r2,
            "count": self.count,
            "relative_threshold": self.relative_threshold,
            "weight": self.weight.tolist(),
        }


def _affine(c: Tensor, weight: Tensor) -> Tensor:
    """``[c, 1] @ weight``: ``(N, 2)`` centroids -> ``(N, 2)`` positions."""
    return c @ weight[:2] + weight[2]


def decodes_images(model: Any, images: Tensor) -> bool:
    """Whether ``model.decode`` maps the latents of ``images (N, H, W, 3)`` back to such images.

    True for ``PatchModel``; False for ``PixelModel`` (its ``decode`` returns heatmaps) and
    state models.
    """
    if getattr(model, "observation", "state") != "pixels" or not hasattr(model, "decode"):
        return False
    device = next(iter(model.parameters())).device
    with torch.no_grad():
        out = model.decode(model.encode(images[:1].to(device)))
    return tuple(out.shape) == (1, *images.shape[1:3], 3)


@torch.no_grad()
def _decoded_renders(model: nn.Module, images: Tensor, chunk: int = 256) -> Tensor:
    """``decode(encode(images))``, ``(N, H, W, 3)`` in [0, 1], on the CPU."""
    device = next(iter(model.parameters())).device
    parts = [
        model.decode(model.encode(images[i : i + chunk].to(device))).cpu()
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts).float()


def agent_colour(renders: Tensor) -> tuple[Tensor, Tensor]:
    """The median render ``(H, W, 3)`` and the agent's colour ``(3,)`` of renders in [0, 1].

    Raises:
        ValueError: No pixel differs from the median (nothing moves in these renders).
    """
    median = renders.median(dim=0).values
    moving = (renders - median).abs().sum(-1) > AGENT_DIFFERENCE
    if not bool(moving.any()):
        raise ValueError("decoded probe: no pixel of the renders differs from their median")
    return median, renders[moving].median(dim=0).values


@torch.no_grad()
def fit_decoded_probe(
    model: nn.Module,
    env: Any,
    count: int = 2048,
    heldout: int = 512,
    seed: int = 0,
    relative_threshold: float = 0.5,
) -> DecodedPositionProbe:
    """Fit a :class:`DecodedPositionProbe` on renders of random free states (``env.reset``).

    Args:
        model: A model with an image ``decode`` (:func:`decodes_images`).
        env: The environment it was trained on (``reset``, ``render``; position = state[:, :2]).
        count: Renders fitting the background, the colour and the affine map.
        heldout: Renders scoring it.
        seed: Seed of the random states.
        relative_threshold: See :class:`DecodedPositionProbe`.
    """
    g = torch.Generator().manual_seed(seed)
    states = env.reset(g, count + heldout)
    renders = env.render(states)
    true = renders[:count].float() / 255.0
    decoded = _decoded_renders(model, renders)
    median, colour = agent_colour(true)
    delta = colour - median
    direction = delta / delta.square().sum(-1, keepdim=True).clamp_min(1e-6)
    probe = DecodedPositionProbe(
        model=model,
        background=decoded[:count].median(dim=0).values,
        direction=direction,
        weight=torch.zeros(3, 2),
        relative_threshold=relative_threshold,
    )
    c = probe.centroid(decoded).double()
    pos = states[:, :2].double()
    a = torch.cat([c, torch.ones(len(c), 1, dtype=c.dtype)], dim=1)
    weight = torch.linalg.lstsq(a[:count], pos[:count]).solution
    pred, target = _affine(c[count:], weight), pos[count:]
    resid = (pred - target).square().sum()
    total = (target - target.mean(0)).square().sum()
    return DecodedPositionProbe(
        model=model,
        background=probe.background,
        direction=direction,
        weight=weight.float(),
        relative_threshold=relative_threshold,
        heldout_error=(pred - target).norm(dim=-1).mean().item(),
        r2=1.0 - (resid / total).item(),
        count=count,
    )


DEFAULT_KS = list(range(1, 81))
"""Every depth to 80: a plan's mean error over its H steps can be set beside the mean over
``k = 1..H`` on behaviour data."""


def measure(name: str, data_dir: str, ks: list[int], windows: int = 256) -> dict[str, Any]:
    """A shipped pixel checkpoint's read-outs: their error on true renders and k-step errors.

    The linear probe always, the decoded one where ``decode`` returns images. The k-step errors
    are :func:`grasplab.bench.quality.kstep_errors` on ``windows`` windows of the checkpoint's
    held-out episodes (``info.val_episodes``), from an episode's first step, along the recorded
    (behaviour) actions.
    """
    from grasplab.bench.quality import _overrides, fit_position_probe, kstep_errors
    from grasplab.envs import make
    from grasplab.world_models import checkpoint
    from grasplab.world_models.checkpoint import CHECKPOINTS
    from grasplab.world_models.data import load_episodes, require_dataset

    path = CHECKPOINTS / name
    model, meta = checkpoint.load(path), checkpoint.info(path)
    require_dataset(data_dir, meta["env"])
    env = make(meta["env"], **_overrides(meta["env_overrides"]))
    data = load_episodes(data_dir, images=True)
    held_out = range(*meta["val_episodes"])
    out: dict[str, Any] = {"name": name, "data": data_dir, "episodes": list(meta["val_episodes"])}
    probes: dict[str, Any] = {"linear": fit_position_probe(model, env)}
    if decodes_images(model, env.render(env.reset(torch.Generator().manual_seed(0), 1))):
        probes["decoded"] = fit_decoded_probe(model, env)
    for label, probe in probes.items():
        kstep = kstep_errors(model, data, held_out, tuple(ks), windows, probe=probe)
        out[label] = {"probe": probe.summary(), "kstep": kstep}
    return out


if __name__ == "__main__":
    sys.exit("python -m grasplab.bench.decoded_probe is gone; run: grasplab bench decoded-probe")
