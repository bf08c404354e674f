"""``grasplab bench invariance``: do episode outcomes depend on how the work is cut?

Plans the same held-out test episodes of an oracle env once per chunk size (``--chunks``, e.g.
8, the sweep default, and 64, one batch of all goals), every planner at its defaults, and
counts per planner the episodes whose success flips between the first chunk size and each
other one, and whether every deterministic per-episode field (success, distances, model cost,
model steps, model steps to success) is bit-identical. With per-episode random streams
(:class:`grasplab.planners.streams.EpisodeStreams`) both are expected: 0 flips, identical.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grasplab.eval import EvalProtocol, evaluate
from grasplab.eval.results import EpisodeResults
from grasplab.planners import PLANNERS, GRASPConfig, make_planner
from grasplab.world_models import OracleModel

DETERMINISTIC = EpisodeResults.DETERMINISTIC
VARIANTS = ("grasp_reference",)
"""Presets timed beside the planners (``grasp_reference``: ``GRASPConfig.reference()``)."""


def check(args: argparse.Namespace) -> None:
    """Validate options; sets ``args.chunk_sizes`` and ``args.planner_names``.

    Raises:
        ValueError: Chunk sizes below 1 or fewer than two of them, unknown planners, episodes
            below 1.
    """
    try:
        args.chunk_sizes = [int(c) for c in args.chunks.split(",")]
    except ValueError:
        raise ValueError(f"--chunks must be integers, got {args.chunks!r}") from None
    if len(args.chunk_sizes) < 2 or min(args.chunk_sizes) < 1:
        raise ValueError(f"--chunks needs two or more sizes >= 1, got {args.chunks!r}")
    args.planner_names = args.planners.split(",")
    unknown = set(args.planner_names) - set(PLANNERS) - set(VARIANTS)
    if unknown:
        raise ValueError(f"--planners: unknown {sorted(unknown)}; known: {sorted(PLANNERS)}")
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")


def chunked(
    protocol: EvalProtocol, planner: Any, model: Any, n: int, size: int
) -> tuple[EpisodeResults, float]:
    """The ``n`` test episodes planned in chunks of ``size``; and the seconds it took."""
    start = time.perf_counter()
    parts = [
        evaluate(protocol, planner, model, "test", list(range(s, min(s + size, n))))
        for s in range(0, n, size)
    ]
    return EpisodeResults.concat(parts), time.perf_counter() - start


def compare(a: EpisodeResults, b: EpisodeResults) -> dict[str, Any]:
    """Flips of success and whether every deterministic field is bit-identical."""
    same = {
        f: bool(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)) for f in DETERMINISTIC
    }
    return {
        "flips": int((a.success != b.success).sum()),
        "identical": all(same.values()),
        "differing_fields": [f for f, ok in same.items() if not ok],
    }


def run(args: argparse.Namespace) -> int:
    """Evaluate every planner at every chunk size; print one line per planner."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    overrides = {"layout": args.layout} if args.env == "pointmaze" else {}
    protocol = EvalProtocol(
        env=args.env,
        env_overrides=overrides,
        horizon=args.horizon,
        seed=args.seed,
        tune_episodes=0,
        test_episodes=args.episodes,
    )
    model = OracleModel(protocol.make_env(), protocol.action_block)
    rows = []
    for name in args.planner_names:
        planner = (
            make_planner("grasp", GRASPConfig.reference())
            if name == "grasp_reference"
            else make_planner(name)
        )
        runs = {c: chunked(protocol, planner, model, args.episodes, c) for c in args.chunk_sizes}
        first = args.chunk_sizes[0]
        row: dict[str, Any] = {
            "planner": name,
            "success": {c: float(r.success.mean()) for c, (r, _) in runs.items()},
            "seconds": {c: s for c, (_, s) in runs.items()},
            "versus": {c: compare(runs[first][0], runs[c][0]) for c in args.chunk_sizes[1:]},
        }
        rows.append(row)
        parts = [
            f"chunk {first} vs {c}: {v['flips']} of {args.episodes} flip, "
            + (
                "bit-identical"
                if v["identical"]
                else "differ in " + ",".join(v["differing_fields"])
            )
            for c, v in row["versus"].items()
        ]
        rates = ", ".join(f"{100 * r:.1f}%" for r in row["success"].values())
        print(f"{name}: {'; '.join(parts)} (success {rates})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0
