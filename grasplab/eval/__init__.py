"""Evaluation: the versioned protocol, the batched runner and honest metrics.

``evaluate(protocol, planner, model, split, indices)`` is a pure function to per-episode
results; it is what platform workers, tests and benchmarks run.
"""

from grasplab.eval.metrics import format_cell, summarize, wilson_interval
from grasplab.eval.protocol import EvalProtocol, Split
from grasplab.eval.runner import (
    EpisodeResults,
    evaluate,
    execute,
    observe,
    random_floor,
    reached,
)

__all__ = [
    "EpisodeResults",
    "EvalProtocol",
    "Split",
    "evaluate",
    "execute",
    "format_cell",
    "observe",
    "random_floor",
    "reached",
    "summarize",
    "wilson_interval",
]
