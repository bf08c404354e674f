"""``grasplab sweep experiment=... [overrides] [--resume]``: the main job.

Per stage (planner variant x horizon) one Tune experiment: ``OptunaSearch`` (seeded TPE) behind
a ``ConcurrencyLimiter`` sized to the worker pool, ASHA on the success rate after every chunk of
tuning episodes, the same ``num_samples`` for every variant. The best config of each stage is
then re-evaluated on the held-out TEST goals (the reported number). The driver owns MLflow: a
parent run, a child run per trial (:class:`~grasplab.platform.tracking.TrialLogger`), the
comparison table, plots and a GIF on the parent.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from grasplab.eval import EpisodeResults, random_floor
from grasplab.eval.significance import pairwise
from grasplab.platform import progress as live
from grasplab.platform import report, runtime
from grasplab.platform.config import (
    ConfigError,
    PlannerSpec,
    Stage,
    SweepSpec,
    load,
    one_line,
    parse,
)
from grasplab.platform.report import StageOutcome
from grasplab.platform.search import LABEL, PerPlannerScheduler, PlannerSearch
from grasplab.platform.tracking import (
    Tracker,
    TrialLogger,
    default_tracking,
    git_sha,
    protocol_params,
    records_table,
    register,
    run_url,
    trial_key,
    ui_command,
)
from grasplab.platform.trial import chunk_indices, evaluate_chunks, run_trial
from grasplab.platform.workers import (
    PlacementTimeout,
    Pool,
    plan_placement,
    request_capacity,
    start_pool,
)
from grasplab.platform.writer import QueuedTracker, TrackingOutage

METRIC = "success_rate"


@dataclass
class SweepResult:
    """What a finished sweep returns (and prints).

    Attributes:
        sweep_id: The sweep's unique id.
        parent_run_id: The MLflow parent run.
        tracking_uri: The MLflow store.
        outcomes: One per stage.
        floors: Random-policy floor on the test goals, by horizon.
        table: The printed comparison table (fits 120 columns; abbreviations in its legend).
        ui: Command that opens the MLflow UI.
        wall_time: Seconds from start to end (Ray start included when embedded).
        tune_time: Seconds inside ``Tuner.fit`` and test evaluation (Ray start excluded).
        trial_compute: Worker seconds spent evaluating chunks (tuning trials + test runs).
        num_workers: Size of the worker pool.
        comparisons: Pairwise significance tests of the stages (same horizon, test goals).
        verdict: One sentence saying which differences are significant.
        url: The parent run's page in the MLflow UI's model-training view.
        summary: What ``grasplab sweep`` prints: header, verdict, table, legend, URL.
    """

    sweep_id: str
    parent_run_id: str
    tracking_uri: str
    outcomes: list[StageOutcome]
    floors: dict[int, dict[str, float]]
    table: str
    ui: str
    wall_time: float = 0.0
    tune_time: float = 0.0
    trial_compute: float = 0.0
    num_workers: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Any] = field(default_factory=list)
    verdict: str = ""
    url: str = ""
    summary: str = ""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``[overrides...] [--resume] [--quiet]`` (the parser lives in :mod:`grasplab.cli_parsers`)."""
    from grasplab.cli_parsers import sweep_parser

    return sweep_parser().parse_args(list(argv))


def check_tracking(uri: str) -> None:
    """Fail fast (as a config error) when an MLflow server does not answer ``/health``."""
    if not uri.startswith("http"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
            response.read()
    except OSError as error:
        raise ConfigError(
            f"mlflow.tracking_uri {uri!r} does not answer: {one_line(error)}"
        ) from error


def tracking_of(spec: SweepSpec, cwd: Path) -> tuple[str, str | None]:
    """``(tracking_uri, artifact_root)``: the configured server or the embedded SQLite default."""
    uri = spec.mlflow.get("tracking_uri")
    if uri:
        return str(uri), None
    return default_tracking(cwd)


def prepare(argv: Sequence[str], cwd: Path) -> tuple[SweepSpec, runtime.SweepState]:
    """Validate everything and build (or find, with ``--resume``) the sweep's state.

    Raises:
        ConfigError: Bad config or override, nothing to resume, unreachable MLflow server.
    """
    args = parse_args(argv)
    spec = load(args.overrides)
    root = runtime.storage_root(spec.cluster, cwd)
    if args.resume:
        state = runtime.find_resumable(root, spec.name)
        if state is None:
            raise ConfigError(f"--resume: no unfinished sweep named {spec.name!r} under {root}")
        spec = parse(state.config)
    else:
        uri, artifacts = tracking_of(spec, cwd)
        sweep_id = runtime.new_sweep_id(spec.name)
        state = runtime.SweepState(
            sweep_id, spec.name, spec.raw, str(root / sweep_id), uri, artifacts
        )
    check_tracking(state.tracking_uri)
    return spec, state


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on a bad config (one line on stderr), 1 on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cwd = Path.cwd()
    try:
        spec, state = prepare(argv, cwd)
    except ConfigError as error:
        print(f"grasplab sweep: error: {error}", file=sys.stderr)
        return 2
    quiet = parse_args(argv).quiet
    resume = f"grasplab sweep {' '.join(a for a in argv if a != '--resume')} --resume"
    try:
        result = run_sweep(spec, state, progress=not quiet)
    except runtime.ConnectError as error:
        print(f"grasplab sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grasplab sweep: interrupted; resume with: {resume}", file=sys.stderr)
        return 130
    except (PlacementTimeout, TrackingOutage) as error:
        print(f"grasplab sweep: stopped: {error}\nresume with: {resume}", file=sys.stderr)
        return 1
    except Exception as error:  # the CLI prints it as one line (grasplab.errors)
        error.add_note(f"resume with: {resume}")
        raise
    print(result.summary)
    return 0


def run_sweep(
    spec: SweepSpec,
    state: runtime.SweepState,
    *,
    progress: bool = True,
    num_workers: int | None = None,
) -> SweepResult:
    """Run (or resume) a sweep end to end; every MLflow run it opens is closed on any exit.

    Args:
        spec: The validated sweep.
        state: Its durable state (new, or loaded by ``--resume``).
        progress: Print a line per stage and per finished trial.
        num_workers: Overrides ``cluster.num_workers`` (benchmarks).
    """
    started = time.perf_counter()
    runtime.quiet_environment()
    lines = live.SweepProgress(enabled=progress)
    live.register(state.sweep_id, lines)
    lines.phase(f"sweep {state.sweep_id}: starting Ray ({describe_cluster(spec.cluster)})")
    owned = runtime.connect(spec.cluster)
    tracker, pool, status, monitor = None, None, "FAILED", None
    try:
        lines.phase(f"Ray up; opening MLflow tracking at {state.tracking_uri}")
        tracker = open_tracking(spec, state)
        lines.phase("placing the world-model worker pool")
        pool = open_pool(spec, state, num_workers, owned, progress)
        lines.phase(
            f"{pool.placement.num_workers} workers placed ({pool.placement.describe()}); "
            "each loads the world model on its first chunk"
        )
        monitor = PoolMonitor(pool, progress)
        tuned_at = time.perf_counter()
        result = run_stages(spec, state, tracker, pool, progress)
        reported_at = time.perf_counter()
        lines.phase("report: comparison table, plots and GIFs on the parent run")
        finish_report(spec, state, tracker, pool, result)
        result.extras["phases"]["report_s"] = time.perf_counter() - reported_at
        result.tune_time = time.perf_counter() - tuned_at
        result.extras["driver_callback_s"] = list(lines.callback_s)
        status = "FINISHED"
        state.status = "finished"
    except KeyboardInterrupt:
        status, state.status = "KILLED", "interrupted"
        raise
    except BaseException:
        state.status = "failed"
        raise
    finally:
        if monitor is not None:
            monitor.stop()
        lines.phase(f"closing: MLflow writes, worker pool, Ray (status {status})")
        try:
            close(tracker, pool, status, owned, state)
        finally:
            state.save()
            live.unregister(state.sweep_id)
    result.wall_time = time.perf_counter() - started
    lines.phase(f"done in {live.clock(result.wall_time)}")
    return result


def describe_cluster(cluster: dict[str, Any]) -> str:
    """``embedded local Ray`` or ``cluster at <address>`` (for the start-up line)."""
    address = cluster.get("address")
    return f"cluster at {address}" if address else "embedded local Ray"


def open_tracking(spec: SweepSpec, state: runtime.SweepState) -> QueuedTracker:
    """The tracker with the parent run open (created, or reopened on resume).

    On resume, the writes a stopped sweep could not apply (its journal) are applied first.
    """
    tracker = QueuedTracker(
        state.tracking_uri,
        spec.mlflow.get("experiment") or "grasplab",
        state.artifact_root,
        outage_timeout_s=float(spec.mlflow.get("outage_timeout_s") or 3600),
    )
    params = {
        "recipe": spec.recipe,
        "sweep_name": spec.name,
        "planners": [p.label for p in spec.planners],
        "world_model": spec.world_model,
        "git_sha": git_sha(),
        "seed": spec.seed,
        "num_samples": spec.sweep.num_samples,
        "chunk_size": spec.sweep.chunk_size,
        "horizons": list(spec.horizons),
        **protocol_params(spec.protocol),
    }
    if state.parent_run_id:
        tracker.parent_id, tracker.sweep_id = state.parent_run_id, state.sweep_id
        replayed = tracker.replay_journal(Path(state.folder))
        if replayed:
            print(f"[mlflow] applied {replayed} writes the stopped sweep had queued", flush=True)
    state.parent_run_id = tracker.start_parent(
        state.sweep_id, state.sweep_id, params, state.parent_run_id, state.parent_tags
    )
    register(tracker)
    state.save()
    return tracker


def open_pool(
    spec: SweepSpec,
    state: runtime.SweepState,
    num_workers: int | None,
    owned: bool = True,
    progress: bool = True,
) -> Pool:
    """Declare the worker pool, ask the autoscaler for it (on a cluster) and wait until placed."""
    cluster = spec.cluster
    per_worker = float(cluster.get("trial_cpus") or 0.05) * spec.sweep.trials_per_worker
    placement = plan_placement(
        ray.cluster_resources(),
        num_workers or cluster.get("num_workers"),
        per_worker,
        float(cluster.get("gpus_per_worker") or 0),
        cluster.get("cpus_per_worker"),
        cluster.get("device") or "auto",
    )
    if not owned:
        request_capacity(placement)
    env = {"MLFLOW_TRACKING_URI": worker_tracking_uri(spec, state)}
    return start_pool(
        state.sweep_id,
        placement,
        cluster.get("namespace") or "grasplab",
        env,
        timeout=float(cluster.get("placement_timeout_s") or 600),
        status=(lambda line: print(line, flush=True)) if progress else (lambda line: None),
    )


def worker_tracking_uri(spec: SweepSpec, state: runtime.SweepState) -> str:
    """The tracking URI the workers get (they download ``models:/`` specs through it).

    ``cluster.worker_tracking_uri`` when set. Otherwise the driver's own URI, which must then be
    reachable from every node: a loopback server address on a cluster whose nodes are not all on
    this machine's loopback is refused with the fix (ray_cluster.yaml binds MLflow to the head's
    private IP and points the sweep there).

    Raises:
        ConfigError: A loopback MLflow address on a multi-machine cluster.
    """
    explicit = spec.cluster.get("worker_tracking_uri")
    if explicit:
        return str(explicit)
    uri = state.tracking_uri
    host = urllib.parse.urlsplit(uri).hostname or ""
    if uri.startswith("http") and host in runtime.LOOPBACK:
        remote = sorted(
            {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")} - set(runtime.LOOPBACK)
        )
        if remote:
            raise ConfigError(
                f"mlflow.tracking_uri {uri} is a loopback address, but the cluster has nodes at "
                f"{remote}: workers there cannot reach it. Run mlflow server on the head's "
                "private IP and set mlflow.tracking_uri=http://<head private IP>:<port> (or "
                "cluster.worker_tracking_uri); on one machine, start the head with "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so that Ray stays on 127.0.0.1"
            )
    return uri


class PoolMonitor:
    """A driver thread that prints the pool's events (worker lost, rerouted, joined)."""

    def __init__(self, pool: Pool, progress: bool, every: float = 2.0) -> None:
        self.pool, self.progress, self.every = pool, progress, every
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grasplab-pool-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                status = self.pool.status()
            except Exception:  # noqa: BLE001 - a status poll must never break the sweep
                continue
            for event in status["events"][self.seen :]:
                if self.progress:
                    print(
                        f"[cluster] {event}; {len(status['alive'])} workers alive, "
                        f"{len(status['pending'])} waiting for capacity, "
                        f"{status['rerouted']} chunks rerouted",
                        flush=True,
                    )
            self.seen = len(status["events"])

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(timeout=10)


def close(
    tracker: QueuedTracker | None,
    pool: Pool | None,
    status: str,
    owned: bool,
    state: runtime.SweepState | None = None,
) -> None:
    """End every open MLflow run with ``status``, stop the pool, stop an embedded Ray.

    When MLflow is unreachable, what could not be written is saved to the sweep folder's
    journal (applied by ``--resume``) instead of being lost.
    """
    try:
        if tracker is not None:
            patience = None if status == "FINISHED" else 60.0
            try:
                tracker.end_orphans("KILLED", patience)  # applies the queue first
                tracker.close_all(status, patience)
            except TrackingOutage as error:
                tracker.stop()
                saved = tracker.save_journal(Path(state.folder)) if state else 0
                print(
                    f"[mlflow] {error}; {saved} writes saved to the sweep folder and applied "
                    "by --resume (runs still RUNNING in MLflow are ended then)",
                    file=sys.stderr,
                    flush=True,
                )
                if status == "FINISHED" and state is not None:
                    state.status = "failed"
                    raise
            finally:
                tracker.stop()
    finally:
        if pool is not None:
            try:
                pool.shutdown()
            except Exception:  # Ray already gone: nothing left to stop
                pass
        if not owned and ray.is_initialized():
            try:
                request_capacity(None)  # withdraw the autoscaler request
            except Exception:  # noqa: BLE001 - cluster gone
                pass
        if owned:
            ray.shutdown()


def run_stages(
    spec: SweepSpec, state: runtime.SweepState, tracker: Tracker, pool: Pool, progress: bool
) -> SweepResult:
    """Tune and test every stage (skipping what a resumed sweep already finished)."""
    outcomes, compute = [], 0.0
    phases = {"tuning_s": 0.0, "testing_s": 0.0}
    for index, stage in enumerate(spec.stages()):
        keys = [stage.outcome_key(p.label) for p in stage.planners]
        if not all(k in state.stages for k in keys):
            lines = live.of(state.sweep_id)
            labels = [p.label for p in stage.planners]
            lines.start_stage(
                stage.key,
                labels,
                stage_trials(spec, stage),
                f"stage {stage.key}: tuning {labels}, {spec.sweep.num_samples} trials each, on "
                f"{stage.protocol.tune_episodes} tuning episodes",
            )
            started = time.perf_counter()
            grid = tune_stage(spec, stage, state, pool, index, progress)
            lines.end_stage()
            tuned = time.perf_counter()
            lines.phase(
                f"stage {stage.key}: evaluating the best config of {labels} on "
                f"{stage.protocol.test_episodes} held-out test goals"
            )
            compute += finish_stage(spec, stage, state, grid, tracker, pool)
            phases["tuning_s"] += tuned - started
            phases["testing_s"] += time.perf_counter() - tuned
        outcomes.extend(StageOutcome.from_dict(state.stages[k]) for k in keys)
    floors = {s.protocol.horizon: random_floor(s.protocol, "test").summary() for s in spec.stages()}
    rows = report.comparison_rows(outcomes, floors)
    result = SweepResult(
        state.sweep_id,
        state.parent_run_id or "",
        state.tracking_uri,
        outcomes,
        floors,
        report.fit_table(report.summary_rows(outcomes, floors)),
        ui_command(state.tracking_uri, state.artifact_root),
        trial_compute=compute,
        num_workers=pool.placement.num_workers,
        extras={
            "rows": rows,
            "phases": phases,
            "pool": pool.status(),
            "workers": pool.stats(),
            "placed_s": pool.placed_s,
            "driver_node": ray.get_runtime_context().get_node_id(),
        },
    )
    summarize_result(
        spec, result, run_url(state.tracking_uri, tracker.experiment_id, result.parent_run_id)
    )
    return result


def summarize_result(spec: SweepSpec, result: SweepResult, url: str) -> None:
    """Fill in the significance tests, the verdict and the printed summary of ``result``."""
    outcomes = result.outcomes
    result.comparisons = pairwise(
        {o.key: o.test_records for o in outcomes}, {o.key: o.horizon for o in outcomes}
    )
    protocol = spec.protocol
    where = report.where_text(protocol.env, protocol.env_overrides, spec.world_model)
    result.verdict = report.verdict(outcomes, result.comparisons, where)
    result.url = url
    result.extras["header"] = report.header_lines(
        where,
        [o.horizon for o in outcomes],
        protocol.VERSION,
        protocol.fingerprint(),
        [int(o.test.get("n", 0)) for o in outcomes],
    )
    result.summary = report.summary_text(
        result.extras["header"], result.verdict, result.table, url, result.ui
    )


def stage_trials(spec: SweepSpec, stage: Stage) -> int:
    """Trials the stage's search runs (variants without a search space run once)."""
    return sum(spec.sweep.num_samples if p.tune_space() else 1 for p in stage.planners)


def stage_context(spec: SweepSpec, stage: Stage, state: runtime.SweepState) -> dict[str, Any]:
    """The plain dict every trial of the stage receives."""
    return {
        "planners": {p.label: {"planner": p.name, "base": p.config} for p in stage.planners},
        "protocol": stage.protocol.to_dict(),
        "world_model": spec.world_model,
        "chunk_size": spec.sweep.chunk_size,
        "pool": f"{state.sweep_id}-pool",
        "namespace": spec.cluster.get("namespace") or "grasplab",
    }


def variant_params(spec: SweepSpec, stage: Stage, planner: PlannerSpec) -> dict[str, Any]:
    """Params every child run of a variant carries (besides the planner config fields)."""
    return {
        "planner": planner.name,
        "variant": planner.label,
        "stage": stage.key,
        "world_model": spec.world_model,
        "git_sha": git_sha(),
        **protocol_params(stage.protocol),
    }


def trial_resources(cluster: dict[str, Any]) -> dict[str, float]:
    """A trial's Ray resources: a sliver of CPU, on the head node unless told otherwise.

    Trials checkpoint into Tune's storage folder, which lives on the driver's (head) node; keeping
    the trials there needs no shared filesystem on a multi-node cluster.
    """
    resources = {"cpu": float(cluster.get("trial_cpus") or 0.05)}
    if cluster.get("trials_on_head", True):
        resources["node:__internal_head__"] = 0.001
    return resources


def tune_stage(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    pool: Pool,
    index: int,
    progress: bool,
) -> tune.ResultGrid:
    """Run (or restore and finish) the stage's Tune experiment."""
    context = stage_context(spec, stage, state)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), trial_resources(spec.cluster)
    )
    path = Path(state.folder) / stage.key
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
    else:
        tuner = new_tuner(spec, stage, state, pool, index, trainable, progress)
    grid = tuner.fit()
    # Interrupted (SIGINT): Tune returns early, with trials still running or never created (the
    # searcher creates them lazily), so both counts are checked.
    if len(grid) < stage_trials(spec, stage) or grid.num_terminated + grid.num_errors < len(grid):
        raise KeyboardInterrupt(f"stage {stage.key} was interrupted")
    return grid


def new_tuner(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    pool: Pool,
    index: int,
    trainable: Any,
    progress: bool,
) -> tune.Tuner:
    """A fresh Tuner for the stage: equal budgets, TPE and ASHA per planner variant."""
    n_chunks = len(chunk_indices(stage.protocol.tune_episodes, spec.sweep.chunk_size))
    search = PlannerSearch(
        {p.label: p.tune_space() for p in stage.planners},
        spec.sweep.num_samples,
        METRIC,
        "max",
        seed=1000 * spec.seed + 100 * index,
        n_startup_trials=min(10, max(2, spec.sweep.num_samples // 3)),
    )
    asha = functools.partial(
        ASHAScheduler,
        metric=METRIC,
        mode="max",
        time_attr="training_iteration",
        max_t=n_chunks,
        grace_period=min(spec.sweep.grace_period, n_chunks),
        reduction_factor=spec.sweep.reduction_factor,
    )
    params = {p.label: variant_params(spec, stage, p) for p in stage.planners}
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=concurrency(spec, pool)),
            scheduler=PerPlannerScheduler(asha),
            num_samples=search.total,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=stage.key,
            storage_path=state.folder,
            verbose=0,
            callbacks=[
                TrialLogger(state.sweep_id, stage, params, progress, n_chunks),
                JsonLoggerCallback(),
            ],
            failure_config=tune.FailureConfig(max_failures=spec.sweep.max_failures),
            # Keep every checkpoint (a few KB of JSON each): with num_to_keep=1 a driver killed
            # between a trial's newer checkpoint and Tune's next experiment snapshot left the
            # snapshot pointing at a deleted checkpoint, and the resumed trial failed.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def concurrency(spec: SweepSpec, pool: Pool) -> int:
    """Concurrent trials: ``sweep.trials_per_worker`` per worker.

    A trial sends one chunk at a time and waits for the driver to take its report before the
    next; a second trial per worker keeps a chunk queued in the dispatcher meanwhile, so the
    workers do not idle between reports.
    """
    return max(1, spec.sweep.trials_per_worker * pool.placement.num_workers)


def best_result(results: Sequence[Any], n_chunks: int) -> Any:
    """The best trial: complete ones first, then success rate, then faster time-to-success."""
    candidates = [r for r in results if r.error is None and r.metrics]
    if not candidates:
        raise RuntimeError("every trial of the variant failed")

    def rank(result: Any) -> tuple[bool, float, float]:
        m = result.metrics
        tts = m.get("median_time_to_success", math.nan)
        return (
            m.get("chunks", 0) >= n_chunks,
            m.get(METRIC, 0.0),
            -(math.inf if tts is None or math.isnan(tts) else tts),
        )

    return max(candidates, key=rank)


def submit_test(
    pool: Pool, spec: SweepSpec, stage: Stage, planner: PlannerSpec, config: dict[str, Any]
) -> list[ray.ObjectRef]:
    """Dispatch the config on every held-out test episode (chunks spread over the pool)."""
    context = {
        "planner": planner.name,
        "protocol": stage.protocol.to_dict(),
        "world_model": spec.world_model,
    }
    chunks = chunk_indices(stage.protocol.test_episodes, spec.sweep.chunk_size)
    return evaluate_chunks(pool.dispatcher, context, config, "test", chunks)


def gather_test(refs: Sequence[ray.ObjectRef]) -> tuple[EpisodeResults, float]:
    """Per-episode test results of dispatched chunks, and the worker seconds they took."""
    outputs = ray.get(list(refs))
    records = [r for out in outputs for r in out["records"]]
    return EpisodeResults.from_records(records), sum(o["compute_s"] for o in outputs)


def finish_stage(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    grid: tune.ResultGrid,
    tracker: Tracker,
    pool: Pool,
) -> float:
    """Per variant: pick the best trial, evaluate it on the test goals, log, save the outcome.

    Every variant's test chunks are dispatched at once, so the pool never idles between them.

    Returns:
        Worker seconds spent (the stage's trials and test evaluations).
    """
    n_chunks = len(chunk_indices(stage.protocol.tune_episodes, spec.sweep.chunk_size))
    results = [r for r in grid if r.config]
    compute = sum(r.metrics.get("compute_time", 0.0) for r in results if r.metrics)
    picked = {}
    for planner in stage.planners:
        mine = [r for r in results if r.config.get(LABEL) == planner.label]
        best = best_result(mine, n_chunks)
        tuned = {k: best.config[k] for k in planner.search_space if k in best.config}
        config = planner.trial_config(tuned)
        picked[planner.label] = (
            mine,
            best,
            tuned,
            config,
            submit_test(pool, spec, stage, planner, config),
        )
    for planner in stage.planners:
        mine, best, tuned, config, refs = picked[planner.label]
        test_results, test_compute = gather_test(refs)
        compute += test_compute
        plan_time = float(sum(set(test_results.plan_time.tolist())))
        outcome = StageOutcome(
            key=stage.outcome_key(planner.label),
            label=planner.label,
            planner=planner.name,
            horizon=stage.protocol.horizon,
            best_trial=best.metrics.get("trial_id", ""),
            best_config=config,
            tuned=tuned,
            tune_metrics={
                k: best.metrics.get(k, math.nan)
                for k in (METRIC, "ci_low", "ci_high", "median_time_to_success", "n")
            },
            test=test_results.summary(wall_time=plan_time),
            trials=[
                (r.metrics.get(METRIC, math.nan), r.metrics.get("median_time_to_success", math.nan))
                for r in mine
                if r.metrics
            ],
            test_records=test_results.to_records(),
            trial_complete=[r.metrics.get("chunks", 0) >= n_chunks for r in mine if r.metrics],
        )
        log_outcome(tracker, stage, outcome)
        state.stages[outcome.key] = outcome.to_dict()
        state.save()
    return compute


def log_outcome(tracker: Tracker, stage: Stage, outcome: StageOutcome) -> None:
    """Test metrics on the parent (``<variant>/test_*``) and on the best trial's child run."""
    metrics = {f"test_{k}": v for k, v in outcome.test.items()}
    tracker.log_metrics(tracker.parent_id, {f"{outcome.key}/{k}": v for k, v in metrics.items()})
    tracker.log_table(
        tracker.parent_id, records_table(outcome.test_records), f"test/{outcome.key}.json"
    )
    best = trial_key(tracker.sweep_id, stage.key, outcome.best_trial)  # its run's handle
    tracker.log_metrics(best, metrics)
    tracker.set_tags(best, {"best": "true"})


def finish_report(
    spec: SweepSpec,
    state: runtime.SweepState,
    tracker: Tracker,
    pool: Pool,
    result: SweepResult,
) -> None:
    """Log the comparison table, plots and GIFs (a success and a failure per variant)."""
    parent = tracker.parent_id
    tracker.log_text(parent, result.table + "\n", "comparison.md")
    tracker.log_table(parent, records_table(result.extras["rows"]), "comparison.json")
    description = report.summary_text(
        result.extras["header"], result.verdict, result.table, markdown=True
    )
    tracker.set_tags(parent, {"mlflow.note.content": description, "verdict": result.verdict})
    tracker.log_metrics(parent, report.significance_metrics(result.comparisons))
    if result.comparisons:
        tracker.log_table(
            parent, records_table(c.to_dict() for c in result.comparisons), "significance.json"
        )
    for horizon, floor in result.floors.items():
        tracker.log_metrics(parent, {f"random_floor/H{horizon}/{k}": v for k, v in floor.items()})
    folder = Path(state.folder) / "artifacts"  # kept until uploaded (a queued write)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.report.get("plots", True):
        log_plots(tracker, result, folder)
    if spec.report.get("gif", True) and result.outcomes:
        log_gifs(tracker, pool, spec, result, folder)


def log_plots(tracker: Tracker, result: SweepResult, folder: Path) -> None:
    """Pareto scatter always; success vs horizon when the sweep spans several horizons."""
    import matplotlib.pyplot as plt

    figures = {"pareto.png": report.pareto_plot(result.outcomes)}
    if len(result.floors) > 1:
        figures["success_vs_horizon.png"] = report.horizon_plot(result.outcomes, result.floors)
    for name, fig in figures.items():
        fig.savefig(folder / name, bbox_inches="tight")
        plt.close(fig)
        tracker.log_artifact(tracker.parent_id, str(folder / name))


GIF_TRIES = 3
"""Test episodes replayed at most per GIF until the replay has the wanted outcome."""


def gif_artifact(key: str, kind: str) -> str:
    """Artifact path of an outcome's GIF: ``gifs/<key, / as _>_<success|failure>.gif``."""
    return f"gifs/{key.replace('/', '_')}_{kind}.gif"


def log_gifs(
    tracker: Tracker, pool: Pool, spec: SweepSpec, result: SweepResult, folder: Path
) -> list[str]:
    """Per planner variant and horizon, a solved and a failed test episode as GIFs.

    Each GIF is the best config planning a held-out test episode, executed in the TRUE env
    (:meth:`~grasplab.platform.workers.WorldModelWorker.plan_frames`), annotated by
    :func:`~grasplab.platform.report.episode_gif` and logged at :func:`gif_artifact`. The replay
    plans the episode's test chunk again with the same seed; should its outcome still differ
    from the recorded one (an MPC protocol, a non-deterministic device), up to
    :data:`GIF_TRIES` episodes are tried. A variant with no success (or no failure) on the
    test goals gets none, with a note.

    The replays' worker seconds are added to ``result.trial_compute``.

    Returns:
        The notes (also printed and logged as ``gifs/notes.txt``).
    """
    wanted, notes = gif_candidates(result.outcomes)
    shown, compute = replay_episodes(pool, spec, wanted)
    result.trial_compute += compute
    for (key, kind), (o, index, out) in shown.items():
        title = f"{o.label} [{o.planner}] H{o.horizon}, test episode {index}"
        path = folder / gif_artifact(key, kind)
        frames, goal = np.asarray(out["frames"]), np.asarray(out["goal"])
        report.episode_gif(frames, goal, out["reached"], title, path)
        tracker.log_artifact(tracker.parent_id, str(path), "gifs")
    notes += [
        f"{key}: no {kind} GIF (replaying test episodes {tried} gave the other outcome)"
        for (key, kind), (_, tried) in wanted.items()
        if (key, kind) not in shown
    ]
    if notes:
        live.of(tracker.sweep_id).phase("GIFs: " + "; ".join(notes))
        tracker.log_text(tracker.parent_id, "\n".join(notes) + "\n", "gifs/notes.txt")
    return notes


def gif_candidates(
    outcomes: Sequence[StageOutcome],
) -> tuple[dict[tuple[str, str], tuple[StageOutcome, list[int]]], list[str]]:
    """``(key, "success"|"failure") -> (outcome, test episodes to try)``, and notes."""
    wanted, notes = {}, []
    for o in outcomes:
        for kind in ("success", "failure"):
            found = [
                r["index"] for r in o.test_records if bool(r["success"]) == (kind == "success")
            ]
            if found:
                wanted[(o.key, kind)] = (o, found[:GIF_TRIES])
            else:
                notes.append(f"{o.key}: no {kind} GIF (no test episode was a {kind})")
    return wanted, notes


def replay_episodes(
    pool: Pool, spec: SweepSpec, wanted: dict[tuple[str, str], tuple[StageOutcome, list[int]]]
) -> tuple[dict[tuple[str, str], tuple[StageOutcome, int, dict[str, Any]]], float]:
    """Replay candidates (a round's GIFs at once, over the pool) until each has its outcome.

    Returns:
        The replays with the wanted outcome, and the worker seconds all replays took.
    """
    stages = {s.protocol.horizon: s for s in spec.stages()}
    chunks = {
        h: chunk_indices(s.protocol.test_episodes, spec.sweep.chunk_size) for h, s in stages.items()
    }
    shown, compute = {}, 0.0
    for attempt in range(GIF_TRIES):
        todo = {
            k: (o, int(c[attempt]))
            for k, (o, c) in wanted.items()
            if k not in shown and attempt < len(c)
        }
        refs = [
            pool.call(
                "plan_frames",
                spec=spec.world_model,
                protocol=stages[o.horizon].protocol.to_dict(),
                planner=o.planner,
                config=o.best_config,
                split="test",
                index=index,
                batch=next(c for c in chunks[o.horizon] if index in c),
            )
            for o, index in todo.values()
        ]
        for ((key, kind), (o, index)), out in zip(todo.items(), ray.get(refs), strict=True):
            compute += out["compute_s"]
            if out["success"] == (kind == "success"):
                shown[(key, kind)] = (o, index, out)
    return shown, compute
