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
- Cost per trial (``--trials N``): a sweep of N tiny trials (``env=ballnav protocol=tiny
  report.gif=false``, 2 workers unless overridden): sweep seconds per trial, the driver's peak
  resident memory, the size of Tune's experiment-state file, the bytes the driver and its
  process tree wrote to disk, and the driver's longest stall (a heartbeat thread's longest gap).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import statistics
import sys
import threading
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
        self.first: float | None = None
        self.last: float | None = None
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
            self.first = self.first or start
            try:
                return original(controller, trial, result)
            finally:
                self.last = time.perf_counter()
                seconds.append(self.last - start)

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


MAX_TRIALS = 100_000
"""Most trials ``--trials`` accepts (the driver keeps a record of every trial: Optuna's studies,
the search's history, the pick's results)."""
DRIVER_BYTES_PER_TRIAL = 128 * 1024
"""Driver memory budgeted per trial when checking ``--trials`` against the free memory: over
four times the measured growth (2026-12-05, ``ccf652d``: 0.84 GB peak for 10,002 trials over a
0.56 GB start, 28 KB a trial; 56 KB before a stage ran in parts)."""
SCALE_OVERRIDES = ("env=ballnav", "protocol=tiny", "report.gif=false")
"""Defaults of the ``--trials`` sweep (command-line overrides come after and win)."""


def trials_bound() -> int:
    """Most trials this machine can hold: :data:`MAX_TRIALS`, or fewer if memory is short."""
    import psutil

    return int(min(MAX_TRIALS, psutil.virtual_memory().available // DRIVER_BYTES_PER_TRIAL))


def check_trials(trials: int) -> str | None:
    """Why ``--trials`` is out of range, or None."""
    if trials < 1:
        return f"--trials must be at least 1, got {trials}"
    bound = trials_bound()
    if trials > bound:
        return (
            f"--trials {trials} is more than this machine can hold ({bound}: at most "
            f"{MAX_TRIALS}, and {DRIVER_BYTES_PER_TRIAL // 1024} KB of free memory per trial)"
        )
    return None


def samples_for(spec: Any, trials: int) -> int:
    """``sweep.num_samples`` that makes a sweep of about ``trials`` trials in all."""
    searched = sum(1 for st in spec.stages() for p in st.planners if p.tune_space())
    fixed = sum(1 for st in spec.stages() for p in st.planners if not p.tune_space())
    if not searched:
        return 1
    return max(1, math.ceil((trials - fixed) / searched))


class Heartbeat:
    """A driver-side thread that wakes every ``tick`` seconds and keeps its longest gap.

    Any gap beyond ``tick`` is time the driver's interpreter did not let the thread run: a
    stall (Tune writing its state, a long callback). Also samples, every ``sample_every``
    seconds, the bytes written to disk by this process and its descendants (``/proc/<pid>/io``
    ``write_bytes``; a process's last sample counts once it has exited).
    """

    def __init__(self, tick: float = 0.01, sample_every: float = 1.0) -> None:
        self.tick = tick
        self.sample_every = sample_every
        self.max_gap = 0.0
        self.stalls_over_100ms = 0
        self.stalls: list[tuple[float, float]] = []
        self.rss: list[tuple[float, int]] = []
        self.gc_pauses: list[tuple[float, float]] = []
        self._gc_start = 0.0
        self.written: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-heartbeat", daemon=True)

    def _run(self) -> None:
        last = last_sample = time.perf_counter()
        while not self._stop.wait(self.tick):
            now = time.perf_counter()
            gap = now - last - self.tick
            self.max_gap = max(self.max_gap, gap)
            self.stalls_over_100ms += gap > 0.1
            if gap > 0.1:
                self.stalls.append((now, gap))
            last = now
            if now - last_sample >= self.sample_every:
                self.sample()
                last_sample = time.perf_counter()
                last = last_sample

    def sample(self) -> None:
        """Record the write_bytes of this process and every descendant now alive."""
        import psutil

        me = psutil.Process()
        with contextlib.suppress(psutil.Error, OSError):
            self.rss.append((time.perf_counter(), int(me.memory_info().rss)))
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error, OSError):
                title = " ".join(proc.cmdline()) or proc.name()  # Ray retitles reused workers
                kind = writer_kind(proc.pid == me.pid, title)
                if self.kinds.get(proc.pid) in (None, "Ray's processes"):
                    self.kinds[proc.pid] = kind
                self.written[proc.pid] = int(proc.io_counters().write_bytes)

    @property
    def bytes_written(self) -> int:
        """Bytes written to disk by the driver's process tree, as last sampled."""
        return sum(self.written.values())

    def written_by(self) -> dict[str, int]:
        """:attr:`bytes_written` split by :func:`writer_kind`, largest first."""
        out: dict[str, int] = {}
        for pid, written in self.written.items():
            kind = self.kinds.get(pid, "Ray's processes")
            out[kind] = out.get(kind, 0) + written
        return dict(sorted(out.items(), key=lambda item: -item[1]))

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: the pauses of the full (generation 2) collections."""
        if info.get("generation") != 2:
            return
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        else:
            self.gc_pauses.append((now, now - self._gc_start))

    def __enter__(self) -> Heartbeat:
        import gc

        gc.callbacks.append(self._gc)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._gc)
        self.sample()
        self._stop.set()
        self._thread.join()


def writer_kind(driver: bool, title: str) -> str:
    """Which part of a sweep a process of the driver's tree is, by its title.

    ``driver`` (Tune's loop, the MLflow writer of an embedded store, Tune's state), ``trials``
    (Tune's trial processes: checkpoints, results), ``pool workers`` (the world-model workers),
    ``Ray's processes`` (raylet, GCS, agents, logs).
    """
    if driver:
        return "driver"
    if "WorldModelWorker" in title:
        return "pool workers"
    if "ImplicitFunc" in title or "run_trial" in title:
        return "trials"
    return "Ray's processes"


def state_file_bytes(folder: Path) -> tuple[int, int]:
    """``(bytes, trials)`` of the largest Tune ``experiment_state-*.json`` under a sweep folder.

    A stage of more than ``sweep.segment_trials`` trials has one such file per part.
    """
    files = list(folder.rglob("experiment_state-*.json"))
    if not files:
        return 0, 0
    largest = max(files, key=lambda f: f.stat().st_size)
    trials = len(json.loads(largest.read_text()).get("trial_data", []))
    return largest.stat().st_size, trials


def scale_run(trials: int, overrides: Sequence[str], workers: int) -> dict[str, Any]:
    """A sweep of about ``trials`` tiny trials; its cost per trial and the driver's figures."""
    base = [*SCALE_OVERRIDES, *overrides]
    samples = samples_for(load(base), trials)
    spec, state = sweep.prepare(
        [*base, f"sweep.num_samples={samples}", "name=bench_scale"], Path.cwd()
    )
    timer = DriverTimer()
    with Heartbeat() as beat, timer.active():
        result = sweep.run_sweep(spec, state, progress=False, num_workers=workers)
    done = sum(len(o.trials) for o in result.outcomes)
    phases = result.extras.get("phases", {})
    first, last = timer.first or math.inf, timer.last or -math.inf
    tuning = [gap for at, gap in beat.stalls if first <= at - gap and at <= last]
    return {
        "trials": done,
        "sweep_id": state.sweep_id,
        "workers": result.num_workers,
        "sweep_s": result.tune_time,
        "compute_s": result.trial_compute,
        "tuning_s": phases.get("tuning_s", math.nan),
        "wall_s": result.wall_time,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "state_bytes": state_file_bytes(Path(state.folder))[0],
        "state_trials": state_file_bytes(Path(state.folder))[1],
        "written": beat.bytes_written,
        "written_by": beat.written_by(),
        "max_stall_s": beat.max_gap,
        "stalls_over_100ms": beat.stalls_over_100ms,
        "tuning_stalls": tuning,
        "tuning_gc": [pause for at, pause in beat.gc_pauses if first <= at <= last],
        "tuning_rss": max((r for at, r in beat.rss if first <= at <= last), default=0),
        "tune_result_s": timer.seconds,
        "bottleneck_warnings": timer.warnings,
        "gates": result.extras.get("pool", {}).get("gates", {}),
        "trial_processes": sum(kind == "trials" for kind in beat.kinds.values()),
    }


STORE_END_TAGS = ("early_stopped", "episodes_scored", "chunks", "mlflow.loggedArtifacts")
"""Tags a trial run gets when it ends (:meth:`~grasplab.platform.tracking.Tracker.finish`)."""


def a_trial_run(spec: Any, sweep_id: str) -> Any:
    """A plain complete trial run of the sweep ``sweep_id`` with the most params, or None.

    The variant with the largest config (GRASP's) costs the store the most per trial; among its
    runs, one with the fewest metrics: a trial as most are, not one of the few the pick
    re-scored on fresh goals (they carry more metrics and tags).
    """
    from mlflow import MlflowClient

    from grasplab.platform.tracking import ROLE, SWEEP_ID

    client = MlflowClient(tracking_uri=sweep.tracking_of(spec, Path.cwd())[0])
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`{SWEEP_ID}` = '{sweep_id}' AND tags.`{ROLE}` = 'trial' "
        "AND tags.early_stopped = 'false'",
        max_results=200,
    )
    return max(found, key=lambda r: (len(r.data.params), -len(r.data.metrics)), default=None)


def replay_cost(run: Any, runs: int, folder: Path, bare: bool = False) -> dict[str, Any]:
    """What an embedded MLflow store writes to disk per trial run, measured by replaying ``run``.

    A fresh store in ``folder``, set up as the sweep's (:func:`~grasplab.platform.tracking.
    use_wal`: write-ahead log, 1 KB pages), gets a parent run and ``runs`` child runs made with
    the sweep's own calls (:meth:`~grasplab.platform.tracking.Tracker.child` with ``run``'s
    params and tags, :meth:`~grasplab.platform.tracking.Tracker.finish` with its end tags and
    metrics; no artifacts). The bytes are this process's ``write_bytes`` from the first run to
    the log's last fold into the database. ``bare``: the smallest useful trial run instead,
    for the floor: the tags the sweep must add (parent, trial key, sweep id, role; MLflow adds
    the run name), the tuned params only and two metrics (``success_rate``,
    ``episodes_scored``).
    """
    import psutil

    from grasplab.platform.tracking import Tracker, fold_log

    tags = {k: v for k, v in run.data.tags.items() if not k.startswith(("mlflow.", "grasplab."))}
    end = {k: run.data.tags[k] for k in STORE_END_TAGS if k in run.data.tags}
    tags = {k: v for k, v in tags.items() if k not in end}
    params, metrics = dict(run.data.params), dict(run.data.metrics)
    if bare:
        params = {k: params[k] for k in json.loads(tags.get("tuned", "[]")) if k in params}
        metrics = {k: metrics[k] for k in ("success_rate", "episodes_scored") if k in metrics}
        tags, end = {}, {}
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables..."
    tracker = Tracker(uri, "store-bench")
    parent = tracker.start_parent("store-bench", "store-bench", {})
    me = psutil.Process()
    before, start = me.io_counters().write_bytes, time.perf_counter()
    made = ""
    for i in range(runs):
        made = tracker.child(f"store-bench/replay/{i}", f"replay-{i}", params, tags)
        tracker.finish(made, "FINISHED", end, metrics, step=1)
    seconds = time.perf_counter() - start
    shape = tracker.client.get_run(made).data if made else None
    tracker.end(parent)
    fold_log(uri)
    return {
        "runs": runs,
        "bytes": me.io_counters().write_bytes - before,
        "seconds": seconds,
        "params": len(shape.params) if shape else 0,
        "tags": len(shape.tags) if shape else 0,
        "metrics": len(shape.metrics) if shape else 0,
    }


def store_cost(spec: Any, sweep_id: str, runs: int) -> dict[str, Any]:
    """:func:`replay_cost` of a complete trial run of the sweep, as it is and bare."""
    import shutil
    import tempfile

    run = a_trial_run(spec, sweep_id)
    if run is None:
        return {}
    out = {}
    for bare in (False, True):
        folder = Path(tempfile.mkdtemp(prefix=".store-bench-", dir=Path.cwd()))
        try:
            out["bare" if bare else "trial"] = replay_cost(run, runs, folder, bare)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return out


def print_store(cost: dict[str, Any]) -> None:
    """Print the figures of :func:`store_cost`."""
    if not cost:
        print("tracking store: no complete trial run to replay")
        return
    for kind, title in (("trial", "a trial run of this sweep"), ("bare", "a bare trial run")):
        c = cost[kind]
        n = max(1, c["runs"])
        print(
            f"tracking store (embedded SQLite, set up as the sweep's), {title} "
            f"({c['tags']} tags, {c['params']} params, {c['metrics']} metrics) made {c['runs']} "
            f"times: {c['bytes'] / n / 1024:.0f} KB written a run ({c['bytes'] / 2**20:.0f} MB), "
            f"{1000 * c['seconds'] / n:.1f} ms a run"
        )


def print_scale(o: dict[str, Any]) -> None:
    """Print the figures of :func:`scale_run`."""
    n = max(1, o["trials"])
    print(
        f"trials: {o['trials']} on {o['workers']} workers: sweep {o['sweep_s']:.1f} s = "
        f"{o['sweep_s'] / n:.3f} s/trial (tuning {o['tuning_s']:.1f} s = "
        f"{o['tuning_s'] / n:.3f} s/trial; wall incl. Ray start {o['wall_s']:.1f} s)"
    )
    pool = o["workers"] * o["sweep_s"]
    print(
        f"worker compute {o['compute_s']:.1f} s = {o['compute_s'] / n:.3f} s/trial (planning "
        f"and scoring); the rest of the pool's {pool:.1f} worker-seconds, "
        f"{(pool - o['compute_s']) / n:.3f} s/trial, is the fixed cost: Tune's trial start and "
        "report, chunk dispatch, the driver's loop, the pick, the tests and the report"
    )
    print(
        f"driver peak RSS {o['peak_rss'] / 2**20:.0f} MB (target < 600 MB; "
        f"{o['tuning_rss'] / 2**20:.0f} MB at most while trials ran); Tune experiment "
        f"state (the largest part's) {o['state_bytes'] / 2**20:.2f} MB for "
        f"{o['state_trials']} trials = {o['state_bytes'] / max(1, o['state_trials']) / 1024:.1f} "
        "KB/trial; "
        f"disk written by the driver's process tree {o['written'] / 2**20:.0f} MB = "
        f"{o['written'] / n / 1024:.0f} KB/trial"
    )
    split = o.get("written_by") or {}
    if split:
        print(
            "disk written by: "
            + ", ".join(
                f"{kind} {b / 2**20:.0f} MB ({b / n / 1024:.0f} KB/trial)"
                for kind, b in split.items()
            )
            + " (the driver's share includes an embedded MLflow store's; a tracking server's "
            "writes are its own)"
        )
    warned = o["bottleneck_warnings"]
    tuning = o["tuning_stalls"]
    print(
        f"longest driver stall {1000 * o['max_stall_s']:.0f} ms "
        f"({o['stalls_over_100ms']} over 100 ms; target none); between the first and the last "
        f"trial result: {len(tuning)} over 100 ms"
        + (f", longest {1000 * max(tuning):.0f} ms" if tuning else "")
        + "; the others are at start-up (Ray, imports) and in the pick, tests and report"
    )
    gates = o.get("gates") or {}
    together = sum(g["opened"] == "all" for g in gates.values())
    late = (
        f" (in {len(gates) - together} the first trials went on after the pool's gate timed "
        "out: trial processes may be started and withdrawn for the rest of the experiment, "
        "BENCHMARKS.md 2)"
        if together < len(gates)
        else ""
    )
    print(
        f"Tune experiments whose first trials started together: {together} of {len(gates)}"
        f"{late}; trial processes seen: {o.get('trial_processes', 0)}"
    )
    pauses = o["tuning_gc"]
    print(
        f"full garbage collections while trials ran: {len(pauses)}"
        + (f", longest {1000 * max(pauses):.0f} ms" if pauses else "")
    )
    print(
        "Tune's processing of a result: "
        f"{spread(o['tune_result_s'])}; 'performance bottleneck' warnings: {len(warned)}"
        + (f" (first: {warned[0]})" if warned else "")
    )


def run(args: argparse.Namespace) -> int:
    """Print the overhead and scaling figures (2 on a bad override)."""
    trials = getattr(args, "trials", None)
    store_runs = getattr(args, "store_runs", None)
    if store_runs is not None and (trials is None or store_runs < 1):
        why = "--store-runs needs --trials" if trials is None else "--store-runs must be at least 1"
        print(f"grasplab bench platform: error: {why}, got {store_runs}", file=sys.stderr)
        return 2
    if trials is not None:
        why = check_trials(trials)
        if why:
            print(f"grasplab bench platform: error: {why}", file=sys.stderr)
            return 2
    try:
        spec = load([*SCALE_OVERRIDES, *args.overrides] if trials else args.overrides)
    except ConfigError as error:
        print(f"grasplab bench platform: error: {error}", file=sys.stderr)
        return 2
    if trials is not None:
        print(f"load average: {os.getloadavg()}")
        o = scale_run(trials, args.overrides, args.sweep_workers or 2)
        print_scale(o)
        if store_runs:
            print_store(store_cost(spec, o["sweep_id"], store_runs))
        print(f"load average: {os.getloadavg()}")
        return 0
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
