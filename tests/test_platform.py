"""The platform in process: placement, budgets, tracking, sweeps on a local Ray, and faults."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.tune.trainable.metadata import _TrainingRunMetadata

from grasplab.cli import sweep as cli_sweep
from grasplab.eval.results import EpisodeResults
from grasplab.platform import sweep, tracking
from grasplab.platform.config import ConfigError
from grasplab.platform.search import LABEL, PlannerSearch
from grasplab.platform.tracking import SUPERSEDED, Tracker, default_tracking, search_all
from grasplab.platform.workers import plan_placement
from grasplab.platform.writer import QueuedTracker

from .support import BIN, stop, sweep_runs, trials_and_parents

CHECKPOINT = Path(__file__).resolve().parents[1] / "grasplab/world_models/checkpoints/wall-mlp-b1"
MAZE_MODEL = CHECKPOINT.parent / "pointmaze-mlp-b1"
TINY = [
    "protocol=tiny",
    "~planners.gd",
    "sweep.chunk_size=2",
    "planners.grasp.config.n_steps=50",
    "planners.cem.config.n_iterations=4",
    "report.gif=false",
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="grasplab", log_to_driver=False)
    yield
    ray.shutdown()


def run_in_process(tmp_path: Path, overrides: list[str], **kwargs) -> sweep.SweepResult:
    spec, state = sweep.prepare(overrides, tmp_path)
    return sweep.run_sweep(spec, state, progress=False, **kwargs)


# --- units -----------------------------------------------------------------------------------


def test_placement_never_asks_for_gpus_on_a_cpu_cluster():
    p = plan_placement({"CPU": 2.0}, None, 0.1)
    assert (p.num_workers, p.num_gpus, p.threads) == (2, 0, 1)
    assert 2 * p.num_cpus + 2 * 0.1 <= 2.0  # workers and the trials feeding them fit
    assert plan_placement({"CPU": 16.0}, 3, 0.05).num_workers == 3


def test_gpu_placement_is_declared_not_inferred_from_what_is_up():
    # a fresh autoscaling cluster holds only its CPU head: the declared GPU pool is still asked
    p = plan_placement({"CPU": 2.0}, 3, 0.05, gpus_per_worker=0.5)
    assert (p.num_workers, p.num_gpus, p.num_cpus) == (3, 0.5, 1.0)
    assert p.bundle() == {"CPU": 1.0, "GPU": 0.5} and p.describe() == "3 x {CPU: 1, GPU: 0.5}"
    assert plan_placement({"CPU": 16.0, "GPU": 2.0}, 8, 0.05, gpus_per_worker=1).num_workers == 8
    with pytest.raises(ValueError, match="num_workers"):
        plan_placement({"CPU": 2.0}, None, 0.05, gpus_per_worker=1)


def test_planner_search_gives_equal_budgets_and_is_seeded():
    from ray import tune

    spaces = {"a": {"x": tune.uniform(0, 1)}, "b": {"y": tune.randint(0, 100)}, "c": {}}

    def draw(seed: int) -> list[dict]:
        search = PlannerSearch(spaces, 4, "success_rate", "max", seed=seed)
        configs = []
        while (config := search.suggest(f"t{len(configs)}")) != PlannerSearch.FINISHED:
            configs.append(config)
            search.on_trial_complete(f"t{len(configs) - 1}", {"success_rate": 0.5})
        return configs

    configs = draw(0)
    assert Counter(c[LABEL] for c in configs) == {"a": 4, "b": 4, "c": 1}
    assert [c[LABEL] for c in configs[:3]] == ["a", "b", "c"]  # round-robin: side by side
    assert configs == draw(0) and configs != draw(1)


def test_tracker_reuses_child_runs_by_key_and_closes_everything(tmp_path):
    uri, artifacts = default_tracking(tmp_path)
    tracker = Tracker(uri, "t", artifacts)
    parent = tracker.start_parent("sweep-1", "sweep-1", {"recipe": "x"})
    first = tracker.child("sweep-1/H6/abc", "run", {"lr": 0.1}, {})
    tracker.end(first, "FINISHED")
    again = Tracker(uri, "t", artifacts)  # a resumed driver: new process, same store
    again.start_parent("sweep-1", "sweep-1", {}, run_id=parent)
    assert again.child("sweep-1/H6/abc", "run", {"lr": 0.1}, {}) == first
    second = again.child("sweep-1/H6/def", "run", {"lr": 0.2}, {})
    again.close_all("KILLED")
    statuses = {r.info.run_id: r.info.status for r in sweep_runs(uri, "t")}
    assert statuses == {parent: "KILLED", first: "KILLED", second: "KILLED"}


def test_resume_supersedes_runs_of_trials_tune_lost_with_the_killed_driver(tmp_path):
    """A trial created after Tune's last snapshot is unknown to the resumed experiment."""
    uri, artifacts = default_tracking(tmp_path)
    tracker = Tracker(uri, "t", artifacts)
    parent = tracker.start_parent("sweep-1", "sweep-1", {})
    runs = {
        (stage, trial): tracker.child(
            f"sweep-1/{stage}/{trial}", "run", {}, {"stage": stage, "trial_id": trial}
        )
        for stage in ("H6", "H12")
        for trial in ("a", "b", "c")
    }
    for run in runs.values():
        tracker.end(run, "FINISHED")
    assert tracker.supersede("H6", {"a", "b", "d"}) == 1
    assert tracker.supersede("H6", {"a", "b", "d"}) == 0  # once
    after = {r.info.run_id: r for r in sweep_runs(uri, "t") if r.info.run_id != parent}
    lost = after[runs["H6", "c"]]
    assert lost.info.status == "KILLED" and SUPERSEDED in lost.data.tags
    kept = [after[r] for k, r in runs.items() if k != ("H6", "c")]
    assert all(r.info.status == "FINISHED" and SUPERSEDED not in r.data.tags for r in kept)


def test_resumed_sweep_ends_the_runs_of_trials_restored_as_ended(tmp_path):
    """Tune's last state had the trial ended; its run's end was lost with the killed driver."""
    from types import SimpleNamespace

    from grasplab.platform.config import load

    stage = load(TINY).stages()[0]
    uri, artifacts = default_tracking(tmp_path)
    first = Tracker(uri, "t", artifacts)
    parent = first.start_parent("s", "s", {})
    tags = {"stage": stage.key}
    lost = first.child(f"s/{stage.key}/a", "a", {}, {**tags, "trial_id": "a"})  # RUNNING
    done = first.child(f"s/{stage.key}/b", "b", {}, {**tags, "trial_id": "b"})
    first.end(done, "FINISHED")
    again = Tracker(uri, "t", artifacts)  # the resumed driver
    again.start_parent("s", "s", {}, run_id=parent)
    tracking.register(again)
    logger = tracking.TrialLogger("s", stage, {"grasp": {}, "cem": {}}, False, n_chunks=2)
    import pyarrow.fs

    fs = pyarrow.fs.LocalFileSystem()
    nowhere = SimpleNamespace(storage_filesystem=fs, trial_fs_path=str(tmp_path / "none"))

    def ended(trial_id: str) -> SimpleNamespace:
        result = {"chunks": 2, "n": 4, "success_rate": 0.5, "training_iteration": 2}
        config = {LABEL: "grasp"}
        return SimpleNamespace(
            trial_id=trial_id,
            status="TERMINATED",
            config=config,
            last_result=result,
            storage=nowhere,
        )

    logger.on_experiment_end([ended("a"), ended("b")])
    runs = {r.info.run_id: r for r in sweep_runs(uri, "t")}
    assert runs[lost].info.status == "FINISHED"
    assert runs[lost].data.tags["early_stopped"] == "false"
    assert runs[lost].data.metrics["success_rate"] == 0.5
    assert "success_rate" not in runs[done].data.metrics  # a run ended before is left alone
    assert again.known_trials == {stage.key: {"a", "b"}}


def test_logging_a_table_again_replaces_it(tmp_path):
    """A sweep resumed after a crash in its report logs comparison.json again: once, not twice."""
    uri, artifacts = default_tracking(tmp_path)
    tracker = Tracker(uri, "t", artifacts)
    parent = tracker.start_parent("sweep-1", "sweep-1", {})
    tracker.log_table(parent, {"planner": ["gd", "cem"], "n": [8, 8]}, "comparison.json")
    tracker.log_table(parent, {"planner": ["gd", "cem"], "n": [100, 100]}, "comparison.json")
    tracker.log_table(parent, {"k": [1]}, "test/gd.json")
    client = tracker.client

    def table(path: str) -> dict:  # MLflow's table format: {"columns": [...], "data": [rows]}
        return json.loads(Path(client.download_artifacts(parent, path, str(tmp_path))).read_text())

    assert table("comparison.json") == {
        "columns": ["planner", "n"],
        "data": [["gd", 100], ["cem", 100]],
    }
    assert table("test/gd.json") == {"columns": ["k"], "data": [[1]]}
    logged = json.loads(client.get_run(parent).data.tags["mlflow.loggedArtifacts"])
    assert logged == [
        {"path": "comparison.json", "type": "table"},
        {"path": "test/gd.json", "type": "table"},
    ]
    tracker.close_all("FINISHED")


def test_embedded_store_is_set_up_for_many_small_writes(tmp_path):
    """WAL, 1 KB pages for a new store, syncs at checkpoints only on this process's links."""
    import sqlite3

    from sqlalchemy import create_engine, text

    uri, artifacts = default_tracking(tmp_path)
    Tracker(uri, "t", artifacts)
    db = sqlite3.connect(tmp_path / "mlflow.db")
    assert db.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    old = tmp_path / "old" / "mlflow.db"  # a store made before: its page size stays
    old.parent.mkdir()
    sqlite3.connect(old).execute("CREATE TABLE x (a)").connection.close()
    Tracker(f"sqlite:///{old}", "t")
    db = sqlite3.connect(old)
    assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()

    def pragmas(url: str) -> tuple[int, int]:
        engine = create_engine(url)
        with engine.connect() as link:
            found = tuple(
                link.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("synchronous", "wal_autocheckpoint")
            )
        engine.dispose()
        return found

    assert pragmas(uri) == (1, tracking.WAL_CHECKPOINT_PAGES)  # NORMAL
    tracker = Tracker(uri, "t", artifacts)
    tracker.start_parent("s", "p", {"a": 1})
    log = tmp_path / "mlflow.db-wal"
    assert log.stat().st_size > 0  # the parent's writes are in the log
    assert tracking.fold_log(uri) and log.stat().st_size == 0
    assert Tracker(uri, "t").client.get_run(tracker.parent_id).data.params == {"a": "1"}
    assert not tracking.fold_log(f"sqlite:///{tmp_path / 'none.db'}")
    assert not tracking.fold_log("http://127.0.0.1:9")
    assert tracking.WAL_CHECKPOINT_PAGES > 1000
    assert pragmas(f"sqlite:///{tmp_path / 'other.db'}") == (2, 1000)  # FULL: not ours


def test_trial_runs_are_found_with_one_query_per_sweep(tmp_path, monkeypatch):
    """A tag search costs time in the number of runs: one per trial made big sweeps quadratic."""
    uri, artifacts = default_tracking(tmp_path)
    tracker = Tracker(uri, "t", artifacts)
    parent = tracker.start_parent("sweep-1", "sweep-1", {})
    made = {k: tracker.child(f"sweep-1/H6/{k}", "run", {}, {}) for k in "abc"}
    resumed = Tracker(uri, "t", artifacts)  # a new driver
    resumed.start_parent("sweep-1", "sweep-1", {}, run_id=parent)
    queries = []
    search = resumed.client.search_runs
    monkeypatch.setattr(
        resumed.client, "search_runs", lambda *a, **k: queries.append(a) or search(*a, **k)
    )
    found = {k: resumed.child(f"sweep-1/H6/{k}", "run", {}, {}) for k in "abcd"}
    assert {k: found[k] for k in "abc"} == made and found["d"] not in made.values()
    assert len(queries) == 1
    assert len(search_all(resumed.client, [resumed.experiment_id], "", page_size=2)) == 5


def test_finishing_a_trial_run_writes_tags_metrics_table_and_status(tmp_path, monkeypatch):
    uri, artifacts = default_tracking(tmp_path)
    tracker = QueuedTracker(uri, "t", artifacts)
    tracker.start_parent("sweep-1", "sweep-1", {})
    handle = tracker.child("sweep-1/H6/a", "run", {"lr": 0.1}, {})
    tracker.flush()
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    reads = []  # the table's upload must not read the run back (its URI is known)
    read = TrackingServiceClient.get_run
    monkeypatch.setattr(
        TrackingServiceClient, "get_run", lambda self, r: reads.append(r) or read(self, r)
    )
    tracker.finish(
        handle,
        "FINISHED",
        {"early_stopped": "false"},
        {"success_rate": 0.5, "x": math.nan},
        3,
        ({"success": [True, False]}, "episodes.json"),
    )
    assert handle not in tracker.open_runs
    tracker.flush()
    assert reads == [] and tracker.artifact_uris == {}  # forgotten when the run ended
    other = tracker.child("sweep-1/test/grasp", "test run", {}, {})
    tracker.end(other, "FINISHED")  # a run ended without a table (a test run)
    tracker.flush()
    assert tracker.artifact_uris == {}
    run = tracker.client.get_run(tracker.run_id(handle))
    assert run.info.status == "FINISHED" and run.data.tags["early_stopped"] == "false"
    assert run.data.metrics == {"success_rate": 0.5}
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert logged == [{"path": "episodes.json", "type": "table"}]
    table = tracker.client.download_artifacts(run.info.run_id, "episodes.json", str(tmp_path))
    assert json.loads(Path(table).read_text())["data"] == [[True], [False]]
    tracker.close_all("FINISHED")


def test_waiting_for_a_writer_that_is_behind_says_so(tmp_path, monkeypatch):
    from grasplab.platform import writer

    monkeypatch.setattr(writer, "STATUS_EVERY_S", 0.3)
    uri, artifacts = default_tracking(tmp_path)
    lines: list[str] = []
    tracker = QueuedTracker(uri, "t", artifacts, status=lines.append)
    tracker.start_parent("sweep-1", "sweep-1", {})
    slow = tracker._do_call

    def behind(*args, **kwargs):  # a busy server: each write takes 0.1 s
        time.sleep(0.1)
        return slow(*args, **kwargs)

    monkeypatch.setattr(tracker, "_do_call", behind)
    handle = tracker.child("sweep-1/H6/a", "run", {"lr": 0.1}, {})
    for step in range(10):
        tracker.log_metrics(handle, {"success_rate": 0.1 * step}, step=step)
    tracker.flush()
    waiting = [line for line in lines if line.startswith("[mlflow] waiting for ")]
    assert waiting and "queued writes to sqlite:///" in waiting[0] and "applied/s" in waiting[0]
    assert tracker.pending() == 0
    history = tracker.client.get_metric_history(tracker.run_id(handle), "success_rate")
    assert len(history) == 10
    tracker.close_all("FINISHED")


def test_a_stage_keeps_of_each_ended_trial_what_the_pick_reads():
    from types import SimpleNamespace

    tune_keys = {k: 1 for k in sweep.TUNE_BOOKKEEPING}
    ours = {"success_rate": 0.5, "chunks": 2, "n": 4, "figures": "{}", "trial_id": "a"}
    result = SimpleNamespace(
        config={LABEL: "grasp", "lr": 0.1},
        metrics={**ours, **tune_keys, "training_iteration": 2},
        error=None,
    )
    kept = sweep.TrialResult.of(result)
    assert kept.metrics == {**ours, "training_iteration": 2} and kept.error is None
    assert kept.config == {LABEL: "grasp", "lr": 0.1}
    failed = sweep.TrialResult.of(
        SimpleNamespace(config={}, metrics=None, error=ValueError("x\ny"))
    )
    assert failed.metrics == {} and failed.error == "x"  # one line: the pick skips it


def test_heap_freezer_freezes_once_its_period_has_passed():
    import gc

    gc.unfreeze()
    try:
        freezer = sweep.HeapFreezer(period_s=3600)
        freezer.on_step_end(0, [])
        assert gc.get_freeze_count() == 0  # the period has not passed
        freezer.period_s = 0
        freezer.on_step_end(1, [])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_state_snapshots_are_rarer_in_bigger_stages():
    assert [sweep.state_period(n) for n in (10, 1000, 3000, 10_000, 100_000)] == [
        30.0,
        30.0,
        90.0,
        300.0,
        300.0,
    ]


# --- sweeps on a local Ray -------------------------------------------------------------------


def test_sweep_two_planners_two_workers_nested_runs_and_test_goals(
    tmp_path, local_ray, monkeypatch
):
    spec, state = sweep.prepare([*TINY, "sweep.num_samples=2", "report.gif=true"], tmp_path)
    # the driver evaluates nothing and loads no statistics or plotting library: the tasks, the
    # random floor and the fresh tuning goals are the workers', the tests and plots a Ray
    # worker's (patched here, in the driver's process only)
    from grasplab.eval import EvalProtocol

    def no_tasks(*args, **kwargs):
        raise AssertionError("the driver built tasks")

    monkeypatch.setattr(EvalProtocol, "tasks", no_tasks)
    for module in ("scipy.stats", "statsmodels", "matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises here
    result = sweep.run_sweep(spec, state, progress=False, num_workers=2)
    monkeypatch.undo()
    assert result.num_workers == 2
    assert result.tracking_uri.startswith("sqlite:///")
    log = Path(result.tracking_uri.removeprefix("sqlite:///") + "-wal")  # folded at the end:
    assert not log.exists() or log.stat().st_size == 0  # mlflow.db alone holds every run
    children, parents = trials_and_parents(result.tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {result.parent_run_id}
    assert Counter(r.data.tags["variant"] for r in children) == {"grasp": 2, "cem": 2}
    # the held-out test goals were evaluated with each planner's best config
    assert [o.label for o in result.outcomes] == ["grasp", "cem"]
    for outcome in result.outcomes:
        assert outcome.test["n"] == 4 and len(outcome.test_records) == 4
        best = [
            r
            for r in children
            if r.data.tags.get("best") == "true" and r.data.tags["variant"] == outcome.label
        ]
        assert len(best) == 1 and best[0].data.metrics["test_n"] == 4
        for key, value in outcome.tuned.items():
            assert best[0].data.params[key] == str(value)
    assert parents[0].data.metrics["grasp/test_n"] == 4
    from mlflow.tracking import MlflowClient

    artifacts = {
        a.path for a in MlflowClient(result.tracking_uri).list_artifacts(result.parent_run_id)
    }
    assert {"comparison.md", "comparison.json", "pareto.png", "test", "gifs"} <= artifacts
    assert "random floor" in result.table
    # the stage's 4 trials (2 per worker) met at the pool's gate before any ran a chunk: each
    # had started its own trial actor, so none ended while another actor was still starting
    assert result.extras["pool"]["gates"] == {"H6": {"expected": 4, "arrived": 4, "opened": "all"}}


EARLY_STOPPING = [
    "protocol=tiny",
    "~planners.grasp",
    "~planners.gd",
    "sweep.chunk_size=2",
    "sweep.num_samples=4",
    "sweep.trials_per_worker=1",  # one trial at a time: ASHA sees them in a fixed order
    "sweep.rescore_top=1",  # the pick is the search's best (the re-score has its own tests)
    # var_scale=0.001 barely moves the agent: it scores 0 on the first chunk and, once a
    # var_scale=0.7 trial has scored above 0 there, ASHA stops it after 2 of 4 episodes; the
    # default (1.0) lies outside the choice, so no default trial; 6 test goals, of which the
    # 0.7 pick solves one (GIFs of a success and a failure)
    "protocol.test_episodes=6",
    "planners.cem.search_space.var_scale.type=choice",
    "~planners.cem.search_space.var_scale.low",
    "~planners.cem.search_space.var_scale.high",
    "+planners.cem.search_space.var_scale.values=[0.001,0.7]",
    "+planners.cem.fixed.n_samples=64",
    "+planners.cem.fixed.n_elites=8",
    "+planners.cem.fixed.n_iterations=4",
]


def test_sweep_tags_early_stopped_trials_prints_progress_and_logs_gifs(tmp_path, local_ray, capsys):
    import re

    import numpy as np
    from mlflow.tracking import MlflowClient
    from PIL import Image

    spec, state = sweep.prepare(EARLY_STOPPING, tmp_path)
    result = sweep.run_sweep(spec, state, progress=True, num_workers=1)
    out = capsys.readouterr().out
    # progress: a line per phase, status lines per stage (not one per trial)
    for phase in ("starting Ray", "worker pool", "stage H6: tuning", "held-out test goals"):
        assert phase in out, phase
    assert re.search(
        r"\[H6\] 4/4 trials done \(1 early-stopped, 0 running\) \| best so far: "
        r"cem \d+% \(n=4\) \| \S+ elapsed, ETA 0s",
        out,
    ), out
    assert re.search(r"report: .*\n(.*\n)*.*done in ", out)
    # early-stopped trials are tagged, with the episodes they were scored on
    children, _ = trials_and_parents(result.tracking_uri)
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        n = run.data.metrics["n"]
        assert run.data.tags["episodes_scored"] == str(int(n))
        assert run.data.metrics["episodes_scored"] == n
        assert run.data.tags["early_stopped"] == ("true" if n < 4 else "false")
        # the success_rate column holds complete trials only; the others' figure is partial
        assert ("success_rate" in run.data.metrics) == (n == 4)
        assert run.data.metrics["partial_success_rate"] >= 0.0
        # one point per report (chunk), the last one logged with the run's end
        client = MlflowClient(result.tracking_uri)
        for name in ("partial_success_rate", "n", "compute_time"):
            history = client.get_metric_history(run.info.run_id, name)
            assert [m.step for m in history] == list(range(1, int(n) // 2 + 1)), name
        assert [m.value for m in client.get_metric_history(run.info.run_id, "n")][-1] == n
    stopped = [r for r in children if r.data.tags["early_stopped"] == "true"]
    assert [r.data.params["var_scale"] for r in stopped] == ["0.001"]
    assert sorted(result.outcomes[0].trial_complete) == [False, True, True, True]
    # a success and a failure GIF, executed in the true env, annotated
    client = MlflowClient(result.tracking_uri)
    gifs = {a.path for a in client.list_artifacts(result.parent_run_id, "gifs")}
    assert gifs == {"gifs/cem_success.gif", "gifs/cem_failure.gif"}
    for kind in ("success", "failure"):
        path = client.download_artifacts(result.parent_run_id, f"gifs/cem_{kind}.gif", tmp_path)
        gif = Image.open(path)
        assert gif.n_frames == spec.protocol.env_steps + 1 and min(gif.size) >= 320
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
        green, red = (np.abs(last[:44] - c).sum(-1) < 60 for c in ((0, 190, 60), (220, 30, 30)))
        assert (green.sum() > 20) == (kind == "success") and (red.sum() > 20) == (kind == "failure")
        assert (last[:44].min(-1) > 200).sum() > 100  # white header text: planner, step counter


def test_sweep_under_mpc_replans_every_trial_and_test_episode(tmp_path, local_ray):
    """``protocol.mode=mpc`` through the platform: tuning trials and the test re-run replan."""
    result = run_in_process(
        tmp_path,
        [
            *TINY,
            "~planners.grasp",
            "sweep.num_samples=1",
            "protocol.mode=mpc",
            "protocol.mpc_execute=2",
            "+planners.cem.fixed.n_samples=16",
            "+planners.cem.fixed.n_elites=4",
            "+planners.cem.fixed.n_iterations=4",
        ],
    )
    (outcome,) = result.outcomes
    assert outcome.test["n"] == 4
    # horizon 6, 2 steps executed per replan: plans over the shrinking 6, 4, 2 steps, each a
    # full CEM solve (4 iterations x 16 samples) plus the plan's own rollout
    steps = 4 * 16 * (6 + 4 + 2) + (6 + 4 + 2)
    assert [r["model_steps"] for r in outcome.test_records] == [steps] * 4
    children, parents = trials_and_parents(result.tracking_uri)
    assert parents[0].data.params["protocol.mode"] == "mpc"
    fingerprint = parents[0].data.params["protocol.fingerprint"]
    assert {r.data.params.get("protocol.fingerprint") for r in children} == {fingerprint}


EVERY_PLANNER = [
    "protocol=tiny",
    "protocol.test_episodes=6",
    "sweep.num_samples=1",
    "report.gif=false",
    "planners.grasp.config.n_steps=50",
    "planners.cem.config.n_iterations=4",
    "planners.gd.config.n_steps=30",
    "+planner@planners.mppi=mppi",
    "+search_space@planners.mppi.search_space=mppi",
    "+planner@planners.latco=latco",
    "+search_space@planners.latco.search_space=latco",
    "+planner@planners.grasp_ref=grasp_reference",
    "+search_space@planners.grasp_ref.search_space=grasp",
    "planners.grasp_ref.config.n_steps=50",
]
DETERMINISTIC = EpisodeResults.DETERMINISTIC


def test_test_episodes_are_the_same_on_one_or_two_workers_and_any_chunk_size(tmp_path, local_ray):
    """Per-episode random streams: every planner's test episodes are bit-identical whether a
    sweep plans them one at a time on one worker or in chunks of 4 on two."""
    one = run_in_process(tmp_path / "one", [*EVERY_PLANNER, "sweep.chunk_size=1"], num_workers=1)
    two = run_in_process(tmp_path / "two", [*EVERY_PLANNER, "sweep.chunk_size=4"], num_workers=2)
    by_key = {o.key: o for o in two.outcomes}
    assert {o.label for o in one.outcomes} >= {"grasp", "cem", "gd", "mppi", "latco", "grasp_ref"}
    assert set(by_key) == {o.key for o in one.outcomes}
    for a in one.outcomes:
        b = by_key[a.key]
        assert a.tuned == b.tuned, a.key  # the same tuning (it is per-episode too)
        ra = sorted(a.test_records, key=lambda r: r["index"])
        rb = sorted(b.test_records, key=lambda r: r["index"])
        assert [r["index"] for r in ra] == list(range(6))
        for field in DETERMINISTIC:
            x = [r[field] for r in ra]
            y = [r[field] for r in rb]
            assert x == y or (str(x) == str(y)), f"{a.key}: {field} differs"
    assert json.dumps(one.floors, sort_keys=True) == json.dumps(two.floors, sort_keys=True)


def test_workers_load_their_model_once_across_trials(local_ray):
    from grasplab.platform.config import load
    from grasplab.platform.trial import chunk_indices, evaluate_chunks
    from grasplab.platform.workers import start_pool

    spec = load([*TINY, "world_model=checkpoint", f"world_model.spec={CHECKPOINT}", "env=wall"])
    placement = plan_placement(ray.cluster_resources(), 2, 0.05)
    pool = start_pool(f"load-once-{os.getpid()}", placement, "grasplab")
    try:
        context = {
            "planner": "cem",
            "protocol": spec.protocol.to_dict(),
            "world_model": spec.world_model,
        }
        chunks = chunk_indices(spec.protocol.tune_episodes, 1)
        for samples in (8, 16, 24):  # three "trials" with different configs
            config = {"n_iterations": 2, "n_samples": samples, "n_elites": 4}
            ray.get(evaluate_chunks(pool.dispatcher, context, config, "tune", chunks))
        stats = ray.get([w.stats.remote() for w in pool.workers])
    finally:
        pool.shutdown()
    assert sum(s["chunks"] for s in stats) == 3 * len(chunks)
    assert [s["loads"] for s in stats if s["chunks"]] == [1] * sum(1 for s in stats if s["chunks"])


def test_first_trials_of_an_experiment_wait_for_each_other_at_the_pools_gate():
    """The gate holds callers until the expected number came, or the timeout since the first."""
    import asyncio

    from grasplab.platform.workers import WorkerPool

    async def scenario() -> tuple[list[str], list[str], str, dict]:
        pool = WorkerPool([], "grasplab")
        first = [asyncio.create_task(pool.gate("H6", 3, 30.0)) for _ in range(2)]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in first)  # 2 of 3: both still held
        third = await pool.gate("H6", 3, 30.0)
        opened = [await t for t in first]
        # a part whose third trial never comes: the two go on after the timeout, a later
        # caller at once
        started = time.monotonic()
        short = await asyncio.gather(pool.gate("H6-part2", 3, 0.3), pool.gate("H6-part2", 3, 0.3))
        assert 0.25 < time.monotonic() - started < 5
        late = await asyncio.wait_for(pool.gate("H6-part2", 3, 0.3), timeout=0.1)
        return [*opened, third], list(short), late, pool.status()["gates"]

    opened, short, late, gates = asyncio.run(scenario())
    assert opened == ["all"] * 3
    assert short == ["timeout"] * 2 and late == "timeout"
    assert gates == {
        "H6": {"expected": 3, "arrived": 3, "opened": "all"},
        "H6-part2": {"expected": 3, "arrived": 3, "opened": "timeout"},
    }


def test_workers_import_what_a_planner_first_needs_in_the_background():
    """torch imports ``torch._dynamo`` on the first optimizer (1.3 s): a worker starts it early."""
    check = (
        "import sys, torch\n"
        "from grasplab.platform import workers as w\n"
        "assert w.DEFERRED_IMPORTS\n"
        "assert not any(m in sys.modules for m in w.DEFERRED_IMPORTS), 'imported already'\n"
        "if sys.argv[1] == 'optimizer':\n"
        "    torch.optim.Adam([torch.zeros(1, requires_grad=True)])\n"
        "else:\n"
        "    w.import_in_background().join(timeout=120)\n"
        "assert all(m in sys.modules for m in w.DEFERRED_IMPORTS), 'not imported'\n"
    )
    for how in ("optimizer", "background"):  # what an optimizer imports; what the thread does
        done = subprocess.run(
            [sys.executable, "-c", check, how], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (how, done.stderr[-2000:])


def test_worker_killed_mid_sweep_loses_no_trial(tmp_path, local_ray):
    spec, state = sweep.prepare([*TINY, "sweep.num_samples=3", "sweep.chunk_size=1"], tmp_path)
    killed = threading.Event()

    def kill_worker_after_two_chunks() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                worker = ray.get_actor(f"{state.sweep_id}-worker-0", namespace="grasplab")
                if ray.get(worker.stats.remote())["chunks"] >= 2:
                    ray.kill(worker, no_restart=False)  # Ray restarts it (max_restarts)
                    killed.set()
                    return
            except ValueError:  # not created yet
                pass
            time.sleep(0.2)

    killer = threading.Thread(target=kill_worker_after_two_chunks, daemon=True)
    killer.start()
    result = sweep.run_sweep(spec, state, progress=False, num_workers=2)
    killer.join(timeout=5)
    assert killed.is_set()
    children, parents = trials_and_parents(result.tracking_uri)
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 6 and {r.info.status for r in children} == {"FINISHED"}
    assert len({r.data.tags["grasplab.trial_key"] for r in children}) == 6
    assert all(o.test["n"] == 4 for o in result.outcomes)


def test_trial_checkpoint_is_the_result_store_of_the_records(tmp_path):
    from ray import tune

    from grasplab.platform.trial import FIGURES, REPORTED, TrialState, checkpoint_records, figures

    state = TrialState()
    for chunk in ([0, 1], [2]):
        records = [
            {
                "index": i,
                "success": i % 2 == 0,
                "time_to_success": 1.0,
                "final_distance": 0.1,
                "min_distance": 0.1,
                "model_steps": 10.0,
                "model_cost": 0.0,
                "plan_time": 0.5,
            }
            for i in chunk
        ]
        state.add({"records": records, "compute_s": 1.0}, elapsed=1.5)
    state.save(tmp_path)
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path))
    assert [r["index"] for r in checkpoint_records(checkpoint)] == [0, 1, 2]
    restored = TrialState.of_checkpoint(checkpoint)
    assert (restored.chunks_done, restored.plan_time, restored.trial_time) == (2, 1.0, 3.0)
    assert checkpoint_records(None) == []
    # what goes through Tune: aggregates only, however many episodes
    metrics = restored.metrics()
    assert metrics["n"] == 3 and metrics["chunks"] == 2
    # numbers only for what ASHA, TPE and the ranking read; the rest in one short string
    numeric = {k for k, v in metrics.items() if isinstance(v, (int, float))}
    assert numeric == {"n", "success_rate", "median_time_to_success", "chunks"}
    assert set(metrics) == numeric | {FIGURES} and len(metrics[FIGURES]) < 400
    unpacked = figures(metrics)
    assert (unpacked["compute_time"], unpacked["trial_time"]) == (2.0, 3.0)
    assert set(REPORTED) <= set(unpacked) and FIGURES not in unpacked
    assert figures(None) == {}


def saved_ids(states: list[Path]) -> set[str] | None:
    """Trial ids in Tune experiment-state files (None while one cannot be read yet)."""
    ids: set[str] = set()
    for path in states:
        try:
            entries = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):
            return None
        ids.update(json.loads(entry[0])["trial_id"] for entry in entries)
    return ids


def tune_trial_states(folder: Path) -> list[tuple[dict, dict]]:
    """Every trial of the Tune experiment states under ``folder``: (trial, runtime metadata)."""
    (path,) = folder.glob("ray_results/*/H6/experiment_state-*.json")
    return [
        tuple(json.loads(part) if isinstance(part, str) else part for part in entry)
        for entry in json.loads(path.read_text())["trial_data"]
    ]


def test_tune_state_per_trial_is_a_few_kb_whatever_the_episodes(tmp_path, local_ray, monkeypatch):
    """32 tuning episodes per trial: their records reach MLflow, not Tune's experiment state."""
    scans: list[str] = []  # the driver's searches of child runs (each reads whole runs)
    children = Tracker.children
    monkeypatch.setattr(
        Tracker, "children", lambda t, where="": scans.append(where) or children(t, where)
    )
    result = run_in_process(
        tmp_path,
        [
            "protocol=tiny",
            "protocol.tune_episodes=32",
            "sweep.chunk_size=8",
            "~planners.grasp",
            "~planners.gd",
            "planners.cem.config.n_iterations=2",
            "sweep.num_samples=2",
            "sweep.rescore_top=0",
            "report.gif=false",
            "report.plots=false",
        ],
        num_workers=2,
    )
    trials = tune_trial_states(tmp_path)
    assert len(trials) == 2
    assert max(meta["last_result"]["n"] for _, meta in trials) == 32  # ASHA may stop one early
    for trial, meta in trials:
        last = meta["last_result"]
        assert last["n"] == 8 * last["chunks"]
        assert len(json.dumps(last)) < 3000
        assert not any(isinstance(v, (list, str)) and len(v) > 400 for v in last.values())
        # an ended trial's running statistics are dropped (sweep.ForgetEnded): Tune kept min,
        # max, mean and two windows of each of 11 numeric keys (4 of ours, 7 of Tune's)
        assert meta["metric_analysis"] == {} and meta["metric_n_steps"] == {}
        # its checkpoints keep no copy of their reports (only the latest does)
        manager = _TrainingRunMetadata.from_json_state(json.dumps(meta)).checkpoint_manager
        kept = manager.best_checkpoint_results
        assert len(kept) == last["chunks"] and all(r.metrics == {} for r in kept)
        assert manager.latest_checkpoint_result.metrics["chunks"] == last["chunks"]
        # the whole per-trial state: 9.8 KB; 20.0 KB with the statistics and 4 checkpoints'
        # reports, 23.7 KB with every figure a number too (the records cost 62 KB a trial)
        size = len(json.dumps(trial)) + len(json.dumps(meta))
        assert size < 11_000, size
    # a sweep never stopped looks up no run of its trials: no superseding (resumed sweeps
    # only), and the orphan check at the end reads the runs still RUNNING only
    assert scans == [tracking.RUNNING]
    # no per-trial logger files (Tune's JSON logger wrote 3 per trial, twice)
    for name in ("result.json", "params.json", "params.pkl", "progress.csv"):
        assert not list(tmp_path.rglob(name)), name
    # the per-episode records still land in each trial's MLflow run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    children, _ = trials_and_parents(result.tracking_uri)
    assert len(children) == 2
    for run in children:
        folder = tmp_path / run.info.run_id
        folder.mkdir()
        table = json.loads(
            Path(
                client.download_artifacts(run.info.run_id, "episodes.json", str(folder))
            ).read_text()
        )
        rows = table["data"] if isinstance(table, dict) else table
        assert len(rows) == int(run.data.tags["episodes_scored"]) > 0


# --- the driver killed and resumed (subprocesses, embedded Ray) ------------------------------


@pytest.mark.parametrize(
    ("parts", "killed_in", "samples"),
    [
        # one Tune experiment for the stage, 12 trials: the kill must land between the moment a
        # trial Tune's only snapshot missed has its run and the end of the stage; with 6 trials
        # that window was about a second on a fast machine, and a loaded one could miss it
        ([], "H6", 6),
        # two experiments of 3 trials, 2 at a time: killed in the second after one of its
        # trials ended (its third trial was created after the part's first state snapshot)
        (["sweep.segment_trials=3", "sweep.trials_per_worker=1"], "H6-part2", 3),
    ],
)
def test_killed_driver_resumes_without_duplicate_runs(tmp_path, parts, killed_in, samples):
    args = [*TINY, f"sweep.num_samples={samples}", "sweep.chunk_size=1", "name=crashy", *parts]
    finished_before = 3 if parts else 0  # the trials of the parts before the killed one
    uri, _ = default_tracking(tmp_path)
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    # Tune's state saved once (at the start): trials that finish before the kill are unknown
    # to the resumed experiment, whose sampler runs others in their place
    first = subprocess.Popen(
        [str(BIN / "grasplab"), "sweep", *args],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "3600"},
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            # touch the SQLite store only once the driver has created it (sweep.json names the
            # parent run): two processes creating one MLflow DB race on its migrations
            created = any(
                json.loads(p.read_text()).get("parent_run_id")
                for p in tmp_path.glob("ray_results/crashy-*/sweep.json")
            )
            saved = list(tmp_path.glob(f"ray_results/crashy-*/{killed_in}/experiment_state*.json"))
            runs = trials_and_parents(uri)[0]
            finished = sum(r.info.status == "FINISHED" for r in runs)
            # one experiment: wait until a trial Tune's snapshot does not know has a run (the
            # MLflow writer creates it a moment after the trial starts), so that one is lost
            known = saved_ids(saved)
            lost = parts or (
                known is not None and any(r.data.tags.get("trial_id") not in known for r in runs)
            )
            if created and saved and finished > finished_before and lost:
                break
            time.sleep(0.5)
        assert first.poll() is None, "the sweep ended before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        time.sleep(2)
        stop(first, grace=5)  # whatever the driver's process group still holds
        log.close()
    children, parents = trials_and_parents(uri)
    assert parents[0].info.status == "RUNNING"  # the kill left it running...

    resumed = subprocess.run(
        [str(BIN / "grasplab"), "sweep", *args, "--resume"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    children, parents = trials_and_parents(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # ...resume closed it
    statuses = Counter(r.info.status for r in children)
    assert statuses["FINISHED"] == 2 * samples and set(statuses) <= {"FINISHED", "KILLED"}
    superseded = [r for r in children if SUPERSEDED in r.data.tags]
    assert all(r.info.status == "KILLED" for r in superseded)
    # one experiment: the killed driver ran a trial after Tune's only snapshot; in parts (a
    # part is over in about a second) the kill lands before or after that moment
    assert superseded or parts
    keys = Counter(r.data.tags["grasplab.trial_key"] for r in children)
    assert max(keys.values()) == 1  # no trial logged twice
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert Counter(r.data.tags["variant"] for r in finished) == {"grasp": samples, "cem": samples}
    if parts:  # every part ran, the searcher's budget held across the kill
        (folder,) = tmp_path.glob("ray_results/crashy-*")
        assert {p.name for p in folder.glob("H6*")} == {"H6", "H6-part2"}


# --- bad input: one line on stderr, exit code 2, no run ------------------------------------


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["planners.grasp.name=nope"], "unknown planner 'nope'"),
        (["protocol.horizon=-3"], "horizon"),
        (["world_model=checkpoint", "world_model.spec=/nonexistent/model"], "/nonexistent/model"),
        (["world_model=checkpoint"], "world_model.spec"),
        (["experiment=nope"], "experiment/nope"),
        (["planners.cem.search_space.n_elites.low=0"], "n_elites"),
        (["sweep.num_samples=0"], "num_samples"),
        (["sweep.segment_trials=0"], "segment_trials"),
    ],
)
def test_bad_config_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys, overrides, needle):
    monkeypatch.chdir(tmp_path)
    assert cli_sweep.main(overrides) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("grasplab sweep: error")
    assert not (tmp_path / "mlflow.db").exists()  # validated before any MLflow run existed


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["planners.grasp.name=nope"],
            "planners.grasp: unknown planner 'nope'; known: ['cem', 'gd', 'grasp', 'latco', "
            "'mppi']",
        ),
        # refused by the checks that build things, which the driver runs in a spawned process
        (
            [*TINY, "world_model=checkpoint", f"world_model.spec={CHECKPOINT}", "env=wall"]
            + ["protocol.action_block=2"],
            f"world_model.spec {str(CHECKPOINT)!r}: world model {str(CHECKPOINT)!r} has "
            "action_dim 2; protocol needs 2 x 2",
        ),
        (  # the same action size, another env than the checkpoint records
            [*TINY, "world_model=checkpoint", f"world_model.spec={CHECKPOINT}", "env=pointmaze"],
            f"world_model.spec {str(CHECKPOINT)!r}: world model {str(CHECKPOINT)!r} was trained "
            "on env 'wall', not the protocol's 'pointmaze' (set env=wall, or use a checkpoint of "
            "pointmaze)",
        ),
        (  # the same env, another maze layout than the checkpoint records
            [*TINY, "world_model=checkpoint", f"world_model.spec={MAZE_MODEL}", "env=pointmaze"]
            + ["env.overrides.layout=large"],
            f"world_model.spec {str(MAZE_MODEL)!r} was trained on pointmaze with layout "
            "'medium' (the protocol's: 'large'); set the env as it was trained "
            "(env.overrides.FIELD=VALUE), or world_model.allow_env_change=true to evaluate the "
            "model on the changed env",
        ),
        (
            ["env=ballnav", "protocol.horizon=400"],
            "env/tasks (ballnav): ballnav: no start/goal pair needs between 0.5 and 0.85 of "
            "horizon*action_block = 400*1 env steps",
        ),
    ],
)
def test_cli_bad_override_exit_code_2(tmp_path, overrides, line):
    done = subprocess.run(
        [str(BIN / "grasplab"), "sweep", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    (err,) = done.stderr.strip().splitlines()
    assert err.startswith(f"grasplab sweep: error: {line}"), err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_checkpoint_is_refused_on_another_env_set_up_unless_allowed():
    """Another maze layout is refused at the config check (the parametrized CLI test), allowed
    with world_model.allow_env_change=true; a change of a task field only is always allowed."""
    from grasplab.platform.config import check_trained_env, load

    base = ["env=pointmaze", "world_model=checkpoint", f"world_model.spec={MAZE_MODEL}"]
    base += ["protocol.tune_episodes=2", "protocol.test_episodes=2"]
    spec = load([*base, "env.overrides.layout=large", "world_model.allow_env_change=true"])
    assert spec.world_model == str(MAZE_MODEL)
    assert spec.raw["world_model"]["allow_env_change"] is True
    (stage,) = spec.stages()
    with pytest.raises(ConfigError, match="trained on pointmaze with layout 'medium'"):
        check_trained_env(str(MAZE_MODEL), stage.protocol, allowed=False)
    tasks_only = load([*base, "+env.overrides.success_radius=0.3"])
    (stage,) = tasks_only.stages()
    check_trained_env(str(MAZE_MODEL), stage.protocol, allowed=False)  # no dynamics change
    with pytest.raises(ConfigError, match="allow_env_change must be true or false"):
        load([*base, "world_model.allow_env_change=maybe"])


def test_env_changes_compare_full_configs_as_the_checkpoint_records_them():
    from grasplab.eval import EvalProtocol
    from grasplab.eval.models import env_changes

    disc = {"obstacles": [[0.0, 0.0, 1.0]]}  # JSON gives lists
    info = {"env": "ballnav", "env_overrides": disc}
    same = EvalProtocol(env="ballnav", env_overrides={"obstacles": ((0.0, 0.0, 1.0),)})
    assert env_changes(info, same) == {}
    faster = EvalProtocol(env="ballnav", env_overrides={**disc, "max_step": 0.5})
    assert env_changes(info, faster) == {"max_step": (0.25, 0.5)}
    default = EvalProtocol(env="ballnav")  # the checkpoint's obstacles are not the default's
    assert list(env_changes(info, default)) == ["obstacles"]
    assert env_changes({"env": "wall"}, default) == {}  # another env: load_model refuses it


NO_TORCH_HOOK = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"the sweep's driver imported {name}")
        return None

sys.meta_path.insert(0, NoTorch())
"""
"""The head of a script run with torch's import refused."""
NO_TORCH = (
    NO_TORCH_HOOK
    + """
from grasplab.cli import main
code = main(["sweep", *sys.argv[1:]])
assert "torch" not in sys.modules
sys.exit(code)
"""
)


def test_sweep_driver_never_imports_torch(tmp_path):
    """The driver coordinates: validation, the floor, the tests, plots and GIFs run elsewhere."""
    args = [*TINY, "sweep.num_samples=2", "report.gif=true"]
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    children, parents = trials_and_parents(default_tracking(tmp_path)[0])
    assert parents[0].info.status == "FINISHED" and len(children) == 4
    client = MlflowClient(default_tracking(tmp_path)[0])
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "gifs")}
    assert any(path.endswith(".gif") for path in logged), logged  # rendered by a worker


NO_TORCH_CONFIG = (
    NO_TORCH_HOOK
    + """
from grasplab.platform.config import load
from grasplab.world_models.manifest import read_manifest

spec = load(sys.argv[1:])
print(len(read_manifest(spec.raw["tasks"]["data"])["shards"]))
print(",".join(stage.protocol.fingerprint() for stage in spec.stages()))
"""
)


def test_a_dataset_task_sweep_fingerprints_its_protocol_without_torch():
    """The Push-T experiment's tasks come from a dataset (the shipped held-out episodes): the
    driver resolves the shipped checkpoint's path and hashes the dataset's manifest into the
    protocol's fingerprint, both without loading torch."""
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_CONFIG, "experiment=pusht"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shards, fingerprints = done.stdout.split()
    assert int(shards) >= 1 and all(len(f) == 12 for f in fingerprints.split(","))


def test_the_shipped_checkpoint_resolver_finds_the_checkpoint_modules_folder():
    from grasplab.platform.config import shipped_checkpoint
    from grasplab.world_models.checkpoint import CHECKPOINTS

    assert shipped_checkpoint("pusht-mlp-b1") == str(CHECKPOINTS / "pusht-mlp-b1")
    assert Path(shipped_checkpoint("pusht-mlp-b1")).is_dir()


def test_resume_without_a_sweep_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_sweep.main(["name=never_ran", "--resume"]) == 2
    assert "no unfinished sweep named 'never_ran'" in capsys.readouterr().err


def test_progress_status_lines_are_periodic_in_logs_and_in_place_on_a_tty():
    from io import StringIO
    from types import SimpleNamespace

    from grasplab.platform.progress import SweepProgress

    def trial(status: str, label: str, n: int, success: float) -> SimpleNamespace:
        result = {"n": n, "success_rate": success}
        return SimpleNamespace(status=status, config={LABEL: label}, last_result=result)

    trials = [
        trial("RUNNING", "grasp", 2, 1.0),  # partial: must not outrank a complete 50%
        trial("TERMINATED", "grasp", 4, 0.5),
        trial("TERMINATED", "cem", 2, 0.0),
    ]

    class Listed(list):  # Tune's trial list, counting how often it is read
        reads = 0

        def __iter__(self):
            Listed.reads += 1
            return super().__iter__()

    for tty in (False, True):
        now, out, Listed.reads = [0.0], StringIO(), 0
        lines = SweepProgress(out=out, tty=tty, every=15.0, now=lambda clock=now: clock[0])
        lines.start_stage("H6", ["grasp", "cem"], 4, "stage H6: tuning")
        for step in range(391):  # Tune's loop steps ten times a second
            now[0] = step / 10
            lines.trials(Listed(trials))
        # the list (every trial of the stage) is read only when a status line is due
        assert Listed.reads == (39 if tty else 2)
        lines.trials(Listed(trials), force=True)  # the stage's end: its last counts
        lines.end_stage()
        text = out.getvalue()
        shown = text.replace("\r\x1b[K", "\n")  # a TTY's in-place updates, one per line
        status = [s for s in shown.splitlines() if "trials done" in s]
        assert status[-1].strip() == (
            "[H6] 2/4 trials done (1 running) | best so far: grasp 50% (n=4), cem 0% (n=2) | "
            "39s elapsed, ETA 39s"
        )
        if tty:  # one line updated in place every second, ended by a newline
            assert text.count("\r") == 40 and text.count("\n") == 2
        else:  # a plain line every 15 s and at the end: no carriage returns in logs
            assert "\r" not in text and len(status) == 3


def test_bench_replays_a_trial_run_into_a_fresh_store_as_it_is_and_bare(tmp_path):
    from grasplab.platform.bench import replay_cost

    source = Tracker(f"sqlite:///{tmp_path / 'src.db'}", "src")
    source.start_parent("s", "s", {})
    tags = {"stage": "H6", "variant": "grasp", "trial_id": "t", "tuned": json.dumps(["lr", "k"])}
    run_id = source.child("s/H6/t", "grasp-t", {"lr": 0.1, "k": 3, "n_steps": 200}, tags)
    figures = {"success_rate": 0.5, "episodes_scored": 4, "ci_low": 0.1, "wall_time": 0.2}
    end = {"early_stopped": "false", "episodes_scored": "4", "chunks": "1"}
    source.finish(run_id, "FINISHED", end, figures, step=1)
    run = source.client.get_run(run_id)
    for bare in (False, True):
        folder = tmp_path / f"replay-{bare}"
        cost = replay_cost(run, 3, folder, bare)
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        made = search_all(client, [client.get_experiment_by_name("store-bench").experiment_id], "")
        kids = [r for r in made if tracking.PARENT in r.data.tags]
        assert len(kids) == 3 and all(r.info.status == "FINISHED" for r in kids)
        own = {tracking.PARENT, tracking.TRIAL_KEY, tracking.SWEEP_ID, tracking.ROLE}
        if bare:
            assert all(set(r.data.params) == {"lr", "k"} for r in kids)
            assert all(set(r.data.metrics) == {"success_rate", "episodes_scored"} for r in kids)
            assert all(set(r.data.tags) == own | {"mlflow.runName"} for r in kids)
        else:
            assert all(r.data.params == run.data.params for r in kids)
            assert all(r.data.metrics == run.data.metrics for r in kids)
            assert all(set(r.data.tags) == set(run.data.tags) for r in kids)
            assert all(r.data.tags["tuned"] == tags["tuned"] for r in kids)
        assert (cost["runs"], cost["tags"]) == (3, len(kids[0].data.tags))
        assert cost["params"] == len(kids[0].data.params) and cost["bytes"] > 0


def test_bench_platform_measures_a_small_sweep_and_what_its_trial_runs_cost_the_store(tmp_path):
    import re

    done = subprocess.run(
        [str(BIN / "grasplab"), "bench", "platform", "--trials", "8", "--store-runs", "5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.search(r"^trials: 9 on 2 workers: sweep [\d.]+ s = [\d.]+ s/trial", done.stdout, re.M)
    store = [line for line in done.stdout.splitlines() if line.startswith("tracking store")]
    assert len(store) == 2 and all("made 5 times" in line for line in store), store
    assert re.search(r"a trial run of this sweep \(\d+ tags, 28 params", store[0])  # GRASP's
    assert "a bare trial run (5 tags, " in store[1]
    written = [int(re.search(r": (\d+) KB written a run", line)[1]) for line in store]
    assert all(kb > 0 for kb in written)
    assert not list(tmp_path.glob(".store-bench-*"))  # the replay stores are removed


def test_bench_splits_the_bytes_written_by_part_of_the_sweep():
    from grasplab.platform.bench import Heartbeat, writer_kind

    assert writer_kind(True, "grasplab bench platform --trials 450") == "driver"
    assert writer_kind(False, "ray::WorldModelWorker.evaluate") == "pool workers"
    assert writer_kind(False, "ray::ImplicitFunc.train") == "trials"
    assert writer_kind(False, "ray::_Inner.run_trial") == "trials"
    assert writer_kind(False, "/venv/ray/raylet --node") == "Ray's processes"
    beat = Heartbeat()
    beat.written = {1: 5 * 2**20, 2: 2**20, 3: 3 * 2**20, 4: 2**20, 5: 7}
    beat.kinds = {1: "driver", 2: "trials", 3: "trials", 4: "pool workers"}  # 5: never titled
    split = beat.written_by()
    assert split == {
        "driver": 5 * 2**20,
        "trials": 4 * 2**20,
        "pool workers": 2**20,
        "Ray's processes": 7,
    }
    assert list(split) == ["driver", "trials", "pool workers", "Ray's processes"]  # largest first
    assert sum(split.values()) == beat.bytes_written


def test_tunes_warning_about_missing_result_files_is_dropped_and_only_that():
    import logging

    from grasplab.platform.runtime import NoResultFiles

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("ray.tune", logging.WARNING, __file__, 1, message, None, None)

    missing = (
        "- run_trial_{0}: FileNotFoundError('Could not fetch metrics for run_trial_{0}: both "
        "result.json and progress.csv were not found at /tmp/x/run_trial_{0}')"
    )
    only_missing = "Failed to fetch metrics for 2 trial(s):\n" + "\n".join(
        missing.format(i) for i in range(2)
    )
    other = f"Failed to fetch metrics for 2 trial(s):\n{missing.format(0)}\n- t1: OSError('disk')"
    keep = NoResultFiles().filter
    assert not keep(record(only_missing))
    assert keep(record(other))  # a real failure still warns, with the whole list
    assert keep(record("Failed to fetch metrics for 0 trial(s):"))
    assert keep(record("Trial t1 errored"))
