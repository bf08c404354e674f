"""Training of the state (``mlp``) and pixel models: their config, losses and run.

Both kinds train in one stage on a dataset written by :func:`grasplab.world_models.data.collect`,
over windows of ``window`` model steps of ``action_block`` env steps; the loop, the resumable
state and the checkpoint are :mod:`grasplab.world_models.training.loop`'s.

- ``mlp``: open-loop rollout error in units of each dim's one-step increment scale.
- ``pixel``: decoder reconstruction (of the blurred foreground) + open-loop latent prediction error
  against the stop-gradient encodings of the future frames, and the same for a one-step
  "filtered" chain (encoded frame + predicted memory), both divided by the batch variance of the
  encodings (with its gradient) so that shrinking the latent cannot reduce them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grasplab.world_models.data import Episodes, load_episodes, read_manifest
from grasplab.world_models.mlp import MLPConfig, MLPModel
from grasplab.world_models.pixel import PixelConfig, PixelModel
from grasplab.world_models.training.loop import Log, fit
from grasplab.world_models.training.windows import (
    ACTION_NORMALIZATION,
    Windows,
    background,
    draw_windows,
    latent_spread,
    split_episodes,
)

LOSS_UNITS = {"increment": 1.0, "geometric": 0.5, "latent": 0.0}
"""``TrainConfig.loss_units`` -> the power of ``delta_scale`` dividing the MLP's rollout error."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (recorded in the checkpoint's ``info``)."""

    kind: str = "mlp"
    """``mlp`` (state model) or ``pixel``."""
    seed: int = 0
    """Seed of the initialisation and of the batch sampler."""
    steps: int = 3000
    """Optimiser steps (upper bound; early stopping may end sooner)."""
    batch: int = 128
    """Windows per batch."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 10% over ``steps``)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    action_block: int = 0
    """Env steps per model step; 0: the dataset's ``action_block``."""
    window: int = 5
    """Model steps per training window (multi-step loss)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out (the last ones) for validation."""
    loss_units: str = "increment"
    """``mlp``: units of the rollout error per latent dim. ``increment``: its one-step increment
    scale (``delta_scale``); dims that change little per step (a block pushed now and then)
    then dominate the loss. ``latent``: the unit-scale latent, the units planners' goal costs
    are measured in. ``geometric``: their geometric mean, ``sqrt(delta_scale)``."""
    episodes: tuple[int, int] | None = None
    """Episode range ``[first, stop)`` this run reads (training and its validation, the last
    ``val_fraction`` of it); None: all. Keeps a dataset's tuning and test episodes unseen."""
    val_windows: int = 256
    """Fixed validation windows."""
    eval_every: int = 200
    """Steps between validations (and resumable-state saves)."""
    patience: int = 8
    """Validations without improvement before early stopping."""
    max_minutes: float = 0.0
    """Wall-clock budget of this invocation (0: none); the state is saved, rerun to resume."""
    model: dict[str, Any] = field(default_factory=dict)
    """Model config overrides (``MLPConfig`` / ``PixelConfig`` fields)."""

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "pixel"):
            raise ValueError(f"TrainConfig.kind must be 'mlp' or 'pixel', got {self.kind!r}")
        for name in ("steps", "batch", "window", "val_windows", "eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if self.loss_units not in LOSS_UNITS:
            raise ValueError(
                f"TrainConfig.loss_units must be one of {list(LOSS_UNITS)}, got {self.loss_units!r}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.episodes is not None:
            bounds = tuple(self.episodes)
            ok = len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
            if not ok or not 0 <= bounds[0] < bounds[1]:
                raise ValueError(
                    f"TrainConfig.episodes must be [first, stop) with 0 <= first < stop, got "
                    f"{self.episodes!r}"
                )
            object.__setattr__(self, "episodes", bounds)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def mlp_loss(
    model: MLPModel, w: Windows, units: str = "increment"
) -> tuple[Tensor, dict[str, float]]:
    """Open-loop rollout error, averaged over steps and dims.

    Units per dim: its one-step increment scale (``units="increment"``), the unit-scale
    latent's own (``units="latent"``) or their geometric mean; see
    :attr:`TrainConfig.loss_units`.
    """
    z = model.encode(w.states)
    scale = model.delta_scale ** LOSS_UNITS[units]
    pred, errors = z[:, 0], []
    for j in range(w.actions.shape[1]):
        pred = model.step(pred, w.actions[:, j])
        errors.append(((pred - z[:, j + 1]) / scale).square().mean())
    loss = torch.stack(errors).mean()
    return loss, {"loss": loss.item(), "one_step": errors[0].item()}


def recon_loss(model: PixelModel, e: Tensor, images: Tensor) -> Tensor:
    """Heatmap reconstruction error relative to the target's energy (0: perfect, 1: blank)."""
    target = model.heatmap(images)
    return (model.reconstruct(e) - target).square().mean() / target.square().mean().clamp_min(1e-8)


def pixel_loss(model: PixelModel, w: Windows) -> tuple[Tensor, dict[str, float]]:
    """Reconstruction + open-loop and filtered latent prediction (see the module docstring)."""
    assert w.images is not None
    e = model.embed(w.images)  # (B, L+1, d)
    target = e.detach()
    var = e.var(dim=(0, 1)).mean().clamp_min(1e-6)  # not detached: the ratio is scale-free
    d = model.latent_dim
    open_z = model.with_memory(e[:, 0])
    filt_z = open_z
    open_err, filt_err = [], []
    for j in range(w.actions.shape[1]):
        a = w.actions[:, j]
        open_z = model.raw_step(open_z, a)
        filt_z = model.raw_step(filt_z, a)
        open_err.append((open_z[:, :d] - target[:, j + 1]).square().mean() / var)
        filt_err.append((filt_z[:, :d] - target[:, j + 1]).square().mean() / var)
        filt_z = torch.cat([e[:, j + 1], filt_z[:, d:]], dim=-1)
    rec = recon_loss(model, e, w.images)
    pred_open, pred_filt = torch.stack(open_err).mean(), torch.stack(filt_err).mean()
    loss = rec + pred_open + pred_filt
    parts = {
        "loss": loss,
        "recon": rec,
        "pred_open": pred_open,
        "pred_filtered": pred_filt,
        "latent_var": var,
    }
    metrics = {k: v.item() for k, v in parts.items()}
    return loss, metrics


# --------------------------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------------------------


ANGLE_DIMS: dict[str, tuple[int, ...]] = {"sim:pusht": (4,)}
"""State dims that are angles, per env (Push-T's block angle): the MLP's default ``angle_dims``."""


def build_model(cfg: TrainConfig, manifest: dict[str, Any], block: int) -> nn.Module:
    """A fresh model for the dataset's env (``cfg.model`` overrides the defaults)."""
    if cfg.kind == "mlp":
        angles = ANGLE_DIMS.get(manifest["env"], ())
        return MLPModel(
            MLPConfig(
                state_dim=manifest["state_dim"],
                env_action_dim=manifest["action_dim"],
                action_block=block,
                **{"angle_dims": angles, **cfg.model},
            )
        )
    loc, scale = ACTION_NORMALIZATION.get(manifest["env"], (0.0, 1.0))
    defaults = {
        "memory_dim": 4 if manifest["state_dim"] > 2 else 0,
        "image_size": manifest["image_size"],
        "action_loc": loc,
        "action_scale": scale,
    }
    return PixelModel(
        PixelConfig(
            env_action_dim=manifest["action_dim"], action_block=block, **{**defaults, **cfg.model}
        )
    )


def fit_mlp_normalization(model: MLPModel, data: Episodes, episodes: range, block: int) -> None:
    """Normalisation statistics of an MLP model from all block transitions of ``episodes``."""
    states = data.states[episodes.start : episodes.stop]
    actions = data.actions[episodes.start : episodes.stop]
    n, T = actions.shape[:2]
    steps = T // block
    s = states[:, : steps * block + 1 : block]
    a = actions[:, : steps * block].reshape(n, steps, -1)
    model.fit_normalization(
        s[:, :-1].reshape(n * steps, -1), a.reshape(n * steps, -1), s[:, 1:].reshape(n * steps, -1)
    )


@torch.no_grad()
def fit_pixel_normalization(
    model: PixelModel,
    data: Episodes,
    episodes: range,
    block: int,
    window: int,
    generator: torch.Generator,
    count: int = 256,
) -> None:
    """Unit-scale latent statistics from encoded frames and rolled-out memories."""
    model.latent_loc.zero_()
    model.latent_scale.fill_(1.0)
    w = draw_windows(data, episodes, count, window, block, True, generator)
    e = torch.cat([model.embed(w.images[i : i + 32]) for i in range(0, count, 32)])
    z, memories = model.with_memory(e[:, 0]), []
    for j in range(window):
        z = model.raw_step(z, w.actions[:, j])
        memories.append(z[:, model.latent_dim :])
    model.set_latent_normalization(e.reshape(-1, model.latent_dim), torch.cat(memories))


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class StatePixelRun:
    """One training of a state (``mlp``) or pixel model: a :class:`~.loop.Trainee`."""

    cfg: TrainConfig
    model: nn.Module
    data: Episodes
    train_eps: range
    val_eps: range
    val: list[Windows]
    block: int

    @property
    def from_start(self) -> bool:
        """Windows start at an episode's first step (pixel models with a velocity memory)."""
        return self.cfg.kind == "pixel" and self.model.memory_dim > 0

    def total_steps(self) -> int:
        """``cfg.steps``."""
        return self.cfg.steps

    def eval_points(self) -> tuple[int, ...]:
        """The last step."""
        return (self.cfg.steps,)

    def identity(self) -> dict[str, Any]:
        """:func:`run_identity` of the config."""
        return run_identity(self.cfg)

    def optimizer(self, step: int) -> torch.optim.Optimizer:
        """AdamW over every parameter."""
        cfg = self.cfg
        return torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def begin(self, step: int, resumed: bool) -> None:
        """Put the model in training mode."""
        self.model.train()

    def lr(self, step: int) -> float:
        """Cosine decay from ``lr`` to ``0.1 * lr`` over ``steps``."""
        cfg = self.cfg
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0))))

    def window_loss(self, w: Windows) -> tuple[Tensor, dict[str, float]]:
        """The kind's loss on windows ``w``."""
        if self.cfg.kind == "mlp":
            return mlp_loss(self.model, w, self.cfg.loss_units)
        return pixel_loss(self.model, w)

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The loss on a fresh batch of training windows."""
        cfg = self.cfg
        w = draw_windows(
            self.data, self.train_eps, cfg.batch, cfg.window, self.block, self.from_start, generator
        )
        return self.window_loss(w)

    @torch.no_grad()
    def validate(self, done: int) -> tuple[dict[str, Any], dict[str, float], bool]:
        """Mean validation metrics over the fixed validation windows (every one may pick)."""
        self.model.eval()
        parts = [self.window_loss(w)[1] for w in self.val]
        self.model.train()
        val = {f"val_{k}": sum(p[k] for p in parts) / len(parts) for k in parts[0]}
        return {"lr": self.lr(done)}, val, True

    def after_validation(self, done: int, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The same optimiser (one stage)."""
        return opt

    def finalize(self, best: nn.Module) -> tuple[Tensor, dict[str, Any], dict[str, Any]]:
        """Fit a pixel model's latent normalisation; measure the latent spread."""
        if isinstance(best, PixelModel):
            g = torch.Generator().manual_seed(self.cfg.seed + 99)
            fit_pixel_normalization(best, self.data, self.train_eps, self.block, self.cfg.window, g)
        g = torch.Generator().manual_seed(self.cfg.seed + 101)
        window = min(self.cfg.window, self.data.actions.shape[1] // self.block)
        return latent_spread(best, self.data, self.train_eps, self.block, window, g), {}, {}


def prepare(cfg: TrainConfig, data_dir: str | Path) -> StatePixelRun:
    """Load data, split it, build the model and the fixed validation windows."""
    manifest = read_manifest(data_dir)
    data = load_episodes(data_dir, images=cfg.kind == "pixel")
    block = cfg.action_block or int(manifest["action_block"])
    train_eps, val_eps = split_episodes(len(data), cfg.val_fraction, cfg.episodes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, manifest, block)
    from_start = cfg.kind == "pixel" and model.memory_dim > 0
    g_val = torch.Generator().manual_seed(10_007 + cfg.seed)
    chunk = min(cfg.batch, cfg.val_windows)
    val = [
        draw_windows(data, val_eps, chunk, cfg.window, block, from_start, g_val)
        for _ in range(max(1, cfg.val_windows // chunk))
    ]
    if cfg.kind == "mlp":
        fit_mlp_normalization(model, data, train_eps, block)
    else:
        assert data.images is not None
        pick = torch.randint(len(train_eps), (512,), generator=g_val)
        model.background.copy_(background(data.images[pick, 0]))
    return StatePixelRun(cfg, model, data, train_eps, val_eps, val, block)


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields a resumed run must share with the run it continues."""
    free = {"steps", "max_minutes", "eval_every", "patience"}
    if cfg.episodes is None:
        free.add("episodes")  # older states have no such fields
    if cfg.loss_units == "increment":
        free.add("loss_units")
    values = dataclasses.asdict(cfg)
    return json.loads(json.dumps({k: v for k, v in values.items() if k not in free}))


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    log: Log | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a state or pixel model by :func:`~grasplab.world_models.training.loop.fit`."""
    return fit(prepare(cfg, data_dir), data_dir, out_dir, log, resume, progress)
