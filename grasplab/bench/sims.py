"""``grasplab bench sims``: episodes per second executing plans in the real simulators.

For each simulator and worker count, one :meth:`~grasplab.envs.sim.Simulator.execute` call runs
a chunk of ``--episodes`` plans of ``--steps`` env steps (uniform random actions in the bounds,
from states drawn by the env's own reset) and is timed; the figure is the best of
``--repeats`` calls after one untimed warm-up (robust to other load on a shared machine). The
2-worker run's visited states must equal the 1-worker run's. Rendering (``render`` of the start
states) is timed the same way. Needs the ``sims`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from grasplab.bench.timing import best_time
from grasplab.envs import make_sim, sim_names


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``grasplab bench sims``."""
    p = argparse.ArgumentParser(prog="grasplab bench sims", description=__doc__)
    p.add_argument("--sims", default=",".join(sim_names()), help="comma-separated names")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--episodes", type=int, default=64, help="episodes per execute call")
    p.add_argument("--steps", type=int, default=100, help="env steps per episode")
    p.add_argument("--repeats", type=int, default=3, help="timed calls (the best counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the rows to this file")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options, validated (``SystemExit(2)`` with one line on bad input)."""
    p = parser()
    args = p.parse_args(argv)
    args.sims = args.sims.split(",")
    unknown = sorted(set(args.sims) - set(sim_names()))
    if unknown:
        p.error(f"unknown simulators {unknown}; known: {', '.join(sim_names())}")
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error("--workers must be comma-separated integers")
    if min(args.workers) < 1 or args.episodes < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--workers, --episodes, --steps and --repeats must be >= 1")
    return args


def measure(name: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One simulator at one worker count: start-up, execute and render speeds."""
    entered = time.perf_counter()
    with make_sim(name, workers=workers) as sim:
        startup = time.perf_counter() - entered
        start = sim.random_states(args.episodes, seed=args.seed)
        goal = sim.random_states(args.episodes, seed=args.seed + args.episodes)
        u = np.random.default_rng(args.seed).random((args.episodes, args.steps, sim.action_dim))
        plans = sim.action_low + u * (sim.action_high - sim.action_low)
        last: list[Any] = []

        def run() -> None:
            last[:] = [sim.execute(start, goal, plans)]

        seconds = best_time(run, repeats=args.repeats)
        render = best_time(lambda: sim.render(start), repeats=args.repeats)
        states = last[0].states
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
        "success_rate": float(last[0].success.any(axis=1).mean()),
        "_states": states,
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


def main(argv: list[str]) -> int:
    """Entry point of ``grasplab bench sims``."""
    args = parse(argv)
    rows = []
    for name in args.sims:
        reference = None
        for workers in args.workers:
            row = measure(name, workers, args)
            states = row.pop("_states")
            if reference is None:
                reference = states
            elif not np.array_equal(states, reference):
                raise SystemExit(f"{name}: {workers} workers visited other states than 1")
            rows.append(row)
            print(f"{name} workers={workers}: {row['episodes_per_s']:.1f} episodes/s", flush=True)
    print(
        f"\n{args.episodes} episodes x {args.steps} env steps per execute call, best of "
        f"{args.repeats}; load average {os.getloadavg()[0]:.2f}\n"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
