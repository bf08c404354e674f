"""The platform on a cluster, with Ray's own simulation tools: autoscaled GPU placement, node loss,
workers reaching MLflow through the head, a tracking outage, and what listens where.

Every cluster and server here is started by the test on 127.0.0.1 and stopped by it (process
groups, never ``ray stop``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import ray

from grasplab.cli import sweep as cli_sweep
from grasplab.platform import sweep

from .support import (
    BIN,
    MlflowServer,
    fake_autoscaling_cluster,
    free_port,
    is_loopback,
    local_cluster,
    trials_and_parents,
)

pytestmark = pytest.mark.timeout(600)  # a hang is a failure, not a stuck CI

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "grasplab/world_models/checkpoints/wall-mlp-b1"
TINY = [
    "protocol=tiny",
    "~planners.gd",
    "sweep.chunk_size=1",
    "planners.grasp.config.n_steps=30",
    "planners.cem.config.n_iterations=3",
    "report.gif=false",
    "report.plots=false",
]


def run_sweep(tmp_path: Path, overrides: list[str]) -> sweep.SweepResult:
    spec, state = sweep.prepare(overrides, tmp_path)
    try:
        return sweep.run_sweep(spec, state, progress=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def assert_complete(uri: str, trials: int) -> None:
    """Every trial has exactly one FINISHED run with its metrics; nothing is left RUNNING."""
    children, parents = trials_and_parents(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = Counter(r.data.tags["grasplab.trial_key"] for r in children)
    assert len(keys) == trials and max(keys.values()) == 1  # no trial lost, none twice
    assert {r.info.status for r in children} == {"FINISHED"}
    for r in children:  # only a trial scored on every tuning episode has success_rate
        complete = r.data.tags["early_stopped"] == "false"
        assert ("success_rate" in r.data.metrics) == complete
        assert "partial_success_rate" in r.data.metrics


# --- what listens where ----------------------------------------------------------------------


def test_embedded_ray_listens_on_loopback_only(tmp_path):
    script = textwrap.dedent(
        """
        import json, os, sys, ray
        sys.path.insert(0, REPO)  # tests.support
        from grasplab.platform import runtime
        from tests.support import listening_sockets
        assert runtime.connect({"num_cpus": 1}) is True

        @ray.remote
        def f():
            return 1

        ray.get(f.remote())  # a worker process is up too
        print(json.dumps(listening_sockets(os.getpid())))
        ray.shutdown()
        """
    ).replace("REPO", repr(str(REPO)))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sockets = json.loads(done.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, names  # the OS saw Ray's own listeners
    public = [s for s in sockets if not is_loopback(s[1])]
    assert public == [], public


def test_unreachable_cluster_address_fails_fast_with_one_line(tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "grasplab"), "sweep", f"cluster.address=127.0.0.1:{port}", *TINY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("grasplab sweep: error: cluster.address 127.0.0.1:")
    assert "nothing answers" in lines[-1]
    assert time.monotonic() - started < 60


def test_embedded_ray_ignores_a_stale_ray_current_cluster(tmp_path):
    """A dead cluster named in Ray's ``ray_current_cluster`` file is not joined: no hang."""
    temp = Path(tempfile.mkdtemp(prefix="rayc", dir="/tmp"))  # short: Ray's socket paths
    try:
        (temp / "ray").mkdir()
        (temp / "ray/ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")  # dead GCS
        env = {**os.environ, "RAY_TMPDIR": str(temp)}
        env.pop("RAY_ADDRESS", None)
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "grasplab"), "sweep", *TINY, "sweep.num_samples=1"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "random floor" in done.stdout  # the sweep ran to its table
        assert "Failed to connect to GCS" not in done.stderr
        assert list((temp / "ray").glob("session_*")), "the embedded Ray did not use RAY_TMPDIR"
        assert time.monotonic() - started < 200
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("cluster.gpus_per_worker=1", "cluster.num_workers must be set"),
        ("cluster.device=tpu", "cluster.device"),
        ("+cluster.num_gpu=1", "unknown key(s) ['num_gpu']"),
        ("cluster.num_workers=1.5", "whole number"),
    ],
)
def test_bad_cluster_settings_are_config_errors(tmp_path, monkeypatch, capsys, override, needle):
    monkeypatch.chdir(tmp_path)
    assert cli_sweep.main([override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_worker_asking_for_a_gpu_without_cuda_fails_loudly():
    from grasplab.platform.workers import worker_device

    assert str(worker_device("auto", [])) == "cpu"
    assert str(worker_device("cpu", [0])) == "cpu"  # asked for on purpose
    if not __import__("torch").cuda.is_available():
        with pytest.raises(RuntimeError, match="cluster.device=cpu"):
            worker_device("auto", [0])
        with pytest.raises(RuntimeError, match="no CUDA device"):
            worker_device("cuda", [])


# --- autoscaling: GPU workers launched on demand ----------------------------------------------


@pytest.mark.slow  # `grasplab bench platform --nodes` covers it (BENCHMARKS 2b); flaky in the suite
def test_autoscaler_launches_gpu_nodes_for_the_declared_pool(tmp_path):
    with fake_autoscaling_cluster(gpu_nodes=2, head_cpus=2) as cluster:
        result = run_sweep(
            tmp_path,
            [
                *TINY,
                "sweep.num_samples=1",
                f"cluster.address={cluster['address']}",
                "cluster.num_workers=2",
                "cluster.gpus_per_worker=1",
                "cluster.cpus_per_worker=1",
                "cluster.device=cpu",  # fake GPUs have no CUDA
                "cluster.placement_timeout_s=240",
            ],
        )
    workers = result.extras["workers"]
    assert len(workers) == 2
    assert all(w["gpus"] for w in workers)  # each got a (fake) GPU from Ray
    assert len({w["node"] for w in workers}) == 2  # one per launched GPU node ({CPU 1, GPU 1})
    assert all(w["chunks"] >= 1 for w in workers)
    assert_complete(result.tracking_uri, 2)


# --- node loss, and workers that load models:/ through the head's server ---------------------


def register_checkpoint(uri: str) -> str:
    """Log the shipped wall checkpoint as a run's artifacts and register it; its models:/ URI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment("models")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(CHECKPOINT), "checkpoint")
    client.set_terminated(run.info.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    client.create_registered_model("wall-mlp")
    source = f"{run.info.artifact_uri}/checkpoint"
    version = client.create_model_version("wall-mlp", source, run_id=run.info.run_id)
    return f"models:/wall-mlp/{version.version}"


def test_node_lost_mid_sweep_completes_with_models_loaded_through_the_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow", proxied=True)
    server.start()
    try:
        model = register_checkpoint(server.uri)
        # 1.5-CPU workers: the head fits one beside the trials, each worker node one, so a lost
        # node's replacement cannot be placed anywhere (the pool must shrink)
        with local_cluster(head_cpus=2, worker_cpus=[2, 2]) as cluster:
            removed = threading.Event()

            def remove_a_busy_worker_node() -> None:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and not removed.is_set():
                    time.sleep(0.5)
                    if not ray.is_initialized():  # the sweep connects; never auto-init here
                        continue
                    try:
                        names = ray.util.list_named_actors(all_namespaces=True)
                        workers = [
                            ray.get_actor(n["name"], namespace=n["namespace"])
                            for n in names
                            if "-worker-" in n["name"]
                        ]
                        stats = ray.get([w.stats.remote() for w in workers], timeout=10)
                    except Exception:  # noqa: BLE001 - not up yet
                        continue
                    # after its first chunk (models loaded), while most of the sweep remains: on a
                    # fast host a later removal can come after the last chunk sent to that worker
                    busy = {s["node"] for s in stats if s["chunks"] >= 1}
                    for node in list(cluster.worker_nodes):
                        if node.node_id in busy:
                            cluster.remove_node(node, allow_graceful=False)
                            removed.set()
                            return

            killer = threading.Thread(target=remove_a_busy_worker_node, daemon=True)
            killer.start()
            result = run_sweep(
                tmp_path,
                [
                    *TINY,
                    "env=wall",
                    "world_model=checkpoint",
                    f"world_model.spec={model}",
                    "sweep.num_samples=6",
                    f"cluster.address={cluster.address}",
                    "cluster.num_workers=3",
                    "cluster.cpus_per_worker=1.5",
                    "cluster.placement_timeout_s=120",
                    f"mlflow.tracking_uri={server.uri}",
                ],
            )
            killer.join(timeout=5)
        assert removed.is_set(), "no worker node was removed"
        pool = result.extras["pool"]
        assert any("lost" in event for event in pool["events"]), pool
        assert len(pool["alive"]) == 2  # the sweep finished with fewer workers
        driver = result.extras["driver_node"]
        workers = result.extras["workers"]
        # a worker on another node than the driver's loaded the models:/ spec via the server
        assert any(w["node"] != driver and w["loads"] >= 1 for w in workers), workers
        assert all(o.test["n"] == 4 for o in result.outcomes)
        assert_complete(server.uri, 12)
    finally:
        server.stop()


# --- a tracking outage longer than the client's retries ---------------------------------------


def test_mlflow_outage_longer_than_retries_pauses_logging_and_loses_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the client gives up at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    outage = {}

    def outage_after_first_trials() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                if len(trials_and_parents(server.uri)[0]) >= 2:
                    break
            except Exception:  # noqa: BLE001 - experiment not created yet
                continue
        server.stop()
        outage["down"] = time.monotonic()
        time.sleep(12)  # far longer than the client's retry window (0 retries)
        server.start()
        outage["up"] = time.monotonic()

    breaker = threading.Thread(target=outage_after_first_trials, daemon=True)
    breaker.start()
    try:
        result = run_sweep(
            tmp_path,
            [
                *TINY,
                "sweep.num_samples=4",
                f"mlflow.tracking_uri={server.uri}",
                "cluster.num_cpus=2",
            ],
        )
        breaker.join(timeout=60)
        assert "up" in outage, "the server was never restarted"
        out = capsys.readouterr().out
        assert "unreachable" in out and "logging paused" in out and "reachable again" in out
        assert_complete(server.uri, 8)
        assert all(o.test["n"] == 4 for o in result.outcomes)
    finally:
        server.stop()
        os.environ.pop("RAY_ADDRESS", None)


def test_ray_cluster_yaml_binds_private_addresses_and_serves_artifacts():
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "ray_cluster.yaml").read_text())
    head = " ".join(raw["head_start_ray_commands"])
    assert "0.0.0.0" not in head
    assert "--dashboard-host=127.0.0.1" in head
    assert "--host $GRASPLAB_HEAD_IP" in head and "--artifacts-destination" in head
    assert "--node-ip-address=$GRASPLAB_HEAD_IP" in head
    from grasplab.platform.config import load

    gpu = load(["cluster=gpu"]).cluster
    assert gpu["gpus_per_worker"] == 1 and gpu["num_workers"] == 4 and gpu["address"] == "auto"


def test_pool_whose_worker_wants_cuda_without_it_fails_with_the_cause():
    import torch

    from grasplab.platform.workers import Placement, start_pool

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the worker would start")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, namespace="grasplab")
    try:
        with pytest.raises(RuntimeError, match="failed to start.*no CUDA device"):
            start_pool(f"nocuda-{os.getpid()}", Placement(1, 0.5, 0, 1, "cuda"), "grasplab")
    finally:
        ray.shutdown()


def test_outage_past_the_limit_journals_writes_and_replay_applies_them_once(tmp_path, monkeypatch):
    from grasplab.platform.writer import JOURNAL, QueuedTracker, TrackingOutage

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    try:
        lines: list[str] = []
        tracker = QueuedTracker(server.uri, "grasplab", status=lines.append)
        parent = tracker.start_parent("sw", "sw", {"recipe": "x"})
        key = "sw/H6/t1"
        tracker.child(key, "t1", {"lr": 0.1}, {})
        tracker.flush()
        server.stop()  # the server goes away for longer than the sweep may wait
        tracker.log_metrics(key, {"success_rate": 0.5}, step=1)
        tracker.end(key, "FINISHED")
        with pytest.raises(TrackingOutage, match="unreachable"):
            tracker.close_all("FINISHED", timeout=3)
        tracker.stop()
        assert any("logging paused" in line for line in lines)
        assert tracker.save_journal(tmp_path) >= 3  # metrics, end, the parent's end
        assert (tmp_path / JOURNAL).exists()

        # `--resume`: a NEW driver replays the journal first. A new process has MLflow's default
        # retries and no pooled connection to the stopped server; without this, a stale
        # keep-alive socket from before the restart failed the first request with no retry left.
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        server.start()
        resumed = QueuedTracker(server.uri, "grasplab", status=lines.append)
        resumed.parent_id, resumed.sweep_id = parent, "sw"
        assert resumed.replay_journal(tmp_path) >= 3
        resumed.stop()
        assert not (tmp_path / JOURNAL).exists()
        children, parents = trials_and_parents(server.uri)
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert len(children) == 1 and children[0].info.status == "FINISHED"
        assert children[0].data.metrics["success_rate"] == 0.5
    finally:
        server.stop()


def test_pool_grows_back_when_capacity_returns():
    from grasplab.platform.config import load
    from grasplab.platform.trial import evaluate_chunks
    from grasplab.platform.workers import Placement, start_pool

    spec = load(TINY)
    context = {"planner": "cem", "protocol": spec.protocol.to_dict(), "world_model": "oracle"}
    config = {"n_iterations": 2, "n_samples": 8, "n_elites": 2}
    # the head (1 CPU) cannot host a 1.5-CPU worker: it lives on the one worker node
    with local_cluster(head_cpus=1, worker_cpus=[2]) as cluster:
        sweep.runtime.connect({"address": cluster.address})
        try:
            placement = Placement(1, 1.5, 0, 1)
            pool = start_pool(f"grow-{os.getpid()}", placement, "grasplab", timeout=60)
            (first,) = pool.stats()
            node = next(iter(cluster.worker_nodes))
            cluster.remove_node(node, allow_graceful=False)
            deadline = time.monotonic() + 60  # until Ray has seen the node die: a chunk sent
            while time.monotonic() < deadline and any(  # earlier can still reach its worker
                n["NodeID"] == node.node_id and n["Alive"] for n in ray.nodes()
            ):
                time.sleep(0.5)
            refs = evaluate_chunks(pool.dispatcher, context, config, "tune", [[0, 1]])
            time.sleep(8)  # the chunk waits: its worker is gone and nothing can host another
            assert ray.wait(refs, timeout=0)[0] == []
            cluster.add_node(num_cpus=2)  # capacity returns
            (out,) = ray.get(refs, timeout=120)
            assert len(out["records"]) == 2
            status = pool.status()
            assert any("lost" in e for e in status["events"])
            assert any("joined" in e for e in status["events"]) and len(status["alive"]) == 1
            assert pool.stats()[0]["node"] != first["node"]
            pool.shutdown()
        finally:
            ray.shutdown()
