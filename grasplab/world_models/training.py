"""Training of the learned world models: seeded, validated, early-stopped, resumable.

``train(kind, data_dir, out_dir, ...)`` fits an :class:`~grasplab.world_models.mlp.MLPModel`
(``kind="mlp"``) or a :class:`~grasplab.world_models.pixel.PixelModel` (``kind="pixel"``) on a
dataset written by :func:`grasplab.world_models.data.collect` and writes the best model (lowest
validation loss on held-out episodes) as a checkpoint directory ``out_dir``. Its ``info``
records the dataset (``data.dir``, ``data.identity``: :func:`~grasplab.world_models.data.
dataset_identity`) and the episode ranges ``train_episodes`` / ``val_episodes`` (``[first,
stop)``), so that evaluation can refuse tasks from the training episodes. The resumable state
(latest weights, optimiser, sampler RNG, history) lives in ``out_dir/train_state``; rerunning
the same command continues from it. Metrics go to an optional ``log(metrics, step)`` callback.
``kind="patch"`` (a :class:`~grasplab.world_models.patch.PatchModel`, trained in two stages) is
handed to :func:`grasplab.world_models.patch_training.train`, with the same contract.

Losses (both multi-step, over windows of ``window`` model steps of ``action_block`` env steps):

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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from grasplab.world_models import checkpoint
from grasplab.world_models.data import (
    Episodes,
    dataset_identity,
    load_episodes,
    parse_overrides,
    read_manifest,
)
from grasplab.world_models.mlp import MLPConfig, MLPModel
from grasplab.world_models.pixel import PixelConfig, PixelModel

Log = Callable[[dict[str, float], int], None]
STATE_DIR = "train_state"


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
# Windows
# --------------------------------------------------------------------------------------------


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


def background(images: Tensor) -> Tensor:
    """Per-pixel median ``(H, W, 3)`` floats in ``[0, 1]`` of images ``(N, H, W, 3)`` uint8."""
    return images.float().median(dim=0).values / 255.0


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
ACTION_NORMALIZATION: dict[str, tuple[float, float]] = {"sim:pusht": (256.0, 128.0)}
"""Pixel and patch models' default ``(action_loc, action_scale)`` per env whose actions are not
unit-scale (Push-T's targets in ``[0, 512]`` pixels)."""


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
# Resumable state
# --------------------------------------------------------------------------------------------


def save_state(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    progress: dict[str, Any],
) -> None:
    """Write the resumable training state (tensors in safetensors, the rest in JSON)."""
    path.mkdir(parents=True, exist_ok=True)
    sd = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["generator"] = generator.get_state()
    checkpoint.save_tensors_atomic(path / "state.safetensors", tensors)
    record = {
        "progress": progress,
        "param_groups": sd["param_groups"],
        "optim_scalars": scalars,
        "sha256": checkpoint.sha256_file(path / "state.safetensors"),
    }
    checkpoint.write_json_atomic(path / "state.json", record)


def load_state(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator
) -> dict[str, Any]:
    """Restore a state written by :func:`save_state`; returns its progress record.

    Raises:
        checkpoint.CheckpointError: When the state's tensors do not match their recorded hash.
    """
    record = json.loads((path / "state.json").read_text())
    file = path / "state.safetensors"
    if checkpoint.sha256_file(file) != record["sha256"]:
        raise checkpoint.CheckpointError(f"training state {path}: SHA-256 mismatch")
    tensors = load_file(str(file))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in record["optim_scalars"].items():
        state.setdefault(int(index), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": record["param_groups"]})
    generator.set_state(tensors["generator"])
    return record["progress"]


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one training run works with."""

    cfg: TrainConfig
    model: nn.Module
    data: Episodes
    train_eps: range
    val_eps: range
    val: list[Windows]
    block: int

    def loss(self, w: Windows) -> tuple[Tensor, dict[str, float]]:
        """The kind's loss on windows ``w``."""
        if self.cfg.kind == "mlp":
            return mlp_loss(self.model, w, self.cfg.loss_units)
        return pixel_loss(self.model, w)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean validation metrics over the fixed validation windows."""
        self.model.eval()
        parts = [self.loss(w)[1] for w in self.val]
        self.model.train()
        return {f"val_{k}": sum(p[k] for p in parts) / len(parts) for k in parts[0]}


def _prepare(cfg: TrainConfig, data_dir: str | Path) -> _Run:
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
    return _Run(cfg, model, data, train_eps, val_eps, val, block)


def _lr(cfg: TrainConfig, step: int) -> float:
    """Cosine decay from ``lr`` to ``0.1 * lr`` over ``steps``."""
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0))))


def _steps(start: int, stop: int, progress: bool) -> Iterator[int]:
    """Step indices with an optional tqdm bar."""
    if not progress:
        yield from range(start, stop)
        return
    from tqdm import tqdm

    yield from tqdm(
        range(start, stop),
        initial=start,
        total=stop,
        desc="train",
        file=sys.stderr,
        mininterval=2.0,
    )


def train(
    kind: str,
    data_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    steps: int = 3000,
    batch: int = 128,
    lr: float = 1e-3,
    log: Log | None = None,
    resume: bool = True,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train a world model and write the best one as a checkpoint directory.

    Args:
        kind: ``"mlp"``, ``"pixel"`` or ``"patch"`` (handed to
            :func:`grasplab.world_models.patch_training.train`, whose ``options`` are
            :class:`~grasplab.world_models.patch_training.PatchTrainConfig` fields).
        data_dir: Dataset written by :func:`grasplab.world_models.data.collect`.
        out_dir: Checkpoint directory (the best model); ``out_dir/train_state`` holds the
            resumable state.
        seed: Seed of the initialisation and the batch sampler.
        steps: Most optimiser steps.
        batch: Windows per batch.
        lr: Learning rate.
        log: Optional ``log(metrics, step)`` callback (the platform wraps it for MLflow).
        resume: Continue from ``out_dir/train_state`` when present (else start over).
        progress: Show a progress bar.
        **options: Other :class:`TrainConfig` fields (``window``, ``action_block``, ``model``...).

    Returns:
        A summary: ``best_val``, ``steps_done``, ``stopped`` reason, ``seconds``, ``checkpoint``.
    """
    if kind == "patch":  # two stages of its own (imported here: it builds on this module)
        from grasplab.world_models import patch_training

        return patch_training.train(
            data_dir,
            out_dir,
            seed,
            log,
            resume,
            progress,
            steps=steps,
            batch=batch,
            lr=lr,
            **options,
        )
    cfg = TrainConfig(kind=kind, seed=seed, steps=steps, batch=batch, lr=lr, **options)
    run = _prepare(cfg, data_dir)
    model, out = run.model, Path(out_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    state_dir = out / STATE_DIR
    prog = {
        "step": 0,
        "best_val": math.inf,
        "best_step": -1,
        "bad_evals": 0,
        "seconds": 0.0,
        "history": [],
        "config": run_identity(cfg),
    }
    if resume and (state_dir / "state.json").is_file():
        prog = load_state(state_dir, model, opt, generator)
        if prog.get("config") != run_identity(cfg):
            raise ValueError(
                f"train: {state_dir} was written by a different run "
                f"({prog.get('config')}); pass resume=False or another out dir"
            )
    stopped = _loop(run, opt, generator, prog, out, log, progress)
    return _finish(run, data_dir, out, prog, stopped, generator)


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields a resumed run must share with the run it continues."""
    free = {"steps", "max_minutes", "eval_every", "patience"}
    if cfg.episodes is None:
        free.add("episodes")  # older states have no such fields
    if cfg.loss_units == "increment":
        free.add("loss_units")
    values = dataclasses.asdict(cfg)
    return json.loads(json.dumps({k: v for k, v in values.items() if k not in free}))


def _loop(
    run: _Run,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    prog: dict[str, Any],
    out: Path,
    log: Log | None,
    progress: bool,
) -> str:
    """Optimise until ``steps``, early stopping or the time budget; returns why it stopped."""
    cfg, model = run.cfg, run.model
    from_start = cfg.kind == "pixel" and model.memory_dim > 0
    start, stopped = time.perf_counter(), "steps"
    base_seconds = prog["seconds"]
    if prog["bad_evals"] >= cfg.patience:
        return "early_stopping"
    model.train()
    for step in _steps(prog["step"], cfg.steps, progress):
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        w = draw_windows(
            run.data, run.train_eps, cfg.batch, cfg.window, run.block, from_start, generator
        )
        loss, metrics = run.loss(w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % cfg.eval_every and done != cfg.steps:
            continue
        prog["seconds"] = base_seconds + time.perf_counter() - start
        stopped = _evaluate(run, prog, done, metrics, out, log)
        save_state(out / STATE_DIR, model, opt, generator, prog)
        over = cfg.max_minutes and prog["seconds"] - base_seconds > 60 * cfg.max_minutes
        if stopped != "steps" or (over and done < cfg.steps):
            return stopped if stopped != "steps" else "time_limit"
    return stopped


def _evaluate(
    run: _Run,
    prog: dict[str, Any],
    done: int,
    metrics: dict[str, float],
    out: Path,
    log: Log | None,
) -> str:
    """Validate, keep the best model, update early stopping; returns ``steps`` or the reason."""
    val = run.validate()
    record = {"step": done, "lr": _lr(run.cfg, done), **metrics, **val}
    prog["history"].append(record)
    prog["step"] = done
    if log is not None:
        log(record, done)
    if val["val_loss"] < prog["best_val"]:
        prog.update(best_val=val["val_loss"], best_step=done, bad_evals=0)
        checkpoint.save(run.model, out / STATE_DIR / "best")
        return "steps"
    prog["bad_evals"] += 1
    return "early_stopping" if prog["bad_evals"] >= run.cfg.patience else "steps"


def _finish(
    run: _Run,
    data_dir: str | Path,
    out: Path,
    prog: dict[str, Any],
    stopped: str,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Write the best model (with latent normalisation for pixels) as the checkpoint."""
    best = checkpoint.load(out / STATE_DIR / "best")
    if isinstance(best, PixelModel):
        g = torch.Generator().manual_seed(run.cfg.seed + 99)
        fit_pixel_normalization(best, run.data, run.train_eps, run.block, run.cfg.window, g)
    manifest = run.data.manifest
    g = torch.Generator().manual_seed(run.cfg.seed + 101)
    window = min(run.cfg.window, run.data.actions.shape[1] // run.block)
    spread = latent_spread(best, run.data, run.train_eps, run.block, window, g)
    info = {
        "env": manifest["env"],
        "env_overrides": manifest.get("env_overrides", {}),
        "data": {
            "dir": str(data_dir),
            "episodes": len(run.data),
            "steps": manifest["steps"],
            "seed": manifest["seed"],
            "shards_sha256": [s["sha256"] for s in manifest["shards"]],
            "identity": dataset_identity(manifest),
        },
        "train_episodes": [run.train_eps.start, run.train_eps.stop],
        "val_episodes": [run.val_eps.start, run.val_eps.stop],
        "latent_spread": [round(float(x), 6) for x in spread],
        "train": dataclasses.asdict(run.cfg),
        "best_val": prog["best_val"],
        "best_step": prog["best_step"],
        "steps_done": prog["step"],
        "stopped": stopped,
        "seconds": round(prog["seconds"], 1),
        "history": prog["history"][-5:],
    }
    checkpoint.save(best, out, info=info)
    return {
        "checkpoint": str(out),
        "best_val": prog["best_val"],
        "best_step": prog["best_step"],
        "steps_done": prog["step"],
        "stopped": stopped,
        "seconds": prog["seconds"],
    }


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

USAGE = (
    "usage: python -m grasplab.world_models.training kind=<mlp|pixel|patch> data=DIR out=DIR "
    "[seed= steps= batch= lr= window= action_block= max_minutes= model.<field>=...]"
)


def _print_metrics(metrics: dict[str, float], step: int) -> None:
    """CLI log callback: one JSON line of validation metrics per evaluation, on stderr."""
    print(json.dumps({k: round(v, 5) for k, v in metrics.items()}), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``kind=... data=... out=... key=value ...``; one-line error and exit code 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        args = parse_overrides(argv)
        model = {k[6:]: args.pop(k) for k in list(args) if k.startswith("model.")}
        missing = sorted({"kind", "data", "out"} - set(args))
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        fields = dataclasses.fields(TrainConfig)
        if args.get("kind") == "patch":
            from grasplab.world_models.patch_training import PatchTrainConfig

            fields = (*dataclasses.fields(PatchTrainConfig), *fields[:1])  # + kind
        known = {f.name for f in fields} | {
            "data",
            "out",
            "resume",
            "progress",
        }
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        kind, data, out = args.pop("kind"), str(args.pop("data")), str(args.pop("out"))
        summary = train(kind, data, out, model=model, log=_print_metrics, **args)
    except (ValueError, TypeError) as err:
        print(f"train: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
