"""The one training loop of the learned world models: seeded, validated, early-stopped, resumable.

A model kind (:mod:`~grasplab.world_models.training.state_pixel`,
:mod:`~grasplab.world_models.training.patch`) describes its run as a :class:`Trainee`: its
optimiser, learning rate, loss, validation and final touches. :func:`fit` owns the rest, the same
for every kind: the resumable state in ``out_dir/train_state`` (latest weights, optimiser, sampler
RNG, progress and history; saved at every validation), the check that a resumed state belongs to
the same run, early stopping on the validation loss, the wall-clock budget of one invocation,
the ``log(metrics, step)`` callback, and the checkpoint of the best model with its ``info``
(dataset identity, train/validation episode ranges, latent spread).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from grasplab.world_models import checkpoint
from grasplab.world_models.data import Episodes, dataset_identity

Log = Callable[[dict[str, float], int], None]
"""``log(metrics, step)``: called at every validation (the platform wraps it for MLflow)."""
STATE_DIR = "train_state"
"""The resumable state's folder inside the checkpoint directory."""


class Trainee(Protocol):
    """One training run of a model kind, as :func:`fit` drives it.

    Attributes:
        cfg: The kind's frozen config (``seed``, ``eval_every``, ``patience``, ``max_minutes``).
        model: The model being trained.
        data: The dataset.
        train_eps: Training episodes.
        val_eps: Validation episodes (never trained on).
        block: Env steps per model step.
    """

    cfg: Any
    model: nn.Module
    data: Episodes
    train_eps: range
    val_eps: range
    block: int

    def total_steps(self) -> int:
        """Optimiser steps of the whole run."""
        ...

    def eval_points(self) -> tuple[int, ...]:
        """Steps validated besides every ``eval_every``-th (the ends of stages)."""
        ...

    def identity(self) -> dict[str, Any]:
        """The config fields a resumed run must share with the run it continues."""
        ...

    def optimizer(self, step: int) -> torch.optim.Optimizer:
        """A fresh optimiser for the run starting (or resuming) at ``step``."""
        ...

    def begin(self, step: int, resumed: bool) -> None:
        """Ready the run to train from ``step`` (after the state was loaded, if ``resumed``)."""
        ...

    def lr(self, step: int) -> float:
        """Learning rate at ``step``."""
        ...

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The training loss on a fresh batch, and its metrics."""
        ...

    def validate(self, done: int) -> tuple[dict[str, Any], dict[str, float], bool]:
        """``(record head, validation metrics with val_loss, may pick the best model)``."""
        ...

    def after_validation(self, done: int, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimiser to go on with (a new one where a stage ends)."""
        ...

    def finalize(self, best: nn.Module) -> tuple[Tensor, dict[str, Any], dict[str, Any]]:
        """``(latent spread, extra checkpoint info, extra summary)`` of the best model."""
        ...


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


def fit(
    run: Trainee,
    data_dir: str | Path,
    out_dir: str | Path,
    log: Log | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``run`` (resuming from ``out_dir/train_state``); write the best model to ``out_dir``.

    Args:
        run: The kind's run (data loaded, model built).
        data_dir: The dataset's folder (recorded in the checkpoint's ``info``).
        out_dir: Checkpoint directory; ``out_dir/train_state`` holds the resumable state.
        log: Optional ``log(metrics, step)`` callback, called at every validation.
        resume: Continue from ``out_dir/train_state`` when present (else start over).
        progress: Show a progress bar.

    Returns:
        A summary: ``checkpoint``, ``best_val``, ``best_step``, ``steps_done``, ``stopped``
        reason, ``seconds`` and the kind's extras.

    Raises:
        ValueError: The state in ``out_dir`` was written by a different run.
    """
    out = Path(out_dir)
    generator = torch.Generator().manual_seed(run.cfg.seed)
    opt, prog = start(run, out / STATE_DIR, generator, resume)
    stopped = loop(run, opt, generator, prog, out, log, progress)
    return finish(run, data_dir, out, prog, stopped)


def start(
    run: Trainee, state_dir: Path, generator: torch.Generator, resume: bool
) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
    """The optimiser and progress record: fresh, or loaded from ``state_dir``.

    Raises:
        ValueError: The state in ``state_dir`` was written by a different run.
    """
    prog: dict[str, Any] = {
        "step": 0,
        "best_val": math.inf,
        "best_step": -1,
        "bad_evals": 0,
        "seconds": 0.0,
        "history": [],
        "config": run.identity(),
    }
    if not (resume and (state_dir / "state.json").is_file()):
        opt = run.optimizer(0)
        run.begin(0, resumed=False)
        return opt, prog
    saved = json.loads((state_dir / "state.json").read_text())["progress"]
    if saved.get("config") != run.identity():
        raise ValueError(
            f"train: {state_dir} was written by a different run ({saved.get('config')}); "
            "pass resume=False or another out dir"
        )
    opt = run.optimizer(saved["step"])
    prog = load_state(state_dir, run.model, opt, generator)
    run.begin(prog["step"], resumed=True)
    return opt, prog


def steps(start: int, stop: int, progress: bool) -> Iterator[int]:
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


def loop(
    run: Trainee,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    prog: dict[str, Any],
    out: Path,
    log: Log | None,
    progress: bool,
) -> str:
    """Optimise until the last step, early stopping or the time budget; returns why it stopped."""
    cfg, total = run.cfg, run.total_steps()
    start_time, base_seconds = time.perf_counter(), prog["seconds"]
    if prog["bad_evals"] >= cfg.patience:
        return "early_stopping"
    for step in steps(prog["step"], total, progress):
        for group in opt.param_groups:
            group["lr"] = run.lr(step)
        loss, metrics = run.loss(step, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        done = step + 1
        if done % cfg.eval_every and done not in run.eval_points():
            continue
        prog["seconds"] = base_seconds + time.perf_counter() - start_time
        stopped = evaluate(run, prog, done, metrics, out, log)
        opt = run.after_validation(done, opt)
        save_state(out / STATE_DIR, run.model, opt, generator, prog)
        over = cfg.max_minutes and prog["seconds"] - base_seconds > 60 * cfg.max_minutes
        if stopped != "steps" or (over and done < total):
            return stopped if stopped != "steps" else "time_limit"
    return "steps"


def evaluate(
    run: Trainee,
    prog: dict[str, Any],
    done: int,
    metrics: dict[str, float],
    out: Path,
    log: Log | None,
) -> str:
    """Validate, keep the best model, count validations without progress; ``steps`` or why."""
    head, val, selects = run.validate(done)
    record = {"step": done, **head, **metrics, **val}
    prog["history"].append(record)
    prog["step"] = done
    if log is not None:
        log(record, done)
    if not selects:
        return "steps"
    if val["val_loss"] < prog["best_val"]:
        prog.update(best_val=val["val_loss"], best_step=done, bad_evals=0)
        checkpoint.save(run.model, out / STATE_DIR / "best")
        return "steps"
    prog["bad_evals"] += 1
    return "early_stopping" if prog["bad_evals"] >= run.cfg.patience else "steps"


def finish(
    run: Trainee, data_dir: str | Path, out: Path, prog: dict[str, Any], stopped: str
) -> dict[str, Any]:
    """Write the best model as the checkpoint, its ``info`` recording data, split and spread.

    Raises:
        ValueError: No validation has kept a model yet.
    """
    if not (out / STATE_DIR / "best").is_dir():
        raise ValueError(f"train: no model validated yet in {out}; raise steps or rerun")
    best = checkpoint.load(out / STATE_DIR / "best")
    spread, extra_info, extra_summary = run.finalize(best)
    manifest = run.data.manifest
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
        **extra_info,
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
        **extra_summary,
    }
