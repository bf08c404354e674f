"""Training of the learned world models: one loop, a module per model kind.

``grasplab train`` (:mod:`grasplab.cli.train`, Hydra + MLflow) is the way to train; it calls
:func:`train`, which fits an :class:`~grasplab.world_models.mlp.MLPModel` (``kind="mlp"``), a
:class:`~grasplab.world_models.pixel.PixelModel` (``kind="pixel"``) or a
:class:`~grasplab.world_models.patch.PatchModel` (``kind="patch"``, in two stages) on a dataset
written by :func:`grasplab.world_models.data.collect` and writes the best model (lowest
validation loss on held-out episodes) as a checkpoint directory ``out_dir``.

- :mod:`~grasplab.world_models.training.loop`: the one loop (seeded, validated, early-stopped,
  resumable from ``out_dir/train_state``, metrics to an optional ``log(metrics, step)``) and
  the checkpoint's ``info`` (dataset identity, train/validation episode ranges, latent spread);
- :mod:`~grasplab.world_models.training.state_pixel`: the ``mlp`` and ``pixel`` kinds;
- :mod:`~grasplab.world_models.training.patch`: the ``patch`` kind (DINO-WM's two stages);
- :mod:`~grasplab.world_models.training.windows`: episode splits and training windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grasplab.moved import moved_names
from grasplab.world_models.training import patch, state_pixel
from grasplab.world_models.training.loop import STATE_DIR, Log
from grasplab.world_models.training.patch import PatchTrainConfig
from grasplab.world_models.training.state_pixel import TrainConfig
from grasplab.world_models.training.windows import Windows, background, draw_windows

__all__ = [
    "STATE_DIR",
    "Log",
    "PatchTrainConfig",
    "TrainConfig",
    "Windows",
    "background",
    "draw_windows",
    "train",
]


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
        kind: ``"mlp"``, ``"pixel"`` or ``"patch"``.
        data_dir: Dataset written by :func:`grasplab.world_models.data.collect`.
        out_dir: Checkpoint directory (the best model); ``out_dir/train_state`` holds the
            resumable state.
        seed: Seed of the initialisation and the batch sampler.
        steps: Most optimiser steps (``patch``: of the predictor stage).
        batch: Windows per batch.
        lr: Learning rate.
        log: Optional ``log(metrics, step)`` callback (the platform wraps it for MLflow).
        resume: Continue from ``out_dir/train_state`` when present (else start over).
        progress: Show a progress bar.
        **options: Other fields of the kind's config (:class:`TrainConfig`, or
            :class:`PatchTrainConfig` for ``patch``).

    Returns:
        A summary: ``best_val``, ``best_step``, ``steps_done``, ``stopped`` reason,
        ``seconds``, ``checkpoint`` (``patch``: also the validation ``k``-step errors).
    """
    if kind == "patch":
        cfg = PatchTrainConfig(seed=seed, steps=steps, batch=batch, lr=lr, **options)
        return patch.train(data_dir, out_dir, cfg, log, resume, progress)
    config = TrainConfig(kind=kind, seed=seed, steps=steps, batch=batch, lr=lr, **options)
    return state_pixel.train(data_dir, out_dir, config, log, resume, progress)


__getattr__ = moved_names(
    __name__,
    {
        name: f"grasplab.world_models.training.{home}.{name}"
        for home, names in {
            "state_pixel": (
                "LOSS_UNITS",
                "mlp_loss",
                "pixel_loss",
                "recon_loss",
                "build_model",
                "fit_mlp_normalization",
                "fit_pixel_normalization",
                "run_identity",
            ),
            "loop": ("save_state", "load_state"),
            "windows": ("ACTION_NORMALIZATION", "latent_spread", "split_episodes"),
        }.items()
        for name in names
    },
)
