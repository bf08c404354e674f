"""Model quality, measured: k-step prediction error and planning success in the TRUE env.

- :func:`kstep_errors`: open-loop ``k``-step prediction error on held-out episodes, in latent
  space (unit-scale latents; for pixel models the encoded part, since ``encode`` sets the memory
  to zero by construction) next to a no-motion baseline, and for state models in env units.
- :func:`planning_success`: CEM (or any planner) plans through the model; success is judged by
  :func:`grasplab.eval.evaluate` in the true environment, next to the random-policy floor.
- :func:`fit_position_probe`: a linear read-out latent -> position for pixel models (fitted on
  renders of random free states), so that their predictions can be judged in env units: k-step
  position errors, and "success under the model" for the model-vs-true gap.
- :func:`record`: all of it, for a shipped checkpoint, written to ``checkpoints/floors.json``
  with the floor the tests guard and the weights' hashes in ``checkpoints/manifest.json``
  (``checkpoints/``: the shipped folder, :data:`grasplab.world_models.checkpoint.CHECKPOINTS`).

A benchmark, not part of the models: it plans (:mod:`grasplab.planners`) and scores in the true
env (:mod:`grasplab.eval`), layers that ``grasplab/world_models/`` may not import.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from grasplab.envs import make
from grasplab.eval import EvalProtocol, evaluate, random_floor
from grasplab.planners import make_planner
from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS
from grasplab.world_models.data import Episodes, load_episodes, require_dataset
from grasplab.world_models.training import draw_windows

FLOORS = "floors.json"
MANIFEST = "manifest.json"
DEFAULT_PLANNER: dict[str, Any] = {"n_iterations": 30, "n_samples": 300, "n_elites": 30}
"""CEM at its field settings (``CEMConfig`` defaults, spelled out so the record is explicit)."""


class PositionReadout(Protocol):
    """Latents ``(..., D)`` -> positions ``(..., 2)`` (env units), with its own accuracy.

    :class:`PositionProbe` (linear) and
    :class:`grasplab.bench.decoded_probe.DecodedPositionProbe` (through the model's decoder).
    """

    heldout_error: float
    r2: float

    def __call__(self, z: Tensor) -> Tensor:
        """Positions ``(..., 2)`` from latents ``(..., D)``."""
        ...

    def summary(self) -> dict[str, Any]:
        """Its accuracy, for reports."""
        ...


@dataclass(frozen=True)
class PositionProbe:
    """A linear read-out ``position = z[..., :dims] @ weight + bias`` (env units).

    Attributes:
        weight: ``(dims, 2)``.
        bias: ``(2,)``.
        dims: Leading latent dims read (a pixel model's encoded part; its memory is excluded).
        heldout_error: Mean Euclidean error on held-out renders, env units.
        r2: Coefficient of determination on the held-out renders (both coordinates pooled).
        count: Renders it was fitted on.
        penalty: Its ridge penalty (per 4096 samples).
    """

    weight: Tensor
    bias: Tensor
    dims: int
    heldout_error: float
    r2: float
    count: int
    penalty: float = 0.0

    def __call__(self, z: Tensor) -> Tensor:
        """Positions ``(..., 2)`` from latents ``(..., D)``."""
        return z[..., : self.dims] @ self.weight.to(z) + self.bias.to(z)

    def summary(self) -> dict[str, float]:
        """Its accuracy, for reports."""
        return {
            "heldout_error": self.heldout_error,
            "r2": self.r2,
            "count": self.count,
            "dims": self.dims,
            "penalty": self.penalty,
        }


@torch.no_grad()
def _encode_states(model: nn.Module, env: Any, states: Tensor, chunk: int = 256) -> Tensor:
    """Latents ``(N, D)`` of the renders of env states ``(N, S)``."""
    device = next(iter(model.parameters())).device
    parts = [
        model.encode(env.render(states[i : i + chunk]).to(device))
        for i in range(0, len(states), chunk)
    ]
    return torch.cat(parts).cpu()


RIDGE_GRID = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Ridge penalties tried by :func:`fit_position_probe` (per 4096 fitting samples)."""


def _ridge(x: Tensor, y: Tensor, penalty: float) -> Tensor:
    """Ridge solution ``(F+1, 2)`` of ``[x, 1] @ W = y`` (the bias is not penalised)."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    reg = torch.eye(a.shape[1], dtype=x.dtype) * penalty * len(x) / 4096
    reg[-1, -1] = 0.0
    return torch.linalg.solve(a.T @ a + reg, a.T @ y)


def _apply(x: Tensor, w: Tensor) -> Tensor:
    """``[x, 1] @ w``."""
    return x @ w[:-1] + w[-1]


@torch.no_grad()
def fit_position_probe(
    model: nn.Module,
    env: Any,
    count: int = 4096,
    heldout: int = 1024,
    seed: int = 0,
    tolerance: float = 1.1,
) -> PositionProbe:
    """Ridge-regularised linear probe from a pixel model's encoded latent to the position.

    Fitted on ``encode(render(s))`` of ``count`` uniformly random free states (``env.reset``:
    the positions the training data covers, at rest as task starts and goals are), scored on
    ``heldout`` others. Linear on purpose: it cannot invent structure the latent lacks. The
    encodings of real images span only a few latent directions (the position); least squares
    would give large weights to the near-empty ones, so that small off-manifold errors of
    predicted latents read as large jumps in position. The ridge penalty is therefore the
    largest of :data:`RIDGE_GRID` whose error on a validation quarter of the fitting renders
    stays within ``tolerance`` x the unpenalised one; the probe is then refitted on all of them.

    Args:
        model: A pixel model (``observation == "pixels"``).
        env: The environment it was trained on.
        count: Fitting renders (a quarter of them select the penalty).
        heldout: Scoring renders.
        seed: Seed of the random states.
        tolerance: Allowed validation error growth from the penalty.
    """
    g = torch.Generator().manual_seed(seed)
    states = env.reset(g, count + heldout)
    dims = getattr(model, "latent_dim", model.state_dim)
    z = _encode_states(model, env, states)[:, :dims].double()
    pos = states[:, :2].double()
    fit = count - count // 4

    def val_error(penalty: float) -> float:
        w = _ridge(z[:fit], pos[:fit], penalty)
        return (_apply(z[fit:count], w) - pos[fit:count]).norm(dim=-1).mean().item()

    errors = {p: val_error(p) for p in RIDGE_GRID}
    penalty = max(p for p, e in errors.items() if e <= tolerance * errors[0.0])
    w = _ridge(z[:count], pos[:count], penalty)
    pred = _apply(z[count:], w)
    resid = (pred - pos[count:]).square().sum()
    total = (pos[count:] - pos[count:].mean(0)).square().sum()
    return PositionProbe(
        weight=w[:-1].float(),
        bias=w[-1].float(),
        dims=dims,
        heldout_error=(pred - pos[count:]).norm(dim=-1).mean().item(),
        r2=1.0 - (resid / total).item(),
        count=count,
        penalty=penalty,
    )


def predicted_positions(model: Any, z: Tensor, probe: PositionReadout | None = None) -> Tensor:
    """Positions ``(..., 2)`` (env units) a model's latents ``(..., D)`` stand for.

    State models (``observation == "state"`` with ``decode``) decode exactly; pixel models need
    a :class:`PositionProbe`.

    Raises:
        ValueError: A pixel model without a probe.
    """
    if getattr(model, "observation", "state") == "state" and hasattr(model, "decode"):
        return model.decode(z)[..., :2]
    if probe is None:
        raise ValueError("predicted_positions: a pixel model needs a PositionProbe")
    return probe(z)


def _encode_windows(model: nn.Module, data: Episodes, w: Any) -> torch.Tensor:
    """Unit-scale latents ``(B, L+1, D)`` of the windows' observations."""
    if getattr(model, "observation", "state") == "pixels":
        return torch.cat([model.encode(w.images[i : i + 64]) for i in range(0, len(w.images), 64)])
    return model.encode(w.states)


@torch.no_grad()
def kstep_errors(
    model: nn.Module,
    data: Episodes,
    episodes: range,
    ks: tuple[int, ...] = (1, 5, 20),
    count: int = 256,
    seed: int = 0,
    probe: PositionReadout | None = None,
) -> dict[str, Any]:
    """Open-loop ``k``-step prediction errors on ``episodes`` (held-out ones, normally).

    Windows start at an episode's first step (a state at rest, as tasks do).

    Args:
        model: An ``MLPModel`` or ``PixelModel``.
        data: The dataset (images loaded for pixel models).
        episodes: Episode indices to evaluate on.
        ks: Prediction depths in model steps (each ``k * action_block <= T``).
        count: Windows evaluated.
        seed: Window sampler seed.
        probe: For pixel models, a :class:`PositionProbe` to report position errors with.

    Returns:
        ``k``, ``latent_mse`` and ``latent_mse_no_motion`` (mean over windows and compared dims),
        and for state models (or pixel models with a ``probe``) ``position_error`` /
        ``position_error_no_motion`` (mean Euclidean error of the position, env units); with a
        probe also ``position_error_probe``, the probe's own error on the true frames' latents.
    """
    K, block = max(ks), model.action_block
    g = torch.Generator().manual_seed(seed)
    w = draw_windows(data, episodes, count, K, block, True, g)
    z = _encode_windows(model, data, w)
    d = getattr(model, "latent_dim", model.state_dim)
    pred, preds = z[:, 0], []
    for j in range(K):
        pred = model.step(pred, w.actions[:, j])
        preds.append(pred)
    out: dict[str, Any] = {
        "k": list(ks),
        "windows": count,
        "latent_mse": [],
        "latent_mse_no_motion": [],
    }
    for k in ks:
        out["latent_mse"].append((preds[k - 1] - z[:, k])[:, :d].square().mean().item())
        out["latent_mse_no_motion"].append((z[:, 0] - z[:, k])[:, :d].square().mean().item())
    is_state = getattr(model, "observation", "state") == "state" and hasattr(model, "decode")
    if is_state or probe is not None:
        out.update(_position_errors(model, probe, preds, z, w.states, ks))
    return out


def _position_errors(
    model: nn.Module,
    probe: PositionReadout | None,
    preds: list[Tensor],
    z: Tensor,
    states: Tensor,
    ks: tuple[int, ...],
) -> dict[str, list[float]]:
    """Mean Euclidean position errors (env units) of the ``k``-step predictions."""
    out: dict[str, list[float]] = {"position_error": [], "position_error_no_motion": []}
    if probe is not None:
        out["position_error_probe"] = []
    for k in ks:
        err = predicted_positions(model, preds[k - 1], probe) - states[:, k, :2]
        still = states[:, 0, :2] - states[:, k, :2]
        out["position_error"].append(err.norm(dim=-1).mean().item())
        out["position_error_no_motion"].append(still.norm(dim=-1).mean().item())
        if probe is not None:
            own = probe(z[:, k]) - states[:, k, :2]
            out["position_error_probe"].append(own.norm(dim=-1).mean().item())
    return out


def planning_success(
    model: nn.Module,
    env: str,
    env_overrides: dict[str, Any] | None = None,
    horizon: int = 10,
    episodes: int = 100,
    indices: list[int] | None = None,
    planner: str = "cem",
    planner_config: dict[str, Any] | None = None,
    seed: int = 0,
    task_set: dict[str, Any] | None = None,
    random_repeats: int = 5,
) -> dict[str, Any]:
    """Plan held-out test tasks through ``model``; success judged in the TRUE env.

    Args:
        model: The world model (its ``action_block`` sets the protocol's).
        env: Environment name.
        env_overrides: Environment config overrides.
        horizon: Plan length in model steps.
        episodes: Test tasks in the protocol.
        indices: Which test tasks to run (default all).
        planner: Planner name (``grasplab.planners.make_planner``).
        planner_config: Planner config overrides (default :data:`DEFAULT_PLANNER` for CEM).
        seed: Protocol seed.
        task_set: Where the tasks come from (:class:`grasplab.eval.tasks.TaskSet` as a dict;
            default: the env samples them), e.g. a recorded dataset's test episodes.
        random_repeats: Random-policy rollouts per test task for the floor.

    Returns:
        The protocol, the planner config, the summary metrics, and the random-policy floor's
        success rate on the same tasks.
    """
    if planner_config is None:
        planner_config = dict(DEFAULT_PLANNER) if planner == "cem" else {}
    overrides = _overrides(env_overrides or {})
    protocol = EvalProtocol(
        env=env,
        env_overrides=overrides,
        horizon=horizon,
        action_block=model.action_block,
        seed=seed,
        test_episodes=episodes,
        task_set=task_set or {},
    )
    start = time.perf_counter()
    results = evaluate(protocol, make_planner(planner, planner_config), model, "test", indices)
    seconds = time.perf_counter() - start
    floor = random_floor(protocol, "test", seed=seed, repeats=random_repeats)
    return {
        "protocol": protocol.to_dict(),
        "planner": planner,
        "planner_config": planner_config,
        "indices": indices,
        "summary": results.summary(),
        "seconds": round(seconds, 2),
        "random_success_rate": float(floor.success.mean()),
    }


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Env overrides read back from JSON: lists become the tuples the configs hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def guard_task_set(record: dict[str, Any], root: Path = CHECKPOINTS) -> dict[str, Any] | None:
    """The task set a ``floors.json`` record's guard runs on (None: the env samples them).

    A dataset task set's ``data`` may be relative to the checkpoints folder (a shipped excerpt
    of the dataset's held-out episodes, see :mod:`grasplab.bench.quality_pusht`).
    """
    task_set = (record.get("test") or {}).get("task_set")
    if not task_set:
        return None
    data = Path(task_set["data"])
    return {**task_set, "data": str(data if data.is_absolute() else root / data)}


def floor_from(rate: float, margin: float = 0.15) -> float:
    """A test floor somewhat below a measured rate (rounded down to 0.05)."""
    return max(0.0, math.floor((rate - margin) * 20 + 1e-9) / 20)


def record(
    name: str,
    data_dir: str | Path,
    horizon: int = 10,
    episodes: int = 100,
    test_episodes: int = 20,
    root: Path = CHECKPOINTS,
    ks: tuple[int, ...] | list[int] = (1, 5, 20),
    test_cem: tuple[int, int, int] | list[int] | None = None,
) -> dict[str, Any]:
    """Measure shipped checkpoint ``root/name``; record it in ``floors.json``, ``manifest.json``.

    Args:
        name: Checkpoint directory name under ``root``.
        data_dir: The dataset it was trained on (its held-out episodes give the k-step errors).
        horizon: Planning horizon (model steps).
        episodes: Test tasks for the reported success rate.
        test_episodes: Tasks the unit test re-runs (the first ones); its floor is set from them.
        root: The checkpoints folder.
        ks: Prediction depths (model steps) of the k-step errors.
        test_cem: ``(n_iterations, n_samples, n_elites)`` of a cheaper CEM for the unit test
            (its floor is set from its own rate on the first ``test_episodes`` tasks); None:
            the reported CEM (:data:`DEFAULT_PLANNER`). For models whose step is costly (the
            1,024-d patch models), so that the guarding test takes seconds.
    """
    path = root / name
    model = checkpoint.load(path)
    meta = checkpoint.info(path)
    require_dataset(data_dir, meta["env"])
    data = load_episodes(data_dir, images=model.observation == "pixels")
    held_out = range(*meta["val_episodes"])
    entry: dict[str, Any] = {
        "kind": model.kind,
        "env": meta["env"],
        "env_overrides": meta["env_overrides"],
    }
    probe = None
    if model.observation == "pixels":
        probe = fit_position_probe(model, make(meta["env"], **_overrides(meta["env_overrides"])))
        entry["probe"] = probe.summary()
    entry["kstep"] = kstep_errors(model, data, held_out, tuple(ks), probe=probe)
    kwargs = {"env": meta["env"], "env_overrides": meta["env_overrides"], "horizon": horizon}
    entry["planning"] = planning_success(model, episodes=episodes, **kwargs)
    test_config = guard_planner_config(test_cem)
    subset = planning_success(
        model,
        episodes=episodes,
        indices=list(range(test_episodes)),
        planner_config=test_config,
        **kwargs,
    )
    entry["test"] = {
        "planner_config": test_config,
        "random_success_rate": subset["random_success_rate"],
        "indices": subset["indices"],
        "success_rate": subset["summary"]["success_rate"],
        "floor": floor_from(subset["summary"]["success_rate"]),
        "seconds": subset["seconds"],
    }
    _update_json(root / FLOORS, name, entry)
    _update_json(root / MANIFEST, name, hashes(path))
    return entry


def hashes(path: Path) -> dict[str, Any]:
    """SHA-256 and size of every file in a checkpoint directory."""
    files = sorted(p for p in path.iterdir() if p.is_file())
    return {p.name: {"sha256": checkpoint.sha256_file(p), "bytes": p.stat().st_size} for p in files}


def guard_planner_config(test_cem: tuple[int, int, int] | list[int] | None) -> dict[str, Any]:
    """The guard's CEM config: ``test_cem`` (iterations, samples, elites), else the default."""
    if test_cem is None:
        return dict(DEFAULT_PLANNER)
    names = ("n_iterations", "n_samples", "n_elites")
    return dict(zip(names, map(int, test_cem), strict=True))


def _update_json(file: Path, key: str, value: Any) -> None:
    """Set ``key`` in the JSON object stored in ``file`` (created when missing)."""
    data = json.loads(file.read_text()) if file.is_file() else {}
    data[key] = value
    checkpoint.write_json_atomic(file, dict(sorted(data.items())))


if __name__ == "__main__":
    sys.exit("python -m grasplab.bench.quality is gone; run: grasplab bench quality")
