"""Training a :class:`~grasplab.world_models.patch.PatchModel` in DINO-WM's two stages.

1. **Encoder** (``encoder_steps`` steps; skipped for a pretrained encoder,
   ``train_encoder=False``): the encoder and the decoder are trained as an autoencoder on the
   training episodes' images. The loss weights each pixel by how far it is from the static
   background (the per-pixel median of the data), so that a small agent (a few pixels of 64x64
   in the mazes) is not drowned by the layout. The encoder is then frozen
   (:func:`~grasplab.world_models.patch.freeze_encoder`), as DINO-WM freezes DINOv2, and the
   latents' per-channel normalisation is measured on the training images.
2. **Predictor** (``steps`` steps): every frame of the dataset is encoded once by the frozen
   encoder (the latents are cached; ~0.3 ms per 64x64 frame on one core). On windows of
   ``window`` model steps, the open-loop rollout from the first frame's latent is regressed onto
   the latents of the later frames (a multi-step loss in normalised latent units), plus the
   teacher-forced one-step error. Every ``eval_every`` steps the same loss on fixed windows of
   the validation episodes picks the best predictor (early stopping after ``patience``
   validations without improvement).

Like every kind it is trained by :func:`grasplab.world_models.training.loop.fit`, seeded and
resumable: the latest weights, the optimiser of the current
stage, the sampler RNG and the history live in ``out_dir/train_state`` (saved at every
validation and at the end of stage 1); rerunning the same command continues from it, and
``max_minutes`` bounds one invocation. Validation uses the last ``val_fraction`` episodes
(never trained on); the checkpoint records the data's identity, the train/validation episode
ranges and the latent spread.
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

from grasplab.world_models.data import Episodes, load_episodes
from grasplab.world_models.patch import PatchConfig, PatchModel, freeze_encoder
from grasplab.world_models.training.loop import Log, fit
from grasplab.world_models.training.windows import (
    ACTION_NORMALIZATION,
    background,
    draw_windows,
    latent_spread,
    split_episodes,
)

SPREAD_FLOOR = 0.05
"""Lowest recorded ``latent_spread`` per dimension (normalised latent units, i.e. a twentieth of
the channel's std over the data): patches the agent never reaches are constant on the data, and
a zero spread would freeze GRASP's virtual states there entirely."""

FOREGROUND_MODES = ("mask", "soft")
"""Ways of weighting the foreground in :func:`recon_loss`."""


@dataclass(frozen=True)
class PatchTrainConfig:
    """Everything that decides a patch-model training run (recorded in the checkpoint)."""

    seed: int = 0
    """Seed of the initialisation and of the samplers."""
    encoder_steps: int = 1500
    """Autoencoder steps (stage 1); ignored when ``train_encoder`` is False."""
    steps: int = 3000
    """Predictor steps (stage 2; upper bound, early stopping may end sooner)."""
    encoder_batch: int = 32
    """Images per autoencoder batch (stage 1)."""
    batch: int = 32
    """Windows per predictor batch (stage 2)."""
    lr: float = 2e-3
    """AdamW learning rate of both stages (cosine-decayed to 10% over each stage)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    window: int = 16
    """Model steps per predictor training window."""
    from_start: bool = False
    """Start every predictor window at an episode's first step (a state at rest). For envs
    whose state has a velocity a single frame does not show (pointmaze): the open-loop rollout
    from rest can then carry the velocity in its latent, as tasks start at rest."""
    one_step_weight: float = 1.0
    """Weight of the teacher-forced one-step error (0 with ``from_start``: a frame's latent
    lacks the velocity that the one-step target depends on)."""
    action_block: int = 0
    """Env steps per model step; 0: the dataset's."""
    foreground_weight: float = 30.0
    """Extra reconstruction weight of pixels that differ from the background."""
    foreground: str = "mask"
    """How ``foreground_weight`` applies: ``mask``, to pixels more than 0.05 from the background
    (any channel); ``soft``, in proportion to that distance (``1 + weight * |x - bg|_max``)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out (the last ones) for validation."""
    episodes: tuple[int, int] | None = None
    """Episode range ``[first, stop)`` this run reads (training and its validation, the last
    ``val_fraction`` of it); None: all. Keeps a dataset's tuning and test episodes unseen."""
    loss_units: str = "increment"
    """Not used: the patch losses are in normalised latent units (the field exists so that the
    train config's keys apply to every kind; only ``increment`` is accepted)."""
    val_windows: int = 128
    """Fixed validation windows of the predictor."""
    eval_every: int = 250
    """Steps between validations (and resumable-state saves), both stages."""
    patience: int = 8
    """Predictor validations without improvement before early stopping."""
    max_minutes: float = 0.0
    """Wall-clock budget of this invocation (0: none); the state is saved, rerun to resume."""
    train_encoder: bool = True
    """False: keep the encoder as built (a pretrained one), train the predictor only."""
    model: dict[str, Any] = field(default_factory=dict)
    """``PatchConfig`` overrides (``grid``, ``channels``, ``hidden``, ``encoder``, ...)."""

    def __post_init__(self) -> None:
        counts = ("encoder_steps", "steps", "encoder_batch", "batch", "window", "val_windows")
        for name in (*counts, "eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PatchTrainConfig.{name} must be an int >= 1, got {value!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"PatchTrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}"
            )
        if self.lr <= 0:
            raise ValueError(f"PatchTrainConfig.lr must be > 0, got {self.lr}")
        if self.loss_units != "increment":
            raise ValueError("PatchTrainConfig.loss_units is an mlp setting; leave it 'increment'")
        if self.episodes is not None:
            bounds = tuple(self.episodes)
            ok = len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
            if not ok or not 0 <= bounds[0] < bounds[1]:
                raise ValueError(
                    f"PatchTrainConfig.episodes must be [first, stop) with 0 <= first < stop, "
                    f"got {self.episodes!r}"
                )
            object.__setattr__(self, "episodes", bounds)
        if not isinstance(self.model, dict):
            raise ValueError("PatchTrainConfig.model must be a dict of PatchConfig fields")
        if self.foreground not in FOREGROUND_MODES:
            raise ValueError(
                f"PatchTrainConfig.foreground must be one of {FOREGROUND_MODES}, "
                f"got {self.foreground!r}"
            )

    @property
    def stage1_steps(self) -> int:
        """Steps of stage 1 (0 when the encoder is not trained)."""
        return self.encoder_steps if self.train_encoder else 0


def run_identity(cfg: PatchTrainConfig) -> dict[str, Any]:
    """The config fields a resumed run must share with the run it continues."""
    free = {"steps", "max_minutes", "eval_every", "patience"}
    values = dataclasses.asdict(cfg)
    return json.loads(json.dumps({k: v for k, v in values.items() if k not in free}))


def build_model(cfg: PatchTrainConfig, manifest: dict[str, Any], block: int) -> PatchModel:
    """A fresh patch model for the dataset's env (``cfg.model`` overrides the defaults).

    Actions are normalised per env as for pixel models (:data:`~grasplab.world_models.training.
    windows.ACTION_NORMALIZATION`: Push-T's pixel targets enter the predictor's FiLM as
    ``(a - 256) / 128``).
    """
    loc, scale = ACTION_NORMALIZATION.get(manifest["env"], (0.0, 1.0))
    defaults = {
        "image_size": int(manifest["image_size"]),
        "action_loc": loc,
        "action_scale": scale,
    }
    return PatchModel(
        PatchConfig(
            env_action_dim=int(manifest["action_dim"]),
            action_block=block,
            **{**defaults, **cfg.model},
        )
    )


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def sample_frames(data: Episodes, episodes: range, count: int, g: torch.Generator) -> Tensor:
    """``count`` random frames ``(count, H, W, 3)`` uint8 of ``episodes``."""
    assert data.images is not None
    ep = episodes.start + torch.randint(len(episodes), (count,), generator=g)
    t = torch.randint(data.images.shape[1], (count,), generator=g)
    return data.images[ep, t]


def recon_loss(
    model: PatchModel, images: Tensor, bg: Tensor, weight: float, mode: str = "mask"
) -> Tensor:
    """Background-weighted reconstruction error of images ``(N, H, W, 3)`` uint8.

    Args:
        model: The patch model (its encoder and decoder).
        images: Frames ``(N, H, W, 3)`` uint8.
        bg: The static background ``(H, W, 3)`` in ``[0, 1]``.
        weight: Extra weight of the foreground (see ``mode``).
        mode: ``mask`` (pixels more than 0.05 from ``bg``) or ``soft`` (proportional to the
            distance); :attr:`PatchTrainConfig.foreground`.
    """
    x = model.images_to_input(images)
    target = x.permute(0, 2, 3, 1)
    fg = (target - bg).abs().amax(-1, keepdim=True)  # (N, H, W, 1)
    w = 1.0 + weight * (fg if mode == "soft" else (fg > 0.05).to(x.dtype))
    recon = model.reconstruct(model.encoder(x))
    return ((recon - target).square() * w).sum() / (w.sum() * 3)


def predictor_loss(
    model: PatchModel, z: Tensor, actions: Tensor, one_step_weight: float = 1.0
) -> tuple[Tensor, dict]:
    """Open-loop multi-step + weighted teacher-forced one-step error, normalised latent units.

    Args:
        model: The patch model.
        z: Latents ``(B, L+1, D)`` of a window's frames.
        actions: Action blocks ``(B, L, k*A_env)``.
        one_step_weight: Weight of the one-step term.
    """
    L = actions.shape[1]
    pred, errors = z[:, 0], []
    for t in range(L):
        pred = model.step(pred, actions[:, t])
        errors.append((pred - z[:, t + 1]).square().mean())
    one = (model.step(z[:, :-1], actions) - z[:, 1:]).square().mean()
    open_loop = torch.stack(errors).mean()
    loss = open_loop + one_step_weight * one
    parts = {
        "loss": float(loss.detach()),
        "open": float(open_loop.detach()),
        "one_step": float(one.detach()),
    }
    return loss, parts


@torch.no_grad()
def encode_all(model: PatchModel, data: Episodes, chunk: int = 256) -> Tensor:
    """Normalised latents ``(N, T+1, D)`` of every frame of the dataset (frozen encoder)."""
    assert data.images is not None
    frames = data.images.reshape(-1, *data.images.shape[2:])
    parts = [model.encode(frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
    return torch.cat(parts).reshape(*data.images.shape[:2], -1)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class PatchRun:
    """One patch-model training, a :class:`~.loop.Trainee` (``latents`` set in stage 2)."""

    cfg: PatchTrainConfig
    model: PatchModel
    data: Episodes
    train_eps: range
    val_eps: range
    block: int
    bg: Tensor
    latents: Episodes | None = None
    val: list[Any] = field(default_factory=list)

    def stage2(self, step: int) -> bool:
        """Whether global ``step`` belongs to stage 2."""
        return step >= self.cfg.stage1_steps

    def total_steps(self) -> int:
        """Both stages' steps."""
        return self.cfg.stage1_steps + self.cfg.steps

    def eval_points(self) -> tuple[int, ...]:
        """The end of each stage."""
        return (self.cfg.stage1_steps, self.total_steps())

    def identity(self) -> dict[str, Any]:
        """:func:`run_identity` of the config."""
        return run_identity(self.cfg)

    def optimizer(self, step: int) -> torch.optim.Optimizer:
        """A fresh AdamW over the parameters ``step``'s stage trains (stage 2: encoder frozen)."""
        m = self.model
        if self.stage2(step):
            freeze_encoder(m)
            params = m.predictor.parameters()
        else:
            params = [*m.encoder.parameters(), *m.decoder.parameters()]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def begin(self, step: int, resumed: bool) -> None:
        """In stage 2, cache the latents (measuring the normalisation unless it was loaded)."""
        if self.stage2(step):
            self.enter_stage2(normalise=not resumed)

    def after_validation(self, done: int, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """At the end of stage 1: enter stage 2 with the predictor's optimiser."""
        if done != self.cfg.stage1_steps:
            return opt
        self.enter_stage2(normalise=True)
        return self.optimizer(done)

    def lr(self, step: int) -> float:
        """Cosine decay from ``lr`` to ``0.1 * lr`` over each stage."""
        first = self.cfg.stage1_steps
        pos, total = (step - first, self.cfg.steps) if self.stage2(step) else (step, first)
        return self.cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(pos / total, 1.0))))

    def enter_stage2(self, normalise: bool) -> None:
        """Freeze the encoder, (measure the normalisation,) cache every frame's latent."""
        freeze_encoder(self.model)
        if normalise:
            g = torch.Generator().manual_seed(self.cfg.seed + 1)
            with torch.no_grad():
                frames = sample_frames(self.data, self.train_eps, 512, g)
                feats = [self.model.features(frames[i : i + 64]) for i in range(0, 512, 64)]
                self.model.set_latent_normalization(torch.cat(feats))
        d = self.data
        self.latents = Episodes(d.states, d.actions, encode_all(self.model, d), d.manifest)
        g_val = torch.Generator().manual_seed(10_007 + self.cfg.seed)
        chunk = min(self.cfg.batch, self.cfg.val_windows)
        self.val = [
            draw_windows(
                self.latents,
                self.val_eps,
                chunk,
                self.cfg.window,
                self.block,
                self.cfg.from_start,
                g_val,
            )
            for _ in range(max(1, self.cfg.val_windows // chunk))
        ]

    def loss(self, step: int, g: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The stage's training loss on a fresh batch."""
        cfg = self.cfg
        if not self.stage2(step):
            images = sample_frames(self.data, self.train_eps, cfg.encoder_batch, g)
            loss = recon_loss(self.model, images, self.bg, cfg.foreground_weight, cfg.foreground)
            return loss, {"recon": float(loss.detach())}
        assert self.latents is not None
        w = draw_windows(
            self.latents, self.train_eps, cfg.batch, cfg.window, self.block, cfg.from_start, g
        )
        return predictor_loss(self.model, w.images, w.actions, cfg.one_step_weight)

    @torch.no_grad()
    def validate(self, done: int) -> tuple[dict[str, Any], dict[str, float], bool]:
        """Stage 1: reconstruction on validation frames; stage 2: the predictor's loss (picks)."""
        step = done - 1
        head = {"stage": 2 if self.stage2(step) else 1, "lr": self.lr(step)}
        cfg = self.cfg
        if not self.stage2(step):
            g = torch.Generator().manual_seed(20_011 + cfg.seed)
            images = sample_frames(self.data, self.val_eps, 128, g)
            loss = recon_loss(self.model, images, self.bg, cfg.foreground_weight, cfg.foreground)
            return head, {"val_recon": float(loss)}, False
        weight = cfg.one_step_weight
        parts = [predictor_loss(self.model, w.images, w.actions, weight)[1] for w in self.val]
        val = {f"val_{k}": sum(p[k] for p in parts) / len(parts) for k in parts[0]}
        return head, val, True

    def finalize(self, best: nn.Module) -> tuple[Tensor, dict[str, Any], dict[str, Any]]:
        """The latent spread (floored at :data:`SPREAD_FLOOR`) and the ``k``-step errors."""
        assert self.latents is not None and isinstance(best, PatchModel)
        cfg = self.cfg
        window = min(cfg.window, self.data.actions.shape[1] // self.block)
        g = torch.Generator().manual_seed(cfg.seed + 101)
        spread = latent_spread(best, self.data, self.train_eps, self.block, window, g)
        g = torch.Generator().manual_seed(cfg.seed + 103)
        kstep = evaluate_kstep(
            best, self.latents, self.val_eps, self.block, window, g, cfg.from_start
        )
        return spread.clamp_min(SPREAD_FLOOR), {"val_relative_error": kstep}, kstep


def prepare(cfg: PatchTrainConfig, data_dir: str | Path) -> PatchRun:
    """Load data (images), split it, build the model and the background."""
    data = load_episodes(data_dir, images=True)
    manifest = data.manifest
    block = cfg.action_block or int(manifest["action_block"])
    train_eps, val_eps = split_episodes(len(data), cfg.val_fraction, cfg.episodes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, manifest, block)
    assert data.images is not None
    bg = background(data.images[train_eps.start : train_eps.stop, 0])
    if model.config.residual_decoder:
        model.set_background(bg)
    return PatchRun(cfg, model, data, train_eps, val_eps, block, bg)


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: PatchTrainConfig,
    log: Log | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a patch model by :func:`~grasplab.world_models.training.loop.fit`.

    Returns:
        The loop's summary and the validation ``k``-step errors (``k1``...).
    """
    return fit(prepare(cfg, data_dir), data_dir, out_dir, log, resume, progress)


@torch.no_grad()
def evaluate_kstep(
    model: PatchModel,
    latents: Episodes,
    episodes: range,
    block: int,
    window: int,
    g: torch.Generator,
    from_start: bool = False,
    count: int = 128,
) -> dict[str, float]:
    """Open-loop ``k``-step latent error / latent variance on ``episodes``, ``k = 1..window``.

    Args:
        model: The trained model.
        latents: The dataset with ``images`` replaced by cached latents ``(N, T+1, D)``.
        episodes: Episodes to evaluate on (held-out ones).
        block: Env steps per model step.
        window: Deepest ``k``.
        g: Window sampler.
        from_start: Windows start at an episode's first step.
        count: Windows.

    Returns:
        ``k1..k<window>``: 0 is a perfect prediction, 2 what a random latent of the data would
        score; ``copy_k1..``: the same for predicting "nothing moves".
    """
    w = draw_windows(latents, episodes, count, window, block, from_start, g)
    z = w.images
    var = z.var(dim=(0, 1)).mean().clamp_min(1e-8)
    pred, out = z[:, 0], {}
    for t in range(window):
        pred = model.step(pred, w.actions[:, t])
        out[f"k{t + 1}"] = float((pred - z[:, t + 1]).square().mean() / var)
        out[f"copy_k{t + 1}"] = float((z[:, 0] - z[:, t + 1]).square().mean() / var)
    return out
