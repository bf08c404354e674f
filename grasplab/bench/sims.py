"""``grasplab bench sims``: episodes per second executing plans in the real simulators.

For each simulator and worker count, one :meth:`~grasplab.envs.sim.Simulator.execute` call runs
a chunk of ``--episodes`` plans of ``--steps`` env steps (uniform random actions in the bounds,
from states drawn by the env's own reset) and is timed; the figure is the best of
``--repeats`` calls after one untimed warm-up round. The worker counts take turns call by call,
so that other load on a shared machine hits them alike; the ratio to 1 worker is the speed-up.
Every worker count must visit the same states. Rendering (``render`` of the start states) is
timed the same way. Needs the ``sims`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from grasplab.envs import make_sim, sim_names
from grasplab.moved import moved_names


def check(args: argparse.Namespace) -> None:
    """Validate ``grasplab bench sims``' options; ``sims`` and ``workers`` become lists.

    Raises:
        ValueError: An unknown simulator or a count below 1.
    """
    args.sims = args.sims.split(",") if args.sims else sim_names()
    unknown = sorted(set(args.sims) - set(sim_names()))
    if unknown:
        raise ValueError(f"unknown simulators {unknown}; known: {', '.join(sim_names())}")
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise ValueError("--workers must be comma-separated integers") from None
    if min(args.workers) < 1 or args.episodes < 1 or args.steps < 1 or args.repeats < 1:
        raise ValueError("--workers, --episodes, --steps and --repeats must be >= 1")


def _plans(sim: Any, args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    """Start and goal states ``(N, S)`` from the env's resets; random plans ``(N, T, A)``."""
    start = sim.random_states(args.episodes, seed=args.seed)
    goal = sim.random_states(args.episodes, seed=args.seed + args.episodes)
    u = np.random.default_rng(args.seed).random((args.episodes, args.steps, sim.action_dim))
    return start, goal, sim.action_low + u * (sim.action_high - sim.action_low)


def _timed(fn: Any) -> tuple[float, Any]:
    entered = time.perf_counter()
    out = fn()
    return time.perf_counter() - entered, out


def measure(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One simulator at every worker count, timed in alternation so that they share the load.

    Raises:
        SystemExit: When a worker count visits other states than the first one.
    """
    sims: dict[int, Any] = {}
    startup: dict[int, float] = {}
    try:
        for w in args.workers:
            startup[w], sims[w] = _timed(lambda w=w: make_sim(name, workers=w))
        start, goal, plans = _plans(sims[args.workers[0]], args)
        runs: dict[int, list[float]] = {w: [] for w in args.workers}
        frames: dict[int, list[float]] = {w: [] for w in args.workers}
        last: dict[int, Any] = {}
        for repeat in range(args.repeats + 1):  # the first round warms up, untimed
            for w, sim in sims.items():
                seconds, last[w] = _timed(lambda sim=sim: sim.execute(start, goal, plans))
                render, _ = _timed(lambda sim=sim: sim.render(start))
                if repeat:
                    runs[w].append(seconds)
                    frames[w].append(render)
    finally:
        for sim in sims.values():
            sim.close()
    first = last[args.workers[0]]
    for w in args.workers:
        if not np.array_equal(last[w].states, first.states):
            raise SystemExit(f"{name}: {w} workers visited other states than {args.workers[0]}")
    return [_row(name, w, startup[w], min(runs[w]), min(frames[w]), first, args) for w in sims]


def _row(
    name: str,
    workers: int,
    startup: float,
    seconds: float,
    render: float,
    execution: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    return {
        "sim": name,
        "workers": workers,
        "episodes": args.episodes,
        "steps": args.steps,
        "startup_s": startup,
        "execute_s": seconds,
        "episodes_per_s": args.episodes / seconds,
        "env_steps_per_s": args.episodes * args.steps / seconds,
        "frames_per_s": args.episodes / render,
        "success_rate": float(execution.success.any(axis=1).mean()),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows, with each row's speed-up over the 1-worker row."""
    base = {r["sim"]: r["episodes_per_s"] for r in rows if r["workers"] == 1}
    lines = [
        "| sim | workers | episodes/s | env steps/s | x 1 worker | frames/s | start-up s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["episodes_per_s"] / base[r["sim"]] if r["sim"] in base else float("nan")
        lines.append(
            f"| {r['sim']} | {r['workers']} | {r['episodes_per_s']:.1f} | "
            f"{r['env_steps_per_s']:.0f} | {ratio:.2f} | {r['frames_per_s']:.0f} | "
            f"{r['startup_s']:.1f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Measure on checked options (:func:`check`); print the figures and the table."""
    load = os.getloadavg()[0]
    rows = []
    for name in args.sims:
        rows += measure(name, args)
        for row in rows[-len(args.workers) :]:
            print(f"{name} workers={row['workers']}: {row['episodes_per_s']:.1f} episodes/s")
    print(
        f"\n{args.episodes} episodes x {args.steps} env steps per execute call, best of "
        f"{args.repeats} (worker counts alternate); load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end\n"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.bench_sims.main",
        "parse": "grasplab.cli.bench_sims.parse",
        "parser": "grasplab.cli.bench_sims.parser",
    },
)
