"""Ray job: train a world model on the cluster's head node, tracked and registered in MLflow.

    RAY_AUTH_MODE=token ray job submit --address http://<head>:8265 --working-dir . \
        -- python jobs/train.py world_model=mlp env=wall [hydra overrides...]

The training runs in this job's driver process, on the head node: training is single-process
CPU work (no GPU path), and the head holds both the MLflow server it logs to and a lasting
folder for the dataset and checkpoint (``root=~/grasplab``: the job's working dir is a
temporary copy). ``ray job stop`` ends the run KILLED; submitting the same job again resumes
the training in the same run. Defaults: ``cluster=remote`` (the head's MLflow server);
override with ``mlflow.tracking_uri=...`` / ``root=...``. Exit code 2 on a bad override.
Prints the registered ``models:/<name>/<version>`` URI, which ``jobs/sweep.py
world_model=checkpoint world_model.spec=models:/...`` takes.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir's grasplab

from grasplab.cli.jobs import run_job  # noqa: E402


def interrupt(signum: int, frame: object) -> None:
    """``ray job stop`` sends SIGTERM: stop like Ctrl-C, so the MLflow run ends KILLED."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(run_job("train"))
