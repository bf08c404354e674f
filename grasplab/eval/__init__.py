"""Evaluation: the versioned protocol, the batched runner and honest metrics.

``evaluate(protocol, planner, model, split, indices)`` is a pure function to per-episode
results; it is what platform workers, tests and benchmarks run. Attributes load lazily, so that
``grasplab.eval.results`` / ``grasplab.eval.metrics`` (numpy only) import without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EpisodeResults": "grasplab.eval.results",
    "EvalProtocol": "grasplab.eval.protocol",
    "Split": "grasplab.eval.protocol",
    "evaluate": "grasplab.eval.runner",
    "execute": "grasplab.eval.runner",
    "observe": "grasplab.eval.runner",
    "random_floor": "grasplab.eval.runner",
    "reached": "grasplab.eval.runner",
    "format_cell": "grasplab.eval.metrics",
    "summarize": "grasplab.eval.metrics",
    "wilson_interval": "grasplab.eval.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grasplab.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
