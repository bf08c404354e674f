"""Model quality, measured: k-step prediction error and planning success in the TRUE env.

- :func:`kstep_errors`: open-loop ``k``-step prediction error on held-out episodes, in latent
  space (unit-scale latents; for pixel models the encoded part, since ``encode`` sets the memory
  to zero by construction) next to a no-motion baseline, and for state models in env units.
- :func:`planning_success`: CEM (or any planner) plans through the model; success is judged by
  :func:`grasplab.eval.evaluate` in the true environment, next to the random-policy floor.
- :func:`record`: both, for a shipped checkpoint, written to ``checkpoints/floors.json`` with
  the floor the tests guard and the weights' hashes in ``checkpoints/manifest.json``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grasplab.world_models import checkpoint
from grasplab.world_models.data import Episodes, load_episodes, parse_overrides
from grasplab.world_models.training import draw_windows

CHECKPOINTS = Path(__file__).parent / "checkpoints"
FLOORS = "floors.json"
MANIFEST = "manifest.json"
DEFAULT_PLANNER: dict[str, Any] = {"n_iterations": 30, "n_samples": 300, "n_elites": 30}
"""CEM at its field settings (``CEMConfig`` defaults, spelled out so the record is explicit)."""


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

    Returns:
        ``k``, ``latent_mse`` and ``latent_mse_no_motion`` (mean over windows and compared dims),
        and for state models ``position_error`` / ``position_error_no_motion`` (mean Euclidean
        error of the position, env units).
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
    if hasattr(model, "decode") and getattr(model, "observation", "state") == "state":
        out["position_error"], out["position_error_no_motion"] = [], []
        for k in ks:
            err = model.decode(preds[k - 1])[:, :2] - w.states[:, k, :2]
            still = w.states[:, 0, :2] - w.states[:, k, :2]
            out["position_error"].append(err.norm(dim=-1).mean().item())
            out["position_error_no_motion"].append(still.norm(dim=-1).mean().item())
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

    Returns:
        The protocol, the planner config, the summary metrics, and the random-policy floor's
        success rate on the same tasks.
    """
    from grasplab.eval import EvalProtocol, evaluate, random_floor
    from grasplab.planners import make_planner

    if planner_config is None:
        planner_config = dict(DEFAULT_PLANNER) if planner == "cem" else {}
    overrides = {
        k: tuple(v) if isinstance(v, list) else v for k, v in (env_overrides or {}).items()
    }
    protocol = EvalProtocol(
        env=env,
        env_overrides=overrides,
        horizon=horizon,
        action_block=model.action_block,
        seed=seed,
        test_episodes=episodes,
    )
    start = time.perf_counter()
    results = evaluate(protocol, make_planner(planner, planner_config), model, "test", indices)
    seconds = time.perf_counter() - start
    floor = random_floor(protocol, "test", seed=seed, repeats=5)
    return {
        "protocol": protocol.to_dict(),
        "planner": planner,
        "planner_config": planner_config,
        "indices": indices,
        "summary": results.summary(),
        "seconds": round(seconds, 2),
        "random_success_rate": float(floor.success.mean()),
    }


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
) -> dict[str, Any]:
    """Measure shipped checkpoint ``root/name``; record it in ``floors.json``, ``manifest.json``.

    Args:
        name: Checkpoint directory name under ``root``.
        data_dir: The dataset it was trained on (its held-out episodes give the k-step errors).
        horizon: Planning horizon (model steps).
        episodes: Test tasks for the reported success rate.
        test_episodes: Tasks the unit test re-runs (the first ones); its floor is set from them.
        root: The checkpoints folder.
    """
    path = root / name
    model = checkpoint.load(path)
    meta = checkpoint.info(path)
    data = load_episodes(data_dir, images=model.observation == "pixels")
    held_out = range(*meta["val_episodes"])
    entry = {
        "kind": model.kind,
        "env": meta["env"],
        "env_overrides": meta["env_overrides"],
        "kstep": kstep_errors(model, data, held_out),
    }
    kwargs = {"env": meta["env"], "env_overrides": meta["env_overrides"], "horizon": horizon}
    entry["planning"] = planning_success(model, episodes=episodes, **kwargs)
    subset = planning_success(
        model, episodes=episodes, indices=list(range(test_episodes)), **kwargs
    )
    entry["test"] = {
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


def _update_json(file: Path, key: str, value: Any) -> None:
    """Set ``key`` in the JSON object stored in ``file`` (created when missing)."""
    data = json.loads(file.read_text()) if file.is_file() else {}
    data[key] = value
    checkpoint.write_json_atomic(file, dict(sorted(data.items())))


USAGE = (
    "usage: python -m grasplab.world_models.quality name=<checkpoint dir under checkpoints/> "
    "data=DIR [horizon=10 episodes=100 test_episodes=20]"
)


def main(argv: list[str] | None = None) -> int:
    """Record a shipped checkpoint's quality; one-line error and exit code 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_overrides(argv)
        unknown = sorted(set(args) - {"name", "data", "horizon", "episodes", "test_episodes"})
        if unknown or not {"name", "data"} <= set(args):
            raise ValueError(f"bad or missing keys (unknown: {unknown}); {USAGE}")
        entry = record(str(args.pop("name")), str(args.pop("data")), **args)
    except ValueError as err:
        print(f"quality: {err}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
