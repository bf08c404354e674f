"""What every world-model training shares: episode splits, windows, the background, spreads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from grasplab.world_models.data import Episodes

ACTION_NORMALIZATION: dict[str, tuple[float, float]] = {"sim:pusht": (256.0, 128.0)}
"""Pixel and patch models' default ``(action_loc, action_scale)`` per env whose actions are not
unit-scale (Push-T's targets in ``[0, 512]`` pixels)."""


@dataclass
class Windows:
    """Training windows drawn from episodes.

    Attributes:
        states: ``(B, L+1, S)`` env states every ``k`` env steps.
        actions: ``(B, L, k*A_env)`` action blocks.
        images: ``(B, L+1, H, W, 3)`` uint8 or None.
    """

    states: Tensor
    actions: Tensor
    images: Tensor | None


def split_episodes(
    n: int, val_fraction: float, episodes: tuple[int, int] | None = None
) -> tuple[range, range]:
    """Train and validation episode ranges (validation = the last ``ceil(f * n)`` episodes).

    Args:
        n: Episodes in the dataset.
        val_fraction: Fraction held out for validation.
        episodes: The range ``[first, stop)`` to split (default all ``n``).
    """
    first, stop = episodes or (0, n)
    if stop > n:
        raise ValueError(f"episodes [{first}, {stop}) lie beyond the dataset's {n} episodes")
    n_val = max(1, math.ceil(val_fraction * (stop - first)))
    if n_val >= stop - first:
        raise ValueError(f"need more than {n_val} episodes to hold out {val_fraction:.0%}")
    return range(first, stop - n_val), range(stop - n_val, stop)


def draw_windows(
    data: Episodes,
    episodes: range,
    count: int,
    window: int,
    block: int,
    from_start: bool,
    generator: torch.Generator,
) -> Windows:
    """Sample ``count`` windows of ``window`` model steps from ``episodes``.

    Args:
        data: The dataset.
        episodes: Episode indices to draw from.
        count: Number of windows ``B``.
        window: Model steps ``L`` per window.
        block: Env steps per model step ``k``.
        from_start: Start every window at the episode's first step (a state at rest).
        generator: Sampler RNG.
    """
    T = data.actions.shape[1]
    span = window * block
    if span > T:
        raise ValueError(f"window {window} x action_block {block} = {span} > episode length {T}")
    ep = episodes.start + torch.randint(len(episodes), (count,), generator=generator)
    if from_start:
        t0 = torch.zeros(count, dtype=torch.long)
    else:
        t0 = torch.randint(T - span + 1, (count,), generator=generator)
    times = t0[:, None] + block * torch.arange(window + 1)
    act_times = t0[:, None] + torch.arange(span)
    actions = data.actions[ep[:, None], act_times].reshape(count, window, -1)
    images = None if data.images is None else data.images[ep[:, None], times]
    return Windows(data.states[ep[:, None], times], actions, images)


@torch.no_grad()
def latent_spread(
    model: nn.Module,
    data: Episodes,
    episodes: range,
    block: int,
    window: int,
    generator: torch.Generator,
    count: int = 256,
) -> Tensor:
    """Per-dimension std ``(D,)`` of the model's latents on training data.

    Latents are the encoded first observations of ``count`` windows and the model's open-loop
    predictions along each window's recorded actions, so that state parts ``encode`` leaves at
    rest (a pixel model's velocity memory) get their spread too. This is the unit of GRASP's
    and LatCo's state step sizes and noise (``WorldModel.latent_spread``).
    """
    w = draw_windows(data, episodes, count, window, block, False, generator)
    pixels = getattr(model, "observation", "state") == "pixels"
    first = w.images[:, 0] if pixels and w.images is not None else w.states[:, 0]
    device = next(model.parameters()).device
    z = model.encode(first.to(device))
    latents = [z]
    for t in range(w.actions.shape[1]):
        z = model.step(z, w.actions[:, t].to(device))
        latents.append(z)
    return torch.cat(latents).float().std(dim=0).clamp_min(1e-6).cpu()


def background(images: Tensor) -> Tensor:
    """Per-pixel median ``(H, W, 3)`` floats in ``[0, 1]`` of images ``(N, H, W, 3)`` uint8."""
    return images.float().median(dim=0).values / 255.0
