"""Ray job: Success vs horizon table for GRASP, CEM and GD (experiment=long_horizon).

    RAY_AUTH_MODE=token ray job submit --address http://<head>:8265 --working-dir . \
        -- python jobs/long_horizon.py [hydra overrides...]

Connects to the job's cluster, logs to the head's MLflow server (cluster=remote; override with
mlflow.tracking_uri=... / cluster.storage_path=...). Exit code 2 on a bad override.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir's grasplab

from grasplab.cli.jobs import run_job  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_job("long_horizon"))
