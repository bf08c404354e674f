"""End to end: a private `ray start` head + `mlflow server`, a tiny sweep via `ray job submit`."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from grasplab.platform.testing import BIN, mlflow_server, ray_head, sweep_runs

REPO = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 2
OVERRIDES = [
    "protocol=tiny",
    "~planners.gd",
    f"sweep.num_samples={NUM_SAMPLES}",
    "sweep.chunk_size=2",
    "planners.grasp.config.n_steps=50",
    "report.gif=false",
]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    with mlflow_server(folder / "mlflow") as uri, ray_head(num_cpus=2) as head:
        yield {"mlflow": uri, "head": head, "folder": folder}


def submit(head: dict, args: list[str]) -> subprocess.CompletedProcess:
    command = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        head["dashboard"],
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        '{"excludes": [".venv", "ray_results", "mlartifacts", "*.db"]}',
        "--",
        str(BIN / "python"),
        "jobs/sweep.py",
        *args,
    ]
    return subprocess.run(command, env=head["env"], capture_output=True, text=True, timeout=420)


def test_ray_job_submit_tiny_sweep_is_tracked_in_mlflow(services):
    storage = services["folder"] / "ray_results"
    args = [
        *OVERRIDES,
        f"mlflow.tracking_uri={services['mlflow']}",
        f"cluster.storage_path={storage}",
    ]
    done = submit(services["head"], args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "random floor" in done.stdout  # the comparison table was printed by the job

    runs = sweep_runs(services["mlflow"])
    parents = [r for r in runs if r.data.tags.get("grasplab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("grasplab.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 * NUM_SAMPLES
    assert Counter(r.data.tags["variant"] for r in children) == {"grasp": 2, "cem": 2}
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        params = run.data.params
        assert params["planner"] == run.data.tags["variant"]
        assert params["protocol.horizon"] == "6" and params["protocol.version"] == "1"
        assert len(params["protocol.fingerprint"]) == 12 and params["world_model"] == "oracle"
        assert "git_sha" in params
        tuned = {"grasp": "noise_scale", "cem": "n_samples"}[params["planner"]]
        assert tuned in params
        for metric in ("success_rate", "ci_low", "ci_high", "model_steps", "wall_time"):
            assert metric in run.data.metrics, metric
        assert 0 <= run.data.metrics["ci_low"] <= run.data.metrics["success_rate"] <= 1
    parent_metrics = parents[0].data.metrics
    assert parent_metrics["grasp/test_n"] == 4 and parent_metrics["cem/test_n"] == 4
