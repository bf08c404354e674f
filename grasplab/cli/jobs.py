"""Entry points of ``ray job submit --working-dir . -- python jobs/<job>.py [overrides]``.

From another working dir (your own project): ``python -m grasplab.cli.jobs <job> [overrides]``.
A job's driver runs on the cluster's head node: it connects to the running cluster (its
``RAY_ADDRESS``), logs to the head's MLflow server and keeps Tune's state outside Ray's temporary
copy of the working directory — the ``cluster=remote`` config, prepended so that the job's own
overrides still win.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.errors import run_command

JOBS: dict[str, list[str]] = {
    "sweep": [],
    "ablation": ["experiment=ablation"],
    "long_horizon": ["experiment=long_horizon"],
    "pusht": ["experiment=pusht"],
    "train": [],
}
"""Job name -> overrides it starts from (``train`` is ``grasplab train``'s job, the others
``grasplab sweep``'s or ``grasplab ablate``'s)."""


def job_overrides(job: str, argv: Sequence[str], home: Path | None = None) -> list[str]:
    """The job's base overrides, ``cluster=remote`` unless a cluster is given, then ``argv``.

    The training job also gets ``root=~/grasplab`` unless a root is given: a Ray job's working
    directory is a temporary copy, so the dataset and the checkpoint go to a lasting folder on
    the head node instead (and the run to the head's MLflow server).
    """
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; known: {sorted(JOBS)}")
    extra = [] if any(a.startswith("cluster=") for a in argv) else ["cluster=remote"]
    if job == "train" and not any(a.startswith("root=") for a in argv):
        extra.append(f"root={(home or Path.home()) / 'grasplab'}")
    return [*JOBS[job], *extra, *argv]


STUDIES = ("ablation",)
"""Jobs that run a study (``grasplab ablate``: the study's cells x seeds) rather than one sweep."""


def run_job(job: str, argv: Sequence[str] | None = None) -> int:
    """Run the job's command (:func:`start`); returns the exit code.

    An error raised while the job runs prints one line (the traceback goes to a log file, or to
    stderr with ``GRASPLAB_DEBUG=1``) and exits with code 1.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    return run_command(f"job {job}", lambda: start(job, args))


def start(job: str, args: Sequence[str]) -> int:
    """The job's command (``grasplab sweep``, ``ablate`` or ``train``) with its overrides."""
    from grasplab.cli import ablate, sweep, train

    command = train if job == "train" else ablate if job in STUDIES else sweep
    return int(command.main(job_overrides(job, args)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grasplab.cli.jobs <job> [overrides]``: a job from any working dir.

    For ``ray job submit --working-dir <your project>``, where ``jobs/*.py`` is not uploaded
    (grasplab itself is installed, or travels in ``py_modules``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in JOBS:
        print(f"usage: python -m grasplab.cli.jobs {{{','.join(JOBS)}}} [overrides...]")
        return 2
    return run_job(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
