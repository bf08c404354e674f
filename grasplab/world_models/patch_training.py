"""Training a :class:`~grasplab.world_models.patch.PatchModel` in DINO-WM's two stages.

1. **Encoder** (skipped for a pretrained encoder, ``train_encoder=False``): the encoder and the
   decoder are trained as an autoencoder on the training episodes' images. The loss weights each
   pixel by how far it is from the static background (the per-pixel median of the data), so that
   a small agent (a few pixels of 64x64 in the mazes) is not drowned by the layout. The encoder
   is then frozen (:func:`~grasplab.world_models.patch.freeze_encoder`), as DINO-WM freezes
   DINOv2, and the latents' per-channel normalisation is measured on the training images.
2. **Predictor**: on windows of ``window`` model steps, the open-loop rollout from the first
   frame's latent is regressed onto the latents of the later frames (a multi-step loss in
   normalised latent units), plus the teacher-forced one-step error.

Validation uses the last ``val_fraction`` episodes (never trained on); the checkpoint records
the data's identity, the validation range and the latent spread, like ``grasplab train``'s.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grasplab.world_models import checkpoint
from grasplab.world_models.data import Episodes, load_episodes
from grasplab.world_models.patch import PatchConfig, PatchModel, freeze_encoder
from grasplab.world_models.training import (
    background,
    draw_windows,
    latent_spread,
    split_episodes,
)


@dataclass(frozen=True)
class PatchTrainConfig:
    """Everything that decides a patch-model training run (recorded in the checkpoint)."""

    seed: int = 0
    """Seed of the initialisation and of the samplers."""
    encoder_steps: int = 1500
    """Autoencoder steps (stage 1); ignored when ``train_encoder`` is False."""
    predictor_steps: int = 2000
    """Predictor steps (stage 2)."""
    batch: int = 64
    """Images (stage 1) or windows (stage 2) per batch."""
    lr: float = 2e-3
    """Adam learning rate of both stages (cosine-decayed to 10%)."""
    window: int = 4
    """Model steps per predictor training window."""
    action_block: int = 0
    """Env steps per model step; 0: the dataset's."""
    foreground_weight: float = 30.0
    """Extra reconstruction weight of pixels that differ from the background."""
    val_fraction: float = 0.1
    """Fraction of episodes held out (the last ones) for validation."""
    train_encoder: bool = True
    """False: keep the encoder as built (a pretrained one), train the predictor only."""
    model: dict[str, Any] = field(default_factory=dict)
    """``PatchConfig`` overrides (``grid``, ``channels``, ``hidden``, ``encoder``, ...)."""

    def __post_init__(self) -> None:
        for name in ("encoder_steps", "predictor_steps", "batch", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PatchTrainConfig.{name} must be an int >= 1, got {value!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"PatchTrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}"
            )


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )


def _frames(data: Episodes, episodes: range, count: int, g: torch.Generator) -> Tensor:
    assert data.images is not None
    ep = episodes.start + torch.randint(len(episodes), (count,), generator=g)
    t = torch.randint(data.images.shape[1], (count,), generator=g)
    return data.images[ep, t]


def recon_loss(model: PatchModel, images: Tensor, bg: Tensor, weight: float) -> Tensor:
    """Background-weighted reconstruction error of images ``(N, H, W, 3)`` uint8."""
    x = model.images_to_input(images)
    target = x.permute(0, 2, 3, 1)
    fg = (target - bg).abs().amax(-1, keepdim=True)  # (N, H, W, 1)
    w = 1.0 + weight * (fg > 0.05).to(x.dtype)
    recon = torch.sigmoid(model.decoder(model.encoder(x))).permute(0, 2, 3, 1)
    return ((recon - target).square() * w).sum() / (w.sum() * 3)


def _latents(model: PatchModel, images: Tensor) -> Tensor:
    """Normalised flat latents ``(B, L+1, D)`` of windows' images ``(B, L+1, H, W, 3)``."""
    with torch.no_grad():
        return model.encode(images)


def predictor_loss(model: PatchModel, z: Tensor, actions: Tensor) -> tuple[Tensor, dict]:
    """Open-loop multi-step + teacher-forced one-step error, normalised latent units."""
    L = actions.shape[1]
    pred, errors = z[:, 0], []
    for t in range(L):
        pred = model.step(pred, actions[:, t])
        errors.append((pred - z[:, t + 1]).square().mean())
    one = (model.step(z[:, :-1], actions) - z[:, 1:]).square().mean()
    loss = torch.stack(errors).mean() + one
    parts = {"open": float(torch.stack(errors).mean().detach()), "one_step": float(one.detach())}
    return loss, parts


def train_patch(
    data_dir: str | Path,
    out_dir: str | Path,
    config: PatchTrainConfig | None = None,
    log: Any = None,
    log_every: int = 250,
) -> dict[str, Any]:
    """Train a patch model on a ``grasplab collect`` dataset; write a checkpoint to ``out_dir``.

    ``log(metrics)`` is called every ``log_every`` steps of each stage.

    Returns:
        A summary: validation errors (open-loop per step, relative to the latents' variance),
        steps and seconds per stage.
    """
    cfg = config or PatchTrainConfig()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    data = load_episodes(data_dir, images=True)
    manifest = data.manifest
    block = cfg.action_block or int(manifest["action_block"])
    train_eps, val_eps = split_episodes(len(data), cfg.val_fraction)
    model = PatchModel(
        PatchConfig(
            env_action_dim=int(manifest["action_dim"]),
            action_block=block,
            image_size=int(manifest["image_size"]),
            **cfg.model,
        )
    )
    bg = background(data.images[train_eps.start : train_eps.stop, 0])

    if cfg.train_encoder:
        params = [*model.encoder.parameters(), *model.decoder.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        sched = _schedule(opt, cfg.encoder_steps)
        for step in range(cfg.encoder_steps):
            loss = recon_loss(
                model, _frames(data, train_eps, cfg.batch, g), bg, cfg.foreground_weight
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if log and (step + 1) % log_every == 0:
                log({"stage": 1, "step": step + 1, "recon": float(loss.detach())})
    freeze_encoder(model)
    with torch.no_grad():
        frames = _frames(data, train_eps, 512, g)
        model.set_latent_normalization(
            torch.cat([model.features(frames[i : i + 64]) for i in range(0, 512, 64)])
        )
        val_recon = float(
            recon_loss(model, _frames(data, val_eps, 256, g), bg, cfg.foreground_weight)
        )
    encoder_seconds = time.perf_counter() - start

    opt = torch.optim.Adam(model.predictor.parameters(), lr=cfg.lr)
    sched = _schedule(opt, cfg.predictor_steps)
    for step in range(cfg.predictor_steps):
        w = draw_windows(data, train_eps, cfg.batch, cfg.window, block, False, g)
        loss, parts = predictor_loss(model, _latents(model, w.images), w.actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log and (step + 1) % log_every == 0:
            log({"stage": 2, "step": step + 1, "loss": float(loss.detach()), **parts})
    model.requires_grad_(False)
    model.eval()

    val = evaluate_kstep(model, data, val_eps, block, cfg.window, g)
    spread = latent_spread(model, data, train_eps, block, cfg.window, g)
    info = {
        "env": manifest["env"],
        "env_overrides": manifest.get("env_overrides", {}),
        "data": {
            "dir": str(data_dir),
            "episodes": len(data),
            "steps": manifest["steps"],
            "seed": manifest["seed"],
            "shards_sha256": [s["sha256"] for s in manifest["shards"]],
        },
        "val_episodes": [val_eps.start, val_eps.stop],
        "train": dataclasses.asdict(cfg),
        "val_recon": val_recon,
        "val_relative_error": val,
        "latent_spread": [round(float(x), 6) for x in spread],
        "seconds": round(time.perf_counter() - start, 1),
        "encoder_seconds": round(encoder_seconds, 1),
    }
    checkpoint.save(model, out_dir, info=info)
    return {"checkpoint": str(out_dir), **{k: info[k] for k in ("val_recon", "seconds")}, **val}


@torch.no_grad()
def evaluate_kstep(
    model: PatchModel,
    data: Episodes,
    episodes: range,
    block: int,
    window: int,
    g: torch.Generator,
    count: int = 128,
) -> dict[str, float]:
    """Open-loop ``k``-step latent error / latent variance on ``episodes``, ``k = 1..window``.

    0 is a perfect prediction; 2 is what a random latent of the data would score; a model that
    predicts "nothing moves" scores the ``copy_k`` baselines also returned.
    """
    w = draw_windows(data, episodes, count, window, block, False, g)
    z = _latents(model, w.images)
    var = z.var(dim=(0, 1)).mean().clamp_min(1e-8)
    pred, out = z[:, 0], {}
    for t in range(window):
        pred = model.step(pred, w.actions[:, t])
        out[f"k{t + 1}"] = float((pred - z[:, t + 1]).square().mean() / var)
        out[f"copy_k{t + 1}"] = float((z[:, 0] - z[:, t + 1]).square().mean() / var)
    return out
