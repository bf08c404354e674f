"""Moved to :mod:`grasplab.cli.jobs`; ``python -m grasplab.platform.jobs`` still runs it there."""

from __future__ import annotations

import runpy

from grasplab.moved import moved_names

__getattr__ = moved_names(
    __name__,
    {name: f"grasplab.cli.jobs.{name}" for name in ("JOBS", "job_overrides", "run_job", "main")},
)

if __name__ == "__main__":
    runpy.run_module("grasplab.cli.jobs", run_name="__main__", alter_sys=True)
