"""``grasplab bench platform``: what the platform costs and how it scales.

- Overhead of a sweep: ``(workers x sweep time - worker compute) / worker compute``, the share of
  the pool's time not spent planning or scoring (Tune, trial dispatch, MLflow logging, the
  report, idle tails). With one worker this is exactly ``(sweep wall - sum of trial compute) /
  sum of trial compute``. The sweep time excludes starting Ray (printed separately).
- Scaling: episodes/s through the pool (dispatcher -> workers) with 1 and k workers on a fixed
  workload, as ``eps(k) / (k x eps(1))``.
- Driver time per trial result: Tune's processing of one result on the driver (scheduler,
  searcher, callbacks, checkpoint bookkeeping), and the MLflow TrialLogger's share of it; plus
  a count of Tune's "performance bottleneck" warnings during the sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ray

from grasplab.moved import moved_names
from grasplab.platform import runtime, sweep
from grasplab.platform.config import ConfigError, load
from grasplab.platform.trial import chunk_indices, evaluate_chunks
from grasplab.platform.workers import Placement, plan_placement, request_capacity, start_pool


def scaling_run(spec: Any, workers: int, chunks: int) -> dict[str, Any]:
    """Episodes/s of ``chunks`` chunks of the first planner's base config through ``workers``."""
    placement = plan_placement(ray.cluster_resources(), workers, 0.05)
    return {"workers": workers, **pool_throughput(spec, placement, chunks, f"bench-{workers}")}


class DriverTimer(logging.Handler):
    """Times Tune's processing of each trial result on the driver; counts slowness warnings.

    A benchmark instrument: while active, ``TuneController._process_trial_result`` (scheduler,
    searcher, callbacks and checkpoint bookkeeping of one result) is timed, and Tune's
    "may be a performance bottleneck" warnings are counted.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seconds: list[float] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Count a Tune slowness warning."""
        message = record.getMessage()
        if "performance bottleneck" in message:
            self.warnings.append(message)

    @contextlib.contextmanager
    def active(self) -> Iterator[DriverTimer]:
        """Instrument Tune's controller (and restore it on exit)."""
        from ray.tune.execution.tune_controller import TuneController

        original = TuneController._process_trial_result
        seconds = self.seconds

        def timed(controller: Any, trial: Any, result: dict) -> Any:
            start = time.perf_counter()
            try:
                return original(controller, trial, result)
            finally:
                seconds.append(time.perf_counter() - start)

        loggers = [logging.getLogger(n) for n in ("ray.tune", "ray.tune.utils.util")]
        TuneController._process_trial_result = timed
        for logger in loggers:
            logger.addHandler(self)
        try:
            yield self
        finally:
            TuneController._process_trial_result = original
            for logger in loggers:
                logger.removeHandler(self)


def spread(seconds: Sequence[float]) -> str:
    """``mean 1.2 ms, p95 3.4 ms, max 5.6 ms (n=7)`` of durations in seconds."""
    if not seconds:
        return "no results"
    values = sorted(seconds)
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return (
        f"mean {1000 * statistics.fmean(values):.2f} ms, p95 {1000 * p95:.2f} ms, "
        f"max {1000 * values[-1]:.2f} ms (n={len(values)})"
    )


def overhead_run(overrides: Sequence[str], workers: int | None) -> dict[str, Any]:
    """Run a sweep (default experiment unless overridden) and measure its overhead.

    Also the driver's time per trial result: Tune's whole processing of it (timed around
    ``TuneController._process_trial_result``) and the share of the TrialLogger callback
    (MLflow writes are queued), and Tune's "performance bottleneck" warnings.
    """
    spec, state = sweep.prepare([*overrides, "name=bench_platform"], Path.cwd())
    timer = DriverTimer()
    with timer.active():
        result = sweep.run_sweep(spec, state, progress=False, num_workers=workers)
    pool_time = result.num_workers * result.tune_time
    return {
        "workers": result.num_workers,
        "sweep_s": result.tune_time,
        "wall_s": result.wall_time,
        "compute_s": result.trial_compute,
        "overhead": (pool_time - result.trial_compute) / result.trial_compute,
        "trials": sum(len(o.trials) for o in result.outcomes),
        "tune_result_s": timer.seconds,
        "callback_s": result.extras.get("driver_callback_s", []),
        "bottleneck_warnings": timer.warnings,
        **result.extras.get("phases", {}),
    }


def run(args: argparse.Namespace) -> int:
    """Print the overhead and scaling figures (2 on a bad override)."""
    try:
        spec = load(args.overrides)
    except ConfigError as error:
        print(f"grasplab bench platform: error: {error}", file=sys.stderr)
        return 2
    runtime.quiet_environment()
    start = time.perf_counter()
    runtime.connect(spec.cluster)
    print(f"ray start: {time.perf_counter() - start:.1f} s; resources {ray.cluster_resources()}")
    print(f"load average: {os.getloadavg()}")
    if args.nodes:
        ray.shutdown()
        cluster_bench(spec, args.nodes, args.chunks, args.gpu_nodes)
        print(f"load average: {os.getloadavg()}")
        return 0
    if not args.skip_scaling:
        print_scaling(spec, [int(k) for k in args.workers.split(",")], args.chunks)
    if not args.skip_sweep:
        o = overhead_run(args.overrides, args.sweep_workers)
        print(
            f"sweep: {o['trials']} trials, {o['workers']} workers, {o['sweep_s']:.1f} s "
            f"(wall incl. Ray/MLflow/pool start {o['wall_s']:.1f} s), worker compute "
            f"{o['compute_s']:.1f} s -> overhead {100 * o['overhead']:.1f}% (target <= 2%)"
        )
        print(
            f"sweep phases: tuning {o.get('tuning_s', 0):.1f} s, test-goal evaluation "
            f"{o.get('testing_s', 0):.1f} s, report (table, plots, GIFs) "
            f"{o.get('report_s', 0):.1f} s"
        )
        print(
            f"driver time per trial result (Tune's processing, all callbacks included): "
            f"{spread(o['tune_result_s'])} (target < 50 ms); of which the MLflow TrialLogger: "
            f"{spread(o['callback_s'])}"
        )
        warned = o["bottleneck_warnings"]
        print(
            f"Tune 'performance bottleneck' warnings: {len(warned)}"
            + (f" (first: {warned[0]})" if warned else "")
        )
    print(f"load average: {os.getloadavg()}")
    ray.shutdown()
    return 0


def print_scaling(spec: Any, counts: list[int], chunks: int) -> None:
    """Measure and print episodes/s per worker count and the scaling ratio."""
    runs = {k: scaling_run(spec, k, chunks) for k in counts}
    base = runs[min(counts)]["episodes_per_s"] / min(counts)
    for k, run in runs.items():
        ratio = run["episodes_per_s"] / (k * base)
        print(
            f"scaling: {k} worker(s): {run['episodes']} episodes in {run['seconds']:.1f} s = "
            f"{run['episodes_per_s']:.2f} episodes/s; ratio to {k} x 1 worker: {ratio:.2f} "
            f"(target >= 0.95); CPU of the {os.cpu_count()} cores: workers "
            f"{100 * run['worker_cpu_share']:.1f}%, driver + Ray's processes "
            f"{100 * run['ray_cpu_share']:.1f}%, other jobs {100 * run['other_cpu_share']:.1f}%"
        )


RAY_PROCESSES = ("raylet", "gcs_server", "ray::", "ray/", "dashboard", "log_monitor", "monitor.py")
"""Command-line fragments of Ray's own processes (idle workers, raylet, GCS, agents)."""


def process_kind(pid: int, title: str) -> str:
    """``worker`` (a world-model worker), ``ray`` (the driver or Ray's own), or ``other``."""
    if "WorldModelWorker" in title:
        return "worker"
    if pid == os.getpid() or any(part in title for part in RAY_PROCESSES):
        return "ray"
    return "other"


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Per process on this machine: its :func:`process_kind` and user + system CPU seconds."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is None:
            continue
        title = " ".join(proc.info.get("cmdline") or []) or (proc.info.get("name") or "")
        out[proc.pid] = (process_kind(proc.pid, title), float(times.user + times.system))
    return out


def cpu_split(before: dict[int, tuple[str, float]], elapsed: float) -> dict[str, float]:
    """Where the machine's CPU went since ``before``, as shares of all cores over ``elapsed``.

    ``worker_cpu_share``: the world-model workers; ``ray_cpu_share``: this driver and Ray's own
    processes (raylet, GCS, idle workers, agents); ``other_cpu_share``: everything else.
    """
    spent = {"worker": 0.0, "ray": 0.0, "other": 0.0}
    for pid, (kind, seconds) in cpu_seconds().items():
        spent[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    capacity = (os.cpu_count() or 1) * elapsed
    return {f"{kind}_cpu_share": value / capacity for kind, value in spent.items()}


def pool_throughput(spec: Any, placement: Placement, chunks: int, prefix: str) -> dict[str, Any]:
    """Episodes/s of ``chunks`` chunks through a pool of ``placement`` on the connected cluster.

    The first planner's base config on the tuning episodes, after one warm-up chunk per worker.
    """
    pool = start_pool(f"{prefix}-{os.getpid()}", placement, "grasplab", timeout=300)
    planner = spec.planners[0]
    context = {
        "planner": planner.name,
        "protocol": spec.protocol.to_dict(),
        "world_model": spec.world_model,
    }
    config = planner.trial_config({})
    indices = chunk_indices(spec.protocol.tune_episodes, spec.sweep.chunk_size)
    try:
        warm = indices[: placement.num_workers]
        ray.get(evaluate_chunks(pool.dispatcher, context, config, "tune", warm))
        work = [indices[i % len(indices)] for i in range(chunks)]
        before = cpu_seconds()
        start = time.perf_counter()
        outputs = ray.get(evaluate_chunks(pool.dispatcher, context, config, "tune", work))
        elapsed = time.perf_counter() - start
        cpu = cpu_split(before, elapsed)
        nodes = {s["node"] for s in pool.stats()}
    finally:
        pool.shutdown()
    episodes = sum(len(o["records"]) for o in outputs)
    return {
        "episodes": episodes,
        "seconds": elapsed,
        "episodes_per_s": episodes / elapsed,
        "compute_s": sum(o["compute_s"] for o in outputs),
        "nodes": nodes,
        **cpu,
    }


def cluster_bench(spec: Any, max_nodes: int, chunks: int, gpu_nodes: int = 2) -> None:
    """Scaling over simulated worker nodes, then autoscaled placement time (printed)."""
    from grasplab.platform.simcluster import fake_autoscaling_cluster, local_cluster

    base = None
    for k in range(1, max_nodes + 1):
        # a head without CPUs: the one 1-CPU worker per node lands on the worker nodes
        with local_cluster(head_cpus=0, worker_cpus=[1] * k) as cluster:
            runtime.connect({"address": cluster.address})
            try:
                run = pool_throughput(spec, Placement(k, 1.0, 0, 1), chunks, f"nodes-{k}")
            finally:
                ray.shutdown()
        base = base or run["episodes_per_s"]
        print(
            f"cluster scaling: {k} worker node(s) ({len(run['nodes'])} used): "
            f"{run['episodes']} episodes in {run['seconds']:.1f} s = {run['episodes_per_s']:.2f} "
            f"episodes/s; ratio to {k} x 1 node: {run['episodes_per_s'] / (k * base):.2f}"
        )
    with fake_autoscaling_cluster(gpu_nodes=gpu_nodes, head_cpus=2) as cluster:
        runtime.connect({"address": cluster["address"]})
        try:
            placement = Placement(gpu_nodes, 1.0, 1.0, 1, "cpu")
            request_capacity(placement)
            pool = start_pool(f"autoscaled-{os.getpid()}", placement, "grasplab", timeout=300)
            placed = pool.placed_s
            nodes = {s["node"] for s in pool.stats()}
            pool.shutdown()
            request_capacity(None)
        finally:
            ray.shutdown()
    print(
        f"autoscaled placement: {gpu_nodes} GPU workers ({placement.describe()}) on a cluster "
        f"that had 0 GPU nodes: all placed after {placed:.1f} s on {len(nodes)} launched nodes"
    )


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.bench_platform.main",
        "parse_args": "grasplab.cli.bench_platform.parser",
    },
)
