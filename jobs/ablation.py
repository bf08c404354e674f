"""Ray job: the GRASP ablation study (``grasplab ablate``): GRASP full, no stop-gradient, no sync,
sigma = 0, gamma = 0, CEM sync and LatCo, each tuned with the same budget, in every cell x seed of
the ``study`` group, under one MLflow study run.

    RAY_AUTH_MODE=token ray job submit --address http://<head>:8265 --working-dir . \
        -- python jobs/ablation.py study=learned protocol.horizon=50 [hydra overrides...]

Connects to the job's cluster, logs to the head's MLflow server (cluster=remote; override with
mlflow.tracking_uri=... / cluster.storage_path=...). Exit code 2 on a bad override.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir's grasplab

from grasplab.cli.jobs import run_job  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_job("ablation"))
