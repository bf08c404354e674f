"""A Tune + Optuna sweep of planners, behind ``grasplab sweep`` (:mod:`grasplab.cli.sweep`).

Per stage (planner variant x horizon) one Tune experiment (or, beyond ``sweep.segment_trials``
trials, successive ones sharing the stage's search: :func:`tune_stage`): ``OptunaSearch``
(seeded TPE) behind a ``ConcurrencyLimiter`` sized to the worker pool, ASHA on the success rate
after every chunk of tuning episodes, the same ``num_samples`` for every variant. The best config
of each stage is then re-evaluated on the held-out TEST goals (the reported number). The driver
owns MLflow: a parent run, a child run per trial (:class:`~grasplab.platform.tracking.TrialLogger`),
the comparison table, plots and a GIF on the parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from grasplab.eval.significance import pairwise
from grasplab.malloc import release_free_memory
from grasplab.moved import moved_names
from grasplab.platform import fingerprint as runtime_fingerprint
from grasplab.platform import progress as live
from grasplab.platform import runtime
from grasplab.platform.config import (
    ConfigError,
    PlannerSpec,
    Stage,
    SweepSpec,
    load,
    one_line,
    parse,
)
from grasplab.platform.pick import METRIC, gather_outcome, pick_and_submit
from grasplab.platform.publish import finish_report, log_outcome
from grasplab.platform.report import tables
from grasplab.platform.report.rows import StageOutcome, SweepResult
from grasplab.platform.search import PerPlannerScheduler, PlannerSearch
from grasplab.platform.tracking import (
    SUPERSEDED,
    Tracker,
    TrialLogger,
    default_tracking,
    fold_log,
    git_sha,
    protocol_params,
    register,
    run_url,
    ui_command,
)
from grasplab.platform.trial import chunk_indices, figures, run_trial
from grasplab.platform.workers import (
    Pool,
    plan_placement,
    request_capacity,
    start_pool,
)
from grasplab.platform.writer import QueuedTracker, TrackingOutage

COMMAND = "grasplab.command"
"""Tag of a parent run: the command line that started the sweep."""
STATE_PERIOD_S = (30.0, 300.0)
STATE_PERIOD_PER_TRIAL_S = 0.03
"""Seconds between Tune's experiment-state snapshots (``TUNE_GLOBAL_CHECKPOINT_S``): 0.03 s per
trial of a Tune experiment (a stage, or a part of it: at most ``sweep.segment_trials``), at least
30 s and at most 300 s (:func:`state_period`).

Tune rewrites its whole experiment state (every trial's last result and bookkeeping, about 9 KB a
trial at the tiny protocol) on each snapshot, and copies it to the storage folder, so at a fixed
period the bytes written grow with trials x snapshots, quadratically in the stage's size. A
period that grows with the stage keeps them about linear: 30 s up to 1,000 trials, 300 s from
10,000. A resumed sweep redoes at most the trials that ended in the period before the crash
(their MLflow runs are reused by trial key; the runs of trials created after the last snapshot,
which the resumed sweep does not know, are ended KILLED and tagged ``grasplab.superseded``). An
explicit ``TUNE_GLOBAL_CHECKPOINT_S`` in the environment wins.
"""


def state_period(trials: int) -> float:
    """Seconds between Tune's state snapshots for a stage of ``trials`` trials."""
    low, high = STATE_PERIOD_S
    return min(high, max(low, STATE_PERIOD_PER_TRIAL_S * trials))


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


def prepare(
    overrides: Sequence[str], cwd: Path, *, resume: bool = False
) -> tuple[SweepSpec, runtime.SweepState]:
    """Validate everything and build (or find, with ``resume``) the sweep's state.

    Args:
        overrides: Hydra overrides of ``tune_configs/config.yaml``.
        cwd: Where relative storage paths and the embedded MLflow store resolve.
        resume: Continue the latest unfinished sweep of the config's name.

    Raises:
        ConfigError: Bad config or override, nothing to resume, unreachable MLflow server.
    """
    spec = load(list(overrides))
    root = runtime.storage_root(spec.cluster, cwd)
    if resume:
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
        fp = record_fingerprint(tracker, pool)
        tuned_at = time.perf_counter()
        result = run_stages(spec, state, tracker, pool, progress)
        show_fingerprint(result, fp)
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


def record_fingerprint(tracker: Tracker, pool: Pool) -> dict[str, str]:
    """Tag the parent run with the runtime fingerprint of the planning workers; return it.

    A worker reports its own (device and its name, dtype, torch threads, libraries, platform,
    CPU); the git state is the driver's (a Ray job's working dir has no ``.git``). Should no
    worker answer within a minute, the driver's own fingerprint stands in, with the workers'
    device kind and thread count from their placement (only then does the driver load torch).
    """
    try:
        worker = ray.get(pool.call("fingerprint"), timeout=60)
    except Exception:  # noqa: BLE001 - an older or lost worker: the driver's stands in
        worker = {}
    if worker:
        sha, dirty = runtime_fingerprint.git_state()
        fp = {**worker, "git_sha": sha, "git_dirty": dirty}
    else:
        placement = pool.placement
        on_gpu = placement.num_gpus > 0 and placement.device != "cpu"
        device = "cuda" if on_gpu else "cpu"
        fp = runtime_fingerprint.fingerprint(device, threads=placement.threads)
    tracker.set_tags(tracker.parent_id, runtime_fingerprint.tags(fp))
    text = runtime_fingerprint.to_json(fp)
    tracker.log_text(tracker.parent_id, text, runtime_fingerprint.ARTIFACT)
    return fp


def show_fingerprint(result: SweepResult, fp: dict[str, str]) -> None:
    """Add the fingerprint's line to the summary's header (and the printed summary)."""
    result.extras["fingerprint"] = fp
    device = fp.get("device", "?") + (f" ({fp['device_name']})" if fp.get("device_name") else "")
    result.extras["header"] = [  # the device the workers planned on, not the cluster setting
        tables.timing_line(line, device) for line in result.extras["header"]
    ]
    result.extras["header"].extend(runtime_fingerprint.header_lines(fp))
    result.summary = tables.summary_text(
        result.extras["header"], result.verdict, result.table, result.url, result.ui
    )


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
    if "allow_env_change" in (spec.raw.get("world_model") or {}):  # a checkpoint's sweep
        params["world_model.allow_env_change"] = spec.raw["world_model"]["allow_env_change"]
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
                fold_log(tracker.tracking_uri)  # the store is one file again
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
            trials = tune_stage(spec, stage, state, pool, index, progress, tracker)
            lines.end_stage()
            tuned = time.perf_counter()
            lines.phase(
                f"stage {stage.key}: re-scoring the top {spec.sweep.rescore_top} configs of "
                f"{labels} on fresh tuning goals, then evaluating the pick and the default "
                f"config on {stage.protocol.test_episodes} held-out test goals"
            )
            compute += finish_stage(spec, stage, state, trials, tracker, pool)
            phases["tuning_s"] += tuned - started
            phases["testing_s"] += time.perf_counter() - tuned
        outcomes.extend(StageOutcome.from_dict(state.stages[k]) for k in keys)
    floors = random_floors(spec, pool)
    results = [o.row(state.sweep_id) for o in outcomes]
    rows = tables.comparison_rows(results, floors)
    result = SweepResult(
        state.sweep_id,
        state.parent_run_id or "",
        state.tracking_uri,
        outcomes,
        floors,
        tables.fit_table(tables.summary_rows(results, floors)),
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


def random_floors(spec: SweepSpec, pool: Pool) -> dict[int, dict[str, float]]:
    """Per horizon, the random-action floor's summary on the test goals (computed by workers)."""
    refs = {
        s.protocol.horizon: pool.call("random_floor", protocol=s.protocol.to_dict(), split="test")
        for s in spec.stages()
    }
    return {horizon: ray.get(ref) for horizon, ref in refs.items()}


def summarize_result(spec: SweepSpec, result: SweepResult, url: str) -> None:
    """Fill in the significance tests, the verdict and the printed summary of ``result``."""
    results = [o.row(result.sweep_id) for o in result.outcomes]
    result.comparisons = runtime.off_driver(
        pairwise, {r.key: r.records for r in results}, {r.key: r.horizon for r in results}
    )
    protocol = spec.protocol
    where = tables.where_text(protocol.env, protocol.env_overrides, spec.world_model)
    result.verdict = tables.verdict(results, result.comparisons, where)
    result.url = url
    result.extras["header"] = tables.header_lines(
        where,
        [r.horizon for r in results],
        protocol.VERSION,
        protocol.fingerprint(),
        [int(r.test.get("n", 0)) for r in results],
        timing=f"batched calls of {spec.sweep.chunk_size} episodes on {spec.cluster['device']}",
    )
    result.summary = tables.summary_text(
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
    """Params every trial run of a variant carries besides its planner config.

    What tells trials of different stages and sweeps apart in the MLflow UI: the planner, the
    world model, the horizon and the protocol's fingerprint. The rest of the protocol and the
    git SHA are the same for every trial of a sweep and are params of the parent run only: a
    param costs a sweep on the embedded SQLite store about 8 KB written per trial.
    """
    return {
        "planner": planner.name,
        "variant": planner.label,
        "stage": stage.key,
        "world_model": spec.world_model,
        "protocol.horizon": stage.protocol.horizon,
        "protocol.fingerprint": stage.protocol.fingerprint(),
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


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """What the pick reads of an ended trial: its config, last report and error (if any).

    Kept instead of Tune's ``Result`` so that a stage run in parts holds no Tune objects of its
    finished parts.
    """

    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None

    @classmethod
    def of(cls, result: Any) -> TrialResult:
        """From a Tune ``Result``, without Tune's bookkeeping keys (:data:`TUNE_BOOKKEEPING`)."""
        error = None if result.error is None else one_line(result.error)
        metrics = {k: v for k, v in (result.metrics or {}).items() if k not in TUNE_BOOKKEEPING}
        return cls(dict(result.config or {}), metrics, error)


TUNE_BOOKKEEPING = frozenset(
    {
        "config",
        "date",
        "timestamp",
        "time_this_iter_s",
        "time_total_s",
        "time_since_restore",
        "iterations_since_restore",
        "pid",
        "hostname",
        "node_ip",
        "experiment_tag",
        "checkpoint_dir_name",
        "should_checkpoint",
        "done",
    }
)
"""Keys Tune adds to every result that the pick never reads (half a trial's result: a copy of its
config, times, host): :class:`TrialResult` drops them. ``trial_id`` and ``training_iteration``
stay."""


def part_name(stage: Stage, part: int) -> str:
    """The Tune experiment (folder) of a stage's ``part``: ``H6``, then ``H6-part2``, ..."""
    return stage.key if part == 0 else f"{stage.key}-part{part + 1}"


def tune_stage(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    pool: Pool,
    index: int,
    progress: bool,
    tracker: Tracker,
) -> list[TrialResult]:
    """Run (or restore and finish) the stage's Tune experiments; every trial's result.

    A stage of more than ``sweep.segment_trials`` trials runs as successive experiments of at
    most that many trials (``H6``, ``H6-part2``, ...), which share the stage's searcher (one TPE
    per variant over all its trials, and one budget) and schedulers (ASHA's rungs). Tune keeps
    every trial of an experiment in the driver's memory and rewrites them all in each state
    snapshot (about 30 KB and 9 KB a trial); in parts, the driver holds one part's trials and
    the finished parts' :class:`TrialResult` s. Between parts no trial runs: the next part
    starts when the last trial of the previous one has ended.

    Resume restores the parts in order: a finished part returns at once, the interrupted one
    continues, and the searcher then continues from the state the last restored part saved.
    Tune saves no scheduler state: a restored part runs with ASHA as it was when the part was
    created, and the parts after it with ASHA's rungs filled from the resume on.
    """
    search, scheduler = stage_search(spec, stage, index, progress)
    sizes = part_sizes(spec, search.total)
    context = {**stage_context(spec, stage, state), "gates": gates(spec, stage, pool, sizes)}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), trial_resources(spec.cluster)
    )
    results: list[TrialResult] = []
    freeze_heap()
    release_free_memory()  # what the spec's validation and the stage's setup freed
    part = 0
    while True:
        path = Path(state.folder) / part_name(stage, part)
        # every part before this one ran its full size (else it raised below)
        size = sizes[part] if part < len(sizes) else 0
        restored = tune.Tuner.can_restore(path)
        if restored:
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        elif search.remaining:
            tuner = new_tuner(
                spec, stage, state, pool, trainable, progress, search, scheduler, part, size
            )
        else:
            break
        with snapshot_period(state_period(min(spec.sweep.segment_trials, search.total))):
            grid = tuner.fit()
        # Interrupted (SIGINT): Tune returns early, with trials still running or never created
        # (the searcher creates them lazily), so both counts are checked.
        if len(grid) < size or grid.num_terminated + grid.num_errors < len(grid):
            raise KeyboardInterrupt(f"stage {stage.key} was interrupted")
        results.extend(TrialResult.of(r) for r in grid)
        if restored:  # Tune ran a copy of the searcher (unpickled with the part): take its state
            search.restore_from_dir(str(path))
        frozen = len(grid) > FREEZE_ABOVE  # ran with a HeapFreezer
        del grid, tuner
        release_heap(frozen)
        part += 1
    if tracker.resumed:
        supersede(tracker, stage, tracker.known_trials.get(stage.key, set()))
    return results


def part_sizes(spec: SweepSpec, total: int) -> list[int]:
    """The trial counts of a stage's parts (Tune experiments): ``segment_trials``, the rest last."""
    step = spec.sweep.segment_trials
    return [min(step, total - start) for start in range(0, total, step)]


def gates(spec: SweepSpec, stage: Stage, pool: Pool, sizes: Sequence[int]) -> dict[str, int]:
    """Each part's first trials, which start together (``WorkerPool.gate``): part -> count."""
    first = concurrency(spec, pool)
    return {part_name(stage, part): min(first, size) for part, size in enumerate(sizes)}


def supersede(tracker: Tracker, stage: Stage, known: set[str]) -> None:
    """End KILLED the runs of a resumed stage's trials that Tune lost with the killed driver.

    Only in a resumed sweep: in a sweep that was never stopped, every trial run was made by
    this driver for a trial Tune knows, and the check would read every run of the stage.
    ``known``: the trial ids of every part of the stage.
    """
    try:
        n = tracker.supersede(stage.key, known)
    except Exception as error:  # noqa: BLE001 - MLflow down: the runs stay as they are
        n, why = 0, f"{type(error).__name__}: {error}"
        live.of(tracker.sweep_id).phase(f"stage {stage.key}: superseding skipped ({why})")
    if n:
        live.of(tracker.sweep_id).phase(
            f"stage {stage.key}: {n} run(s) of trials lost with the killed driver's "
            f"last Tune state ended KILLED, tagged {SUPERSEDED}"
        )


def release_heap(frozen: bool) -> None:
    """Free a finished part's Tune objects (between parts: no trial runs), freeze what lives.

    Tune's trial objects sit in reference cycles, so only a collection frees them. A part of at
    most :data:`FREEZE_ABOVE` trials ran without :class:`HeapFreezer`: its objects are not
    frozen, and a full collection scans only them (tens of milliseconds). A bigger part's were
    frozen as it ran: they are unfrozen first, and the collection scans every object of the
    driver (the imports' too: about 0.3 s on 2 cores).
    """
    import gc

    if frozen:
        gc.unfreeze()
    freeze_heap()
    release_free_memory()  # the freed objects' pages, back to the system


def freeze_heap(generation: int = 2) -> None:
    """Exclude the objects alive now (torch, Ray, the modules) from later garbage collections.

    Collects ``generation`` first (2: everything; 1: the young generations only, milliseconds),
    so that what is frozen is mostly alive.

    A full collection scans every tracked object (the imports alone leave about 360,000): in a
    450-trial sweep one paused the Tune loop for 0.29 s (``grasplab bench platform --trials N``
    counts these pauses). Frozen objects are never scanned (and never freed: they live as long
    as the driver anyway). :class:`HeapFreezer` does the same for the trials' objects.
    """
    import gc

    gc.collect(generation)
    gc.freeze()


FREEZE_ABOVE = 1000
"""A Tune experiment of more trials than this freezes its heap as it runs (:class:`HeapFreezer`).

Up to this size a full collection, which scans the trials' objects (about 130 per trial) and
not the imports' (frozen when the stage starts), pauses the loop for well under 100 ms, and the
objects of a part that has ended are freed by the collection before the next part.
"""


class HeapFreezer(tune.Callback):
    """Tune callback (driver side): freeze the heap every ``period_s`` seconds of the loop.

    Tune keeps every trial's objects (about 130 tracked per trial) for the whole stage, and a
    full garbage collection scans them all: at 10,000 trials such pauses reached 0.94 s, inside
    a result's processing ("performance bottleneck" warnings). Every ``period_s`` the young
    generations are collected (milliseconds) and everything alive is frozen, so a full
    collection scans only what came since. Freezing is O(1); cyclic garbage already in the old
    generation at that moment is kept, not freed.
    """

    def __init__(self, period_s: float = 10.0) -> None:
        self.period_s = period_s
        self._last = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Freeze when ``period_s`` has passed since the last freeze."""
        now = time.monotonic()
        if now - self._last >= self.period_s:
            self._last = now
            freeze_heap(generation=1)


class ForgetEnded(tune.Callback):
    """Tune callback (driver side): drop an ended trial's running statistics.

    For every numeric key of a result Tune keeps, per trial, its min, max, mean and last value
    and two running windows (``Trial.metric_analysis``, ``Trial.metric_n_steps``): about 17 KB
    of the driver's memory and 5 KB of the experiment state per tiny trial, kept for the whole
    stage and rewritten in every state snapshot. They serve ``ExperimentAnalysis.get_best_trial``
    with a ``scope`` (grasplab ranks trials on their last results) and the next result of a
    running trial; once a trial has ended (TERMINATED, also when ASHA stopped it, or ERROR) Tune
    never reads them again. Its last result, config and checkpoints stay.
    """

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Forget the statistics of a trial that has ended."""
        forget_statistics(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Forget the statistics of a trial Tune gave up on."""
        forget_statistics(trial)


def forget_statistics(trial: Any) -> None:
    """Empty a Tune trial's per-metric statistics and windows (see :class:`ForgetEnded`)."""
    trial.metric_analysis.clear()
    trial.metric_n_steps.clear()
    trial.run_metadata.invalidate_cache()  # its cached JSON held them too


@contextlib.contextmanager
def snapshot_period(seconds: float) -> Any:
    """Tune's experiment-state period for the ``Tuner.fit`` inside (unless the env sets one)."""
    name = "TUNE_GLOBAL_CHECKPOINT_S"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(seconds)
    try:
        yield
    finally:
        os.environ.pop(name, None)


def stage_search(
    spec: SweepSpec, stage: Stage, index: int, progress: bool
) -> tuple[PlannerSearch, PerPlannerScheduler]:
    """The stage's searcher and scheduler: equal budgets, TPE and ASHA per planner variant."""
    n_chunks = len(chunk_indices(stage.protocol.tune_episodes, spec.sweep.chunk_size))
    search = PlannerSearch(
        {p.label: p.tune_space() for p in stage.planners},
        spec.sweep.num_samples,
        METRIC,
        "max",
        seed=1000 * spec.seed + 100 * index,
        n_startup_trials=min(10, max(2, spec.sweep.num_samples // 3)),
        defaults={p.label: default_point(p, progress) for p in stage.planners},
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
    return search, PerPlannerScheduler(asha)


def new_tuner(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    pool: Pool,
    trainable: Any,
    progress: bool,
    search: PlannerSearch,
    scheduler: PerPlannerScheduler,
    part: int,
    size: int,
) -> tune.Tuner:
    """A fresh Tuner for ``size`` trials of the stage, as its ``part``."""
    n_chunks = len(chunk_indices(stage.protocol.tune_episodes, spec.sweep.chunk_size))
    params = {p.label: variant_params(spec, stage, p) for p in stage.planners}
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=concurrency(spec, pool)),
            scheduler=scheduler,
            num_samples=size,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=part_name(stage, part),
            storage_path=state.folder,
            verbose=0,
            callbacks=[
                TrialLogger(state.sweep_id, stage, params, progress, n_chunks),
                *([HeapFreezer()] if size > FREEZE_ABOVE else []),
                ForgetEnded(),
            ],
            failure_config=tune.FailureConfig(max_failures=spec.sweep.max_failures),
            # Keep every checkpoint (a few KB of JSON each): with num_to_keep=1 a driver killed
            # between a trial's newer checkpoint and Tune's next experiment snapshot left the
            # snapshot pointing at a deleted checkpoint, and the resumed trial failed.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def default_point(planner: PlannerSpec, progress: bool = True) -> dict[str, Any] | None:
    """The variant's default config as its search's first trial (None, said once, if outside)."""
    point, why = planner.default_point()
    if point is None and planner.search_space and progress:
        print(f"planners.{planner.label}: no default trial ({why})", flush=True)
    return point


def concurrency(spec: SweepSpec, pool: Pool) -> int:
    """Concurrent trials: ``sweep.trials_per_worker`` per worker.

    A trial sends one chunk at a time and waits for the driver to take its report before the
    next; a second trial per worker keeps a chunk queued in the dispatcher meanwhile, so the
    workers do not idle between reports.
    """
    return max(1, spec.sweep.trials_per_worker * pool.placement.num_workers)


# --- the re-score before the pick --------------------------------------------------------------
#
# The rule. A variant's search scores every trial on the same ``tune_episodes`` tuning goals; the
# top trials often tie (3 of 24 at 20/32 in issue 21) and the best of many noisy scores is
# biased upwards (the winner's curse). So before the pick, the ``sweep.rescore_top`` best trials
# by :func:`ranked_results` that were scored on every tuning goal (and have distinct configs)
# are re-scored on ``sweep.rescore_episodes`` FRESH tuning goals (default: as many again): the
# tuning split's goals ``tune_episodes .. tune_episodes + rescore_episodes - 1``, i.e. the split
# extended beyond the goals the search saw (its task sequence is checked to be prefix-stable,
# so these goals are new and the search's goals unchanged). The pick is the candidate with the
# most successes over ALL its tuning goals (search + fresh: more goals, and every candidate is
# scored on the same ones); ties go to fewer mean model steps per episode (deterministic), then
# to the search's order. The held-out test goals are never used before the pick. With fewer
# than 2 candidates, ``rescore_top`` < 2, or a tuning split that cannot be extended (a dataset
# split used up), the pick is the search's best and the outcome says why.


def finish_stage(
    spec: SweepSpec,
    stage: Stage,
    state: runtime.SweepState,
    trials: Sequence[TrialResult],
    tracker: Tracker,
    pool: Pool,
) -> float:
    """Per variant: re-score, pick, evaluate the pick and the default on the test goals, log.

    The pick follows the re-score rule (see :func:`rescore_and_pick`). The default config
    (:meth:`~grasplab.platform.config.PlannerSpec.default_config`) is evaluated on the same
    test goals, unless the pick is the default (then its results are the pick's), so that the
    table can set tuned against untuned with a paired test. Every variant's test chunks are
    dispatched at once, so the pool never idles between them.

    Returns:
        Worker seconds spent (the stage's trials, re-scores and test evaluations).
    """
    n_chunks = len(chunk_indices(stage.protocol.tune_episodes, spec.sweep.chunk_size))
    results = [r for r in trials if r.config]
    compute = sum(figures(r.metrics).get("compute_time", 0.0) for r in results if r.metrics)
    spent: list[float] = []
    picks = [
        pick_and_submit(spec, stage, pool, planner, results, n_chunks, spent)
        for planner in stage.planners
    ]
    for pick in picks:
        outcome, test_compute = gather_outcome(stage, pick, n_chunks)
        compute += test_compute
        log_outcome(tracker, stage, outcome)
        state.stages[outcome.key] = outcome.to_dict()
        state.save()
    return compute + sum(spent)


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.sweep.main",
        "parse_args": "grasplab.cli.sweep.parser",
        "ranked_results": "grasplab.platform.pick.ranked_results",
        "best_result": "grasplab.platform.pick.best_result",
        "rescore_candidates": "grasplab.platform.pick.rescore_candidates",
        "fresh_tuning_goals": "grasplab.eval.protocol.fresh_tuning_goals",
        "rescore_row": "grasplab.platform.pick.rescore_row",
        "pick_rescored": "grasplab.platform.pick.pick_rescored",
        "rescore_and_pick": "grasplab.platform.pick.rescore_and_pick",
        "submit_test": "grasplab.platform.pick.submit_test",
        "submit_eval": "grasplab.platform.pick.submit_eval",
        "gather_test": "grasplab.platform.pick.gather_test",
        "fresh_scorer": "grasplab.platform.pick.fresh_scorer",
        "Pick": "grasplab.platform.pick.Pick",
        "log_test_runs": "grasplab.platform.publish.log_test_runs",
        "log_floor_runs": "grasplab.platform.publish.log_floor_runs",
        "PLOT_DPI": "grasplab.platform.publish.PLOT_DPI",
        "log_plots": "grasplab.platform.publish.log_plots",
        "GIF_TRIES": "grasplab.platform.publish.GIF_TRIES",
        "gif_artifact": "grasplab.platform.publish.gif_artifact",
        "log_gifs": "grasplab.platform.publish.log_gifs",
        "gif_candidates": "grasplab.platform.publish.gif_candidates",
        "replay_episodes": "grasplab.platform.publish.replay_episodes",
    },
)
