"""Reports of sweeps and studies: one place for every table, figure and document.

- :mod:`~grasplab.platform.report.rows`: :class:`StageOutcome`, what one planner variant at one
  horizon produced (the sweep's durable record, and the row every table is made of);
- :mod:`~grasplab.platform.report.tables`: comparison and summary rows, the verdict, the
  header, significance rows, text and HTML tables;
- :mod:`~grasplab.platform.report.figures`: the Pareto plot, success against horizon, and the
  GIF replays of test episodes;
- :mod:`~grasplab.platform.report.readback`: a sweep read back from MLflow;
- :mod:`~grasplab.platform.report.document`: ``grasplab report``'s HTML and Markdown;
- :mod:`~grasplab.platform.report.study`: an ablation study's pooled table, tests, bars and
  documents.

The sweep's printed summary, the study's report and ``grasplab report`` all use these.
"""

from __future__ import annotations

import importlib

from grasplab.platform.report.rows import StageOutcome

__all__ = ["StageOutcome"]

MODULES = ("rows", "tables", "figures", "readback", "document", "study")


def __getattr__(name: str) -> object:
    """Submodules on first use; names of the former ``report.py`` fail naming their module."""
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in ("tables", "figures"):
        if hasattr(importlib.import_module(f"{__name__}.{module}"), name):
            raise ImportError(f"{__name__}.{name} moved to {__name__}.{module}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
