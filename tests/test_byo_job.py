"""The example package's sweep through `ray job submit`: the user's code travels with the job.

A private `ray start` head on 127.0.0.1; the job's working dir is the example project and its
package (`byo_patch`: a patch-token world model, a planner and Hydra configs) reaches the driver
and every worker only through `py_modules`; grasplab is the installed one (the head inherits this
process's environment). MLflow is SQLite in a tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

from grasplab.platform.testing import BIN, ray_head, trials_and_parents

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples/byo_patch"
NUM_SAMPLES = 2
OVERRIDES = [
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


def test_example_sweep_via_ray_job_submit_with_py_modules(tmp_path):
    runtime_env = {
        "py_modules": ["src/byo_patch"],  # relative to the submitting cwd, as in the README
        "excludes": ["__pycache__", "*.egg-info"],
    }
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = os.environ.get("PYTHONPATH", "")
    assert "byo_patch" not in path and not (EXAMPLE / "byo_patch").exists()  # only py_modules
    with ray_head(num_cpus=2) as head:
        command = [
            str(BIN / "ray"),
            *("job", "submit", "--address", head["dashboard"]),
            *("--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env)),
            *("--", str(BIN / "python"), "-m", "grasplab.platform.jobs", "sweep"),
            *OVERRIDES,
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
