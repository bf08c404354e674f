"""End to end through `ray job submit` on one private `ray start` head (127.0.0.1).

1. The cluster guide's one-machine recipe: `ray start --head --node-ip-address=127.0.0.1` with
   Ray's local-only switch (tests/support.py RECIPE_*), an `mlflow server` on 127.0.0.1 serving
   artifacts, then `ray job submit --working-dir . -- python jobs/sweep.py ... cluster=remote`
   (free ports instead of 6379 / 8265 / 5000: the machine is shared). Nothing listens beyond
   loopback.
2. The "Bring your own" example package: its job's working dir is the example project and its
   package (`byo_patch`: a patch-token world model, a planner and Hydra configs) reaches the
   driver and every worker only through `py_modules`; grasplab is the installed one (the head
   inherits this process's environment). MLflow is SQLite in a tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .support import (
    BIN,
    is_loopback,
    listening_sockets,
    mlflow_server,
    ray_head,
    sweep_runs,
    trials_and_parents,
)

REPO = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 1
RECIPE_JOB = ["protocol=tiny", f"sweep.num_samples={NUM_SAMPLES}", "cluster=remote"]
"""The overrides of the recipe's job (the cluster guide's command)."""


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    with mlflow_server(folder / "mlflow", proxied=True) as uri, ray_head(num_cpus=2) as head:
        yield {"mlflow": uri, "head": head, "folder": folder}


def submit(head: dict, args: list[str]) -> subprocess.CompletedProcess:
    """The recipe's ``ray job submit --working-dir . -- python jobs/sweep.py ...`` from the repo.

    Ray leaves out of the upload what ``.gitignore`` names (``.venv``, ``mlflow.db``, ...).
    """
    command = [
        *(str(BIN / "ray"), "job", "submit", "--address", head["dashboard"]),
        *("--working-dir", ".", "--", "python", "jobs/sweep.py", *args),
    ]
    return subprocess.run(
        command, cwd=REPO, env=head["env"], capture_output=True, text=True, timeout=420
    )


def test_one_machine_recipe_runs_a_tiny_sweep_tracked_in_mlflow(services):
    storage = services["folder"] / "ray_results"
    args = [
        *RECIPE_JOB,
        f"mlflow.tracking_uri={services['mlflow']}",  # the recipe's 127.0.0.1:5000
        f"cluster.storage_path={storage}",  # the recipe's ~/grasplab/ray_results
    ]
    done = submit(services["head"], args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "random floor" in done.stdout  # the comparison table was printed by the job
    # MLflow's client prints two links per run it ends on a server: silenced (tracking.QUIET_LINKS)
    assert "View run" not in done.stdout + done.stderr
    public = [s for s in listening_sockets(services["head"]["pid"]) if not is_loopback(s[1])]
    assert public == [], public  # the head, its workers and agents: loopback only

    runs = sweep_runs(services["mlflow"])
    parents = [r for r in runs if r.data.tags.get("grasplab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("grasplab.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    variants = Counter(r.data.tags["variant"] for r in children)
    assert variants == {"grasp": NUM_SAMPLES, "cem": NUM_SAMPLES, "gd": NUM_SAMPLES}
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        params = run.data.params
        assert params["planner"] == run.data.tags["variant"]
        assert params["protocol.horizon"] == "6" and params["world_model"] == "oracle"
        assert params["protocol.fingerprint"] == parents[0].data.params["protocol.fingerprint"]
        # the rest of the protocol and the git SHA: on the parent only
        assert "git_sha" not in params and "protocol.version" not in params
        assert parents[0].data.params["protocol.version"] == "1"
        tuned = {"grasp": "noise_scale", "cem": "n_samples", "gd": "lr"}[params["planner"]]
        assert tuned in params
        for metric in ("success_rate", "ci_low", "ci_high", "model_steps", "wall_time"):
            assert metric in run.data.metrics, metric
        assert 0 <= run.data.metrics["ci_low"] <= run.data.metrics["success_rate"] <= 1
    parent_metrics = parents[0].data.metrics
    assert all(parent_metrics[f"{label}/test_n"] == 4 for label in variants)


EXAMPLE = REPO / "examples/byo_patch"
BYO_OVERRIDES = [
    "hydra.searchpath=[pkg://byo_patch.configs]",
    "experiment=byo_vs_baselines",
    "protocol=tiny",
    f"sweep.num_samples={NUM_SAMPLES}",
    "sweep.chunk_size=4",
    "planners.shooting.config.n_rounds=3",
    "planners.grasp.config.n_steps=25",
    "planners.cem.config.n_iterations=3",
    "report.plots=false",
    "report.gif=false",
]


def test_example_sweep_via_ray_job_submit_with_py_modules(services, tmp_path):
    runtime_env = {
        "py_modules": ["src/byo_patch"],  # relative to the submitting cwd, as in the README
        "excludes": ["__pycache__", "*.egg-info"],
    }
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = os.environ.get("PYTHONPATH", "")
    assert "byo_patch" not in path and not (EXAMPLE / "byo_patch").exists()  # only py_modules
    head = services["head"]
    command = [
        str(BIN / "ray"),
        *("job", "submit", "--address", head["dashboard"]),
        *("--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env)),
        *("--", str(BIN / "python"), "-m", "grasplab.platform.jobs", "sweep"),
        *BYO_OVERRIDES,
        f"mlflow.tracking_uri={uri}",
        f"cluster.storage_path={tmp_path / 'ray_results'}",
    ]
    done = subprocess.run(
        command, cwd=EXAMPLE, env=head["env"], capture_output=True, text=True, timeout=480
    )
    (tmp_path / "job.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "random floor" in done.stdout  # the job printed the comparison table

    trials, parents = trials_and_parents(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    labels = Counter(r.data.tags["variant"] for r in trials)
    assert labels == {"shooting": NUM_SAMPLES, "grasp": NUM_SAMPLES, "cem": NUM_SAMPLES}
    model = json.loads(parents[0].data.params["world_model"])
    assert model["target"] == "byo_patch.model:make_model"
    for run in trials:
        assert run.info.status == "FINISHED"
        params = run.data.params
        if run.data.tags["variant"] == "shooting":
            assert params["planner"] == "byo_patch.planner:ShootingPlanner"
            assert {"n_samples", "var_scale", "shrink", "n_rounds"} <= set(params)
        for metric in ("success_rate", "ci_low", "ci_high", "model_steps"):
            assert metric in run.data.metrics, metric
    metrics = parents[0].data.metrics
    for label in ("shooting", "grasp", "cem"):
        assert metrics[f"{label}/test_n"] == 4
