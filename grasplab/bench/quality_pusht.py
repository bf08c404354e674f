"""Push-T model quality, measured: k-step state errors and CEM planning in the REAL simulator.

The scripted-pusher dataset (``grasplab collect env=sim:pusht behaviour=pusher episodes=1000
steps=100 seed=0``) has a FIXED split: episodes ``[0, 900)`` train (training's own validation is
their last 10%, ``[810, 900)``), ``[900, 950)`` tuning, ``[950, 1000)`` test.

- :func:`kstep_errors`: open-loop ``k``-step errors on held-out episodes in the state's own
  units: agent and block position (pixels of the 512x512 table), block angle (radians, wrapped),
  and DINO-WM's position error (the norm of ``(agent xy, block xy)``, the simulator's
  ``distance``), next to a no-motion baseline, plus the latent MSE.
- :func:`fit_state_probe`: for pixel models, a ridge-regularised linear read-out latent ->
  ``(agent xy, block xy, sin, cos)``, fitted on encoded frames of training episodes and scored on
  held-out ones, so that their predictions are judged in the same units.
- :func:`heldout_excerpt`: the held-out episodes ``[900, 1000)``, states and actions only
  (~280 KB), shipped next to the checkpoints: the guarding test draws exactly the same tasks
  from it as from the full dataset (:func:`record` checks it), without the 1.2 GiB of images.
- :func:`record`: all of it for a shipped checkpoint, into ``checkpoints/floors.json`` and
  ``checkpoints/manifest.json`` (CEM planning success on dataset tasks of the test episodes:
  goal = the state the simulator reaches ``k`` env steps later under the recorded actions,
  success = the simulator's rule; the random-policy floor on the same tasks).

``checkpoints/`` is the shipped folder, :data:`grasplab.world_models.checkpoint.CHECKPOINTS`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from grasplab.bench.quality import (
    FLOORS,
    RIDGE_GRID,
    _apply,
    _ridge,
    _update_json,
    floor_from,
    guard_planner_config,
    hashes,
    planning_success,
)
from grasplab.eval import EvalProtocol
from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS
from grasplab.world_models.data import (
    MANIFEST,
    Episodes,
    dataset_identity,
    load_episodes,
    read_manifest,
    require_dataset,
)
from grasplab.world_models.training import draw_windows

TRAIN_EPISODES = (0, 900)
"""Episodes the Push-T models train on (validation: the last 10% of them)."""
SPLITS = {"tune": (900, 950), "test": (950, 1000)}
"""The fixed tuning and test episode ranges of the pusher dataset."""
HELDOUT = "pusht-pusher-heldout"
"""Folder (under ``checkpoints/``) of the shipped excerpt of the held-out episodes."""
KS = (1, 5, 10, 25, 50)
"""Default prediction depths (model steps)."""


# --------------------------------------------------------------------------------------------
# State read-outs
# --------------------------------------------------------------------------------------------


def targets(states: Tensor) -> Tensor:
    """Probe targets ``(..., 6)``: ``(agent xy, block xy, sin, cos)`` of states ``(..., 5)``."""
    return torch.cat([states[..., :4], states[..., 4:].sin(), states[..., 4:].cos()], dim=-1)


def from_targets(y: Tensor) -> Tensor:
    """States ``(..., 5)`` from probe outputs ``(..., 6)`` (angle ``atan2`` into ``[0, 2 pi)``)."""
    angle = torch.atan2(y[..., 4], y[..., 5]) % (2 * math.pi)
    return torch.cat([y[..., :4], angle[..., None]], dim=-1)


class StateProbe:
    """A linear read-out ``y = z[..., :dims] @ weight + bias``, ``y`` as in :func:`targets`.

    Attributes:
        weight: ``(dims + 1, 6)`` ridge solution (last row: the bias).
        dims: Leading latent dims read.
        penalty: Ridge penalty (per 4096 samples).
        heldout: Its own errors on held-out frames (agent / block px, angle rad).
    """

    def __init__(self, weight: Tensor, dims: int, penalty: float) -> None:
        self.weight, self.dims, self.penalty = weight, dims, penalty
        self.heldout: dict[str, float] = {}

    def __call__(self, z: Tensor) -> Tensor:
        """States ``(..., 5)`` read from latents ``(..., D)``."""
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])[:, : self.dims].double()
        return from_targets(_apply(flat, self.weight)).float().reshape(*lead, 5)

    def summary(self) -> dict[str, Any]:
        """Its accuracy, for reports."""
        return {"dims": self.dims, "penalty": self.penalty, "heldout_error": self.heldout}


@torch.no_grad()
def _encode_frames(model: nn.Module, images: Tensor, chunk: int = 256) -> Tensor:
    """Latents ``(N, D)`` of frames ``(N, H, W, 3)``."""
    return torch.cat([model.encode(images[i : i + chunk]) for i in range(0, len(images), chunk)])


def _frames(
    data: Episodes, episodes: range, count: int, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``count`` random frames ``(N, H, W, 3)`` of ``episodes`` and their states ``(N, 5)``."""
    assert data.images is not None
    ep = episodes.start + torch.randint(len(episodes), (count,), generator=g)
    t = torch.randint(data.states.shape[1], (count,), generator=g)
    return data.images[ep, t], data.states[ep, t]


@torch.no_grad()
def fit_state_probe(
    model: nn.Module,
    data: Episodes,
    fit_episodes: range,
    heldout_episodes: range,
    count: int = 4096,
    seed: int = 0,
    tolerance: float = 1.1,
) -> StateProbe:
    """Ridge probe latent -> ``(agent xy, block xy, sin, cos)`` of a pixel model.

    The penalty is the largest of :data:`~grasplab.bench.quality.RIDGE_GRID` whose error
    on a validation quarter of the fitting frames stays within ``tolerance`` x the unpenalised
    one (as :func:`grasplab.bench.quality.fit_position_probe`, for the same reason).

    Args:
        model: A pixel model.
        data: The dataset, images loaded.
        fit_episodes: Episodes of the fitting frames (training episodes).
        heldout_episodes: Episodes of the scoring frames.
        count: Fitting frames (scoring: a quarter as many).
        seed: Seed of the frame draws.
        tolerance: Allowed validation error growth from the penalty.
    """
    g = torch.Generator().manual_seed(seed)
    dims = getattr(model, "latent_dim", model.state_dim)
    images, states = _frames(data, fit_episodes, count, g)
    z = _encode_frames(model, images)[:, :dims].double()
    y = targets(states).double()
    fit = count - count // 4

    def val_error(penalty: float) -> float:
        w = _ridge(z[:fit], y[:fit], penalty)
        return (_apply(z[fit:], w) - y[fit:]).square().sum(-1).mean().item()

    errors = {p: val_error(p) for p in RIDGE_GRID}
    penalty = max(p for p, e in errors.items() if e <= tolerance * errors[0.0])
    probe = StateProbe(_ridge(z, y, penalty), dims, penalty)
    images, states = _frames(data, heldout_episodes, count // 4, g)
    errors = state_errors(probe(_encode_frames(model, images)), states)
    probe.heldout = {k: float(v.mean()) for k, v in errors.items()}
    return probe


def readout(model: nn.Module, z: Tensor, probe: StateProbe | None = None) -> Tensor:
    """States ``(..., 5)`` that latents ``(..., D)`` stand for (decoded, or read by ``probe``)."""
    if probe is not None:
        return probe(z)
    return model.decode(z)


def angle_error(a: Tensor, b: Tensor) -> Tensor:
    """Angle difference wrapped into ``[0, pi]``."""
    return ((a - b + math.pi) % (2 * math.pi) - math.pi).abs()


def state_errors(pred: Tensor, true: Tensor) -> dict[str, Tensor]:
    """Per-sample errors ``(...)`` of states ``(..., 5)``: agent, block, position, angle."""
    return {
        "agent_error": (pred[..., :2] - true[..., :2]).norm(dim=-1),
        "block_error": (pred[..., 2:4] - true[..., 2:4]).norm(dim=-1),
        "position_error": (pred[..., :4] - true[..., :4]).norm(dim=-1),
        "angle_error": angle_error(pred[..., 4], true[..., 4]),
    }


# --------------------------------------------------------------------------------------------
# k-step errors
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def kstep_errors(
    model: nn.Module,
    data: Episodes,
    episodes: range,
    ks: tuple[int, ...] = KS,
    count: int = 256,
    seed: int = 0,
    probe: StateProbe | None = None,
) -> dict[str, Any]:
    """Open-loop ``k``-step errors on ``episodes``, windows starting anywhere in an episode.

    Args:
        model: An ``MLPModel`` (decoded exactly) or a pixel model with a ``probe``.
        data: The dataset (images loaded for pixel models).
        episodes: Held-out episodes.
        ks: Prediction depths in model steps.
        count: Windows.
        seed: Window sampler seed.
        probe: A pixel model's :class:`StateProbe`.

    Returns:
        ``k``, ``windows``, ``latent_mse`` / ``latent_mse_no_motion`` (encoded part), and per
        error of :func:`state_errors` its mean over windows at each ``k`` and the no-motion
        baseline's (``<name>_no_motion``); with a probe also ``<name>_probe``, the probe's own
        error on the true frames' latents.
    """
    K, block = max(ks), model.action_block
    w = draw_windows(data, episodes, count, K, block, False, torch.Generator().manual_seed(seed))
    pixels = getattr(model, "observation", "state") == "pixels"
    obs = w.images if pixels else w.states
    z = _encode_frames(model, obs.flatten(0, 1)).unflatten(0, obs.shape[:2])
    d = getattr(model, "latent_dim", model.state_dim)
    pred, preds = z[:, 0], []
    for j in range(K):
        pred = model.step(pred, w.actions[:, j])
        preds.append(pred)
    out: dict[str, Any] = {"k": list(ks), "windows": count}
    for k in ks:
        true = w.states[:, k]
        rows = {
            "latent_mse": (preds[k - 1] - z[:, k])[:, :d].square().mean(),
            "latent_mse_no_motion": (z[:, 0] - z[:, k])[:, :d].square().mean(),
        }
        for name, err in state_errors(readout(model, preds[k - 1], probe), true).items():
            rows[name] = err.mean()
        for name, err in state_errors(w.states[:, 0], true).items():
            rows[f"{name}_no_motion"] = err.mean()
        if probe is not None:
            for name, err in state_errors(probe(z[:, k]), true).items():
                rows[f"{name}_probe"] = err.mean()
        for name, value in rows.items():
            out.setdefault(name, []).append(float(value))
    return out


# --------------------------------------------------------------------------------------------
# The shipped excerpt of the held-out episodes
# --------------------------------------------------------------------------------------------

_COPIED = (
    "format",
    "format_version",
    "env",
    "env_overrides",
    "env_config",
    "behaviour",
    "steps",
    "seed",
    "action_block",
    "policy",
    "state_dim",
    "action_dim",
    "image_size",
)


def heldout_excerpt(data_dir: str | Path, out: str | Path, episodes: tuple[int, int]) -> Path:
    """Write episodes ``[first, stop)`` of a dataset, states and actions only, as a dataset.

    Its episode ``i`` is the source's ``first + i``; its manifest records the source's identity
    and the range (``excerpt``). Task sets drawn from it over the shifted ranges equal those
    drawn from the source (same seeds, same episode count per split).

    Returns:
        The excerpt's directory.
    """
    source = read_manifest(data_dir)
    data = load_episodes(data_dir, images=False)
    first, stop = episodes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shard = out / "shard-00000.safetensors"
    tensors = {
        "states": data.states[first:stop].contiguous(),
        "actions": data.actions[first:stop].contiguous(),
    }
    save_file(tensors, str(shard))
    shard.chmod(0o644)
    record = {
        "index": 0,
        "file": shard.name,
        "episodes": stop - first,
        "bytes": shard.stat().st_size,
        "sha256": checkpoint.sha256_file(shard),
    }
    manifest = {k: source[k] for k in _COPIED if k in source}
    manifest.update(
        episodes=stop - first,
        shard_episodes=stop - first,
        shards=[record],
        complete=True,
        bytes=record["bytes"],
        collection=[],
        excerpt={
            "source_identity": dataset_identity(source),
            "episodes": [first, stop],
            "images": False,
        },
    )
    checkpoint.write_json_atomic(out / MANIFEST, manifest)
    return out


def task_set(data: str, splits: dict[str, tuple[int, int]], k: int) -> dict[str, Any]:
    """A dataset task set (plain dict) with goals ``k`` env steps ahead."""
    return {
        "source": "dataset",
        "data": data,
        "k": k,
        "splits": {s: list(r) for s, r in splits.items()},
    }


def shifted(splits: dict[str, tuple[int, int]], first: int) -> dict[str, tuple[int, int]]:
    """``splits`` with episode indices shifted down by ``first`` (an excerpt's numbering)."""
    return {s: (a - first, b - first) for s, (a, b) in splits.items()}


# --------------------------------------------------------------------------------------------
# Record
# --------------------------------------------------------------------------------------------


def record(
    name: str,
    data_dir: str | Path,
    horizon: int = 10,
    episodes: int = 100,
    test_episodes: int = 20,
    root: Path = CHECKPOINTS,
    ks: tuple[int, ...] | list[int] = KS,
    test_cem: tuple[int, int, int] | list[int] | None = None,
) -> dict[str, Any]:
    """Measure shipped Push-T checkpoint ``root/name``; record it in ``floors.json``.

    Args:
        name: Checkpoint directory name under ``root``.
        data_dir: The full pusher dataset (its test episodes give the k-step errors and tasks).
        horizon: Planning horizon (model steps); goals are ``horizon * action_block`` env steps
            ahead.
        episodes: Test tasks of the reported success rate (drawn in turn from the 50 test
            episodes at seeded offsets).
        test_episodes: Tasks the guarding test re-runs (the first ones); its floor is set from them.
        root: The checkpoints folder.
        ks: Prediction depths (model steps) of the k-step errors.
        test_cem: ``(n_iterations, n_samples, n_elites)`` of a cheaper CEM for the guarding
            test, as in :func:`grasplab.bench.quality.record` (the 1,024-d patch
            models); None: the reported CEM.
    """
    path = root / name
    model = checkpoint.load(path)
    meta = checkpoint.info(path)
    require_dataset(data_dir, meta["env"])
    pixels = model.observation == "pixels"
    data = load_episodes(data_dir, images=pixels)
    entry: dict[str, Any] = {"kind": model.kind, "env": meta["env"], "env_overrides": {}}
    probe = None
    if pixels:
        probe = fit_state_probe(model, data, range(*meta["train_episodes"]), range(*SPLITS["test"]))
        entry["probe"] = probe.summary()
    entry["kstep"] = kstep_errors(model, data, range(*SPLITS["test"]), tuple(ks), probe=probe)
    k = horizon * model.action_block
    full = task_set(str(Path(data_dir).resolve()), SPLITS, k)
    excerpt_dir = heldout_excerpt(data_dir, root / HELDOUT, (SPLITS["tune"][0], SPLITS["test"][1]))
    excerpt = task_set(HELDOUT, shifted(SPLITS, SPLITS["tune"][0]), k)
    kwargs = {"env": meta["env"], "horizon": horizon, "episodes": episodes}
    entry["planning"] = planning_success(model, task_set=full, **kwargs)
    entry["planning"]["dataset_identity"] = dataset_identity(read_manifest(data_dir))
    subset = planning_success(
        model,
        task_set={**excerpt, "data": str(excerpt_dir)},
        indices=list(range(test_episodes)),
        planner_config=guard_planner_config(test_cem),
        **kwargs,
    )
    _check_same_tasks(full, {**excerpt, "data": str(excerpt_dir)}, meta["env"], horizon, episodes)
    entry["test"] = {
        "indices": subset["indices"],
        "success_rate": subset["summary"]["success_rate"],
        "floor": floor_from(subset["summary"]["success_rate"]),
        "seconds": subset["seconds"],
        "task_set": excerpt,
    }
    if test_cem is not None:
        entry["test"]["planner_config"] = subset["planner_config"]
        entry["test"]["random_success_rate"] = subset["random_success_rate"]
    _update_json(root / FLOORS, name, entry)
    _update_json(root / "manifest.json", name, hashes(path))
    return entry


def _check_same_tasks(
    full: dict[str, Any], excerpt: dict[str, Any], env: str, horizon: int, episodes: int
) -> None:
    """Raise unless the excerpt's test tasks equal the full dataset's."""
    a, b = (
        EvalProtocol(env=env, horizon=horizon, test_episodes=episodes, task_set=t).tasks("test")
        for t in (full, excerpt)
    )
    if not (torch.equal(a.start, b.start) and torch.equal(a.goal, b.goal)):
        raise ValueError("the held-out excerpt's test tasks differ from the full dataset's")


if __name__ == "__main__":
    sys.exit("python -m grasplab.bench.quality_pusht is gone; run: grasplab bench quality-pusht")
