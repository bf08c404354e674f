"""``grasplab bench planners``: every planner on oracle models, plus the speed ratios.

Prints (1) per env and horizon a table ``success % [95% CI] / median time-to-success / model
steps`` for CEM, GD, MPPI, LatCo and GRASP at their default (field / authors') settings on the
held-out test goals, with the random-policy floor; (2) GRASP's iteration time over one batched
forward+backward of ``step`` over all ``B x H`` pairs; (3) CEM's iteration time over its
``(B*S) x H`` rollout forward; (4) one batched call on 50 problems vs 50 single calls.

``--model PATH`` measures (2) and (3) on a learned checkpoint instead of the oracle (e.g. a
1,024-d patch model, ``grasplab/world_models/checkpoints/wall-patch-b1``): the tasks' start and
goal observations (renders, for pixel models) are encoded by it, and GRASP's iteration time over
``--ratio-batch`` problems x ``--ratio-horizon`` steps is printed on its own (a ``sim:`` env's
checkpoint, e.g. ``pusht-patch-b1``: the simulator renders the tasks, and planners see actions
normalised to ``[-1, 1]`` as in the eval runner). The success table
and the batching comparison (oracle-only) are skipped. Iteration budgets, CEM's sample count and
the repeats are options, so that a costly model is timed in minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform as stdlib_platform
import sys
from typing import Any

import torch

from grasplab.bench.timing import best_time
from grasplab.eval import EvalProtocol, evaluate, format_cell, models, random_floor
from grasplab.eval.models import checkpoint_protocol
from grasplab.eval.runner import (
    normalized_actions,
    plan_problem,  # the runner's problem builder
    true_env,
)
from grasplab.moved import moved_names
from grasplab.planners import (
    PLANNERS,
    CEMConfig,
    GRASPConfig,
    PlanProblem,
    make_planner,
)
from grasplab.planners.sampling import terminal_state_time_major
from grasplab.planners.streams import EpisodeStreams, stream_key
from grasplab.world_models import OracleModel, WorldModel

ORDER = ["cem", "gd", "mppi", "latco", "grasp"]
LAYOUTS = {"pointmaze": {"layout": "medium"}, "wall": {}}
# Budgets for the batching measurement only (the ratio barely depends on iteration counts).
SPEEDUP_BUDGETS: dict[str, dict[str, Any]] = {
    "grasp": {"n_steps": 100, "sync_interval": 50},
    "cem": {"n_iterations": 5},
    "gd": {"n_steps": 50},
    "mppi": {"n_iterations": 3},
    "latco": {"n_steps": 100},
}


def check(args: argparse.Namespace) -> None:
    """Validate ``grasplab bench planners``' options (``--quick`` fills its cells in place).

    Raises:
        ValueError: An unknown planner or speed ratio.
    """
    if args.quick:
        args.envs, args.horizons, args.episodes = "pointmaze", "10,25", 10
    for name in args.planners.split(","):
        if name not in PLANNERS:
            raise ValueError(f"unknown planner {name!r}; known: {sorted(PLANNERS)}")
    if unknown := set(args.ratios.split(",")) - {"grasp", "cem"}:
        raise ValueError(f"--ratios: unknown {sorted(unknown)}; known: grasp, cem")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": stdlib_platform.processor() or stdlib_platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def protocol_for(env: str, horizon: int, episodes: int, seed: int) -> EvalProtocol:
    """Open-loop, 'ever within radius' protocol on held-out test goals."""
    return EvalProtocol(
        env=env,
        env_overrides=LAYOUTS.get(env, {}),
        horizon=horizon,
        seed=seed,
        tune_episodes=0,
        test_episodes=episodes,
    )


def success_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Evaluate every planner at every (env, horizon); print rows as they finish."""
    rows = []
    names = args.planners.split(",")
    for env in args.envs.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            try:
                protocol = protocol_for(env, horizon, args.episodes, args.seed)
                protocol.tasks("test")
            except ValueError as err:
                print(f"{env} H={horizon}: skipped ({err})", flush=True)
                continue
            model = OracleModel(protocol.make_env(), protocol.action_block)
            model.device = args.device
            floor = random_floor(protocol, "test", seed=args.seed).summary()
            row: dict[str, Any] = {"env": env, "horizon": horizon, "random": floor}
            for name in names:
                res = evaluate(protocol, make_planner(name), model, "test")
                row[name] = res.summary()
                print(f"{env} H={horizon} {name}: {cell(row[name])}", flush=True)
            rows.append(row)
    print_table(rows, names)
    return rows


def cell(m: dict[str, float]) -> str:
    """``success [CI] / tts / model steps``."""
    return f"{format_cell(m)} / {m['model_steps']:.3g} steps"


def print_table(rows: list[dict[str, Any]], names: list[str]) -> None:
    """Markdown table: one row per (env, horizon), one column per planner."""
    if not rows:
        return
    n = rows[0]["random"]["n"]
    print(f"\nsuccess % [95% Wilson CI] / median time-to-success / model steps (n={n} each)")
    print("| env | H | random | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in rows:
        rnd = f"{100 * r['random']['success_rate']:.0f}%"
        cells = " | ".join(cell(r[name]) for name in names)
        print(f"| {r['env']} | {r['horizon']} | {rnd} | {cells} |")


def load_model(path: str, device: str) -> tuple[WorldModel, EvalProtocol]:
    """A checkpoint (``--model``) by eval's loader, with the protocol of the env it learned."""
    protocol = checkpoint_protocol(path, tune_episodes=0, test_episodes=1)
    return models.load_model(path, protocol, device), protocol


def _problem(
    env: str,
    batch: int,
    horizon: int,
    device: str,
    learned: tuple[WorldModel, EvalProtocol] | None = None,
) -> PlanProblem:
    """``batch`` held-out test tasks as the problem the eval runner would plan.

    Through ``learned`` (:func:`load_model`), else the oracle of ``env``.
    """
    if learned is None:
        protocol = protocol_for(env, horizon, batch, 0)
        model: WorldModel = OracleModel(protocol.make_env(), 1)
    else:
        model, trained_on = learned
        protocol = dataclasses.replace(trained_on, horizon=horizon, test_episodes=batch)
    tasks = protocol.tasks("test").to(device)
    sim = protocol.make_sim() if protocol.is_sim else None  # renders the tasks (Push-T)
    try:
        true, planned = normalized_actions(true_env(protocol, sim), model)
        return plan_problem(protocol, true, planned, tasks.start, tasks.goal, horizon)
    finally:
        if sim is not None:
            sim.close()


def paired_per_iteration(
    runs: dict[str, Any], lo: int, hi: int, device: str, repeats: int = 5
) -> dict[str, float]:
    """Seconds per iteration of several loops, each by the same estimator, interleaved.

    ``runs[name](n)`` runs ``n`` iterations of one loop. Per loop: (best of ``repeats`` runs of
    ``hi`` iterations - best of ``repeats`` runs of ``lo``) / ``(hi - lo)``; the loops take turns
    within every repeat. So a planner's iteration and its model-call floor are measured over the
    same number of iterations, windows of similar length and the same stretch of machine load:
    a minimum over short windows (one floor call) is lower than a minimum over long ones (a
    whole planner run) on a machine with any other load, which biases a ratio of the two.
    """
    for run in runs.values():  # warm-up: allocator, caches, lazy initialisation
        run(lo)
    best: dict[tuple[str, int], float] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            for n in (lo, hi):
                t = best_time(lambda r=run, k=n: r(k), repeats=1, warmup=0, device=device)
                best[name, n] = min(best.get((name, n), float("inf")), t)
    return {name: (best[name, hi] - best[name, lo]) / (hi - lo) for name in runs}


def _against_floor(
    planner_run: Any,
    floor_call: Any,
    floor_key: str,
    budgets: tuple[int, int],
    device: str,
    repeats: int,
    single_repeats: int,
    single_warmup: int = 1,
) -> dict[str, float]:
    """A planner's iteration over its floor call, both by :func:`paired_per_iteration`.

    ``planner_run(n)`` plans with ``n`` iterations; ``floor_call()`` is one model call. Keys:
    ``iteration_s``, ``<floor_key>_s``, ``ratio``, and the floor as the best of single calls
    (``<floor_key>_single_s``, ``ratio_single``).
    """

    def floor_run(n: int) -> None:
        for _ in range(n):
            floor_call()

    per = paired_per_iteration(
        {"planner": planner_run, "floor": floor_run}, *budgets, device=device, repeats=repeats
    )
    single = best_time(floor_call, repeats=single_repeats, warmup=single_warmup, device=device)
    it, floor = per["planner"], per["floor"]
    return {
        "iteration_s": it,
        f"{floor_key}_s": floor,
        "ratio": it / floor,
        f"{floor_key}_single_s": single,
        "ratio_single": it / single,
    }


def grasp_ratio(
    env: str,
    batch: int,
    horizon: int,
    device: str,
    learned: Any = None,
    budgets: tuple[int, int] = (50, 250),
    repeats: int = 5,
    compile_losses: bool = False,
) -> dict[str, float]:
    """GRASP iteration time / one batched forward+backward of ``step`` over all B x H pairs.

    Both by :func:`paired_per_iteration`: GRASP's runs of ``budgets`` iterations (no sync)
    against the same numbers of consecutive forward+backward calls, interleaved.
    ``step_fwd_bwd_single_s`` / ``ratio_single`` give the floor as the best of single calls (the
    protocol before 2026-12-03), for comparison. ``compile_losses``: GRASP's ``torch.compile``
    option (compiled in the untimed warm-up); the floor stays the eager forward+backward.
    """
    p = _problem(env, batch, horizon, device, learned)
    base = GRASPConfig(sync_interval=0, compile_losses=compile_losses)
    D = p.model.state_dim
    states = p.z0.unsqueeze(1) + torch.zeros(batch, horizon, D, device=p.z0.device)
    actions = torch.zeros(batch, horizon, p.model.action_dim, device=p.z0.device)
    targets = states.clone().requires_grad_(True)
    a = actions.clone().requires_grad_(True)

    def forward_backward() -> None:
        loss = (p.model.step(states, a) - targets).pow(2).mean(-1).sum()
        loss.backward()

    def grasp_run(n: int) -> None:
        make_planner("grasp", dataclasses.replace(base, n_steps=n)).plan(p)

    return _against_floor(
        grasp_run, forward_backward, "step_fwd_bwd", budgets, device, repeats, 4 * repeats, 3
    )


def cem_ratio(
    env: str,
    batch: int,
    horizon: int,
    device: str,
    learned: Any = None,
    budgets: tuple[int, int] = (2, 12),
    samples: int = 300,
    repeats: int = 5,
) -> dict[str, float]:
    """CEM iteration time / the ``(B*S) x H`` rollout forward of its samples.

    Both by :func:`paired_per_iteration` (CEM's runs of ``budgets`` iterations against the same
    numbers of rollout forwards, interleaved); ``rollout_fwd_single_s`` / ``ratio_single``: the
    floor as the best of single forwards, for comparison.
    """
    p = _problem(env, batch, horizon, device, learned)
    base = CEMConfig(n_samples=samples, n_elites=max(1, samples // 10))
    S = base.n_samples
    z0 = p.z0.unsqueeze(1).expand(batch, S, -1)
    low, high = p.bounds()
    u = torch.rand(horizon, batch, S, p.model.action_dim, device=p.z0.device)
    samples_t = low + u * (high - low)  # time-major and contiguous: the fastest rollout layout

    def forward() -> None:
        with torch.no_grad():
            terminal_state_time_major(p.model, z0, samples_t)

    def cem_run(n: int) -> None:
        make_planner("cem", dataclasses.replace(base, n_iterations=n)).plan(p)

    return _against_floor(cem_run, forward, "rollout_fwd", budgets, device, repeats, repeats)


def streams_cost(
    env: str,
    batch: int,
    horizon: int,
    device: str,
    learned: Any = None,
    grasp_budgets: tuple[int, int] = (50, 250),
    cem_budgets: tuple[int, int] = (2, 12),
    samples: int = 300,
    repeats: int = 5,
) -> dict[str, float]:
    """The cost of per-episode random streams, as a ratio of iteration times.

    A planner iteration drawing from :class:`~grasplab.planners.streams.EpisodeStreams` (one
    stream per problem, what the eval runner passes) over the same iteration drawing from one
    ``torch.Generator``.

    GRASP (state noise every iteration, no sync) and CEM (``samples`` candidates per problem
    and iteration), each pair by :func:`paired_per_iteration` (interleaved, same estimator).
    Keys: ``<planner>_generator_s``, ``<planner>_streams_s``, ``<planner>_ratio``.
    """
    p = _problem(env, batch, horizon, device, learned)
    grasp = GRASPConfig(sync_interval=0)
    cem = CEMConfig(n_samples=samples, n_elites=max(1, samples // 10))

    def source(streams: bool) -> Any:
        if streams:
            return EpisodeStreams([stream_key(0, 2, i, 0) for i in range(batch)], device)
        return torch.Generator(device=device).manual_seed(0)

    def planner_run(kind: str, config: Any, field: str, streams: bool) -> Any:
        def go(n: int) -> None:
            planner = make_planner(kind, dataclasses.replace(config, **{field: n}))
            planner.plan(p, generator=source(streams))

        return go

    out: dict[str, float] = {}
    for kind, config, field, budgets in (
        ("grasp", grasp, "n_steps", grasp_budgets),
        ("cem", cem, "n_iterations", cem_budgets),
    ):
        runs = {
            "generator": planner_run(kind, config, field, False),
            "streams": planner_run(kind, config, field, True),
        }
        per = paired_per_iteration(runs, *budgets, device, repeats)
        out[f"{kind}_generator_s"] = per["generator"]
        out[f"{kind}_streams_s"] = per["streams"]
        out[f"{kind}_ratio"] = per["streams"] / per["generator"]
    return out


def batch_speedup(env: str, batch: int, horizon: int, device: str) -> dict[str, dict]:
    """Per planner: time of ``batch`` single-problem calls / one call on all of them."""
    p = _problem(env, batch, horizon, device)
    out = {}
    for name, budget in SPEEDUP_BUDGETS.items():
        planner = make_planner(name, budget)
        joint = best_time(lambda pl=planner: pl.plan(p), repeats=3, device=device)

        def singles(pl=planner) -> None:
            for b in range(batch):
                pl.plan(dataclasses.replace(p, z0=p.z0[b : b + 1], goal=p.goal[b : b + 1]))

        single = best_time(singles, repeats=1, warmup=0, device=device)
        out[name] = {"one_call_s": joint, "single_calls_s": single, "speedup": single / joint}
        print(
            f"batching {name}: {out[name]['speedup']:.1f}x ({single:.2f} s / {joint:.3f} s)",
            flush=True,
        )
    return out


def _budgets(text: str) -> tuple[int, int]:
    lo, hi = (int(x) for x in text.split(","))
    return lo, hi


def speed_ratios(args: argparse.Namespace, env: str, learned: Any) -> dict[str, Any]:
    """GRASP's and/or CEM's (``--ratios``) iteration time over their model-call floors."""
    B, H, device = args.ratio_batch, args.ratio_horizon, args.device
    figures: dict[str, Any] = {}
    which = args.ratios.split(",")
    if "grasp" in which:
        figures["grasp_ratio"] = grasp_ratio(
            env,
            B,
            H,
            device,
            learned,
            _budgets(args.grasp_budgets),
            args.repeats,
            args.grasp_compile,
        )
        g = figures["grasp_ratio"]
        print(
            f"GRASP iteration over B*H={B}*{H}: {1000 * g['iteration_s']:.1f} ms; / batched step "
            f"fwd+bwd over the same pairs ({1000 * g['step_fwd_bwd_s']:.1f} ms, same estimator, "
            f"interleaved): {g['ratio']:.2f}x (target <= {1.3 if learned is not None else 1.5}x: "
            f"BENCHMARKS {7 if learned is not None else 1}); / the best single fwd+bwd "
            f"({1000 * g['step_fwd_bwd_single_s']:.1f} ms): {g['ratio_single']:.2f}x",
            flush=True,
        )
    if args.streams_cost:
        figures["streams_cost"] = streams_cost(
            env,
            B,
            H,
            device,
            learned,
            _budgets(args.grasp_budgets),
            _budgets(args.cem_budgets),
            args.cem_samples,
            args.repeats,
        )
        s = figures["streams_cost"]
        print(
            f"per-episode random streams (B={B}, H={H}): GRASP iteration "
            f"{1000 * s['grasp_streams_s']:.2f} ms vs {1000 * s['grasp_generator_s']:.2f} ms with "
            f"one generator = {s['grasp_ratio']:.3f}x; CEM (S={args.cem_samples}) "
            f"{1000 * s['cem_streams_s']:.2f} ms vs {1000 * s['cem_generator_s']:.2f} ms = "
            f"{s['cem_ratio']:.3f}x (target <= 1.05x)",
            flush=True,
        )
    if "cem" not in which:
        return figures
    figures["cem_ratio"] = cem_ratio(
        env, B, H, device, learned, _budgets(args.cem_budgets), args.cem_samples, args.repeats
    )
    c = figures["cem_ratio"]
    print(
        f"CEM iteration / (B*S)*H rollout forward (B={B}, S={args.cem_samples}, H={H}): "
        f"{1000 * c['iteration_s']:.1f} ms / {1000 * c['rollout_fwd_s']:.1f} ms = "
        f"{c['ratio']:.2f}x (target <= 1.05x); / the best single forward "
        f"({1000 * c['rollout_fwd_single_s']:.1f} ms): {c['ratio_single']:.2f}x",
        flush=True,
    )
    return figures


def run(args: argparse.Namespace) -> int:
    """Run the benchmark on checked options (:func:`check`) and print its figures."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    figures: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    figures["machine"]["loadavg"] = os.getloadavg()
    print(json.dumps(figures["machine"]))
    learned = load_model(args.model, args.device) if args.model else None
    if not args.skip_table and learned is None:
        figures["table"] = success_table(args)
    env = args.envs.split(",")[0]
    figures.update(speed_ratios(args, env, learned))
    if learned is None:
        figures["batching"] = batch_speedup(env, 50, 25, args.device)
    figures["machine"]["loadavg_end"] = os.getloadavg()
    print(f"load average at start {figures['machine']['loadavg']}, at end {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1, default=float)
    return 0


__getattr__ = moved_names(
    __name__,
    {"main": "grasplab.cli.bench_planners.main", "parse": "grasplab.cli.bench_planners.parse"},
)
