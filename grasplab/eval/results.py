"""Per-episode results and their summary: numpy only (light to import, e.g. in Tune trials)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grasplab.eval.metrics import summarize


@dataclass
class EpisodeResults:
    """Per-episode results, arrays of length ``N``.

    Attributes:
        index: Task index within the split.
        success: Goal reached in the true env (by the protocol's success rule).
        time_to_success: Planning wall time (s, probes excluded) until the plan first reached
            the goal; NaN for failures.
        final_distance: Distance to the goal at the end of the executed plan (env units).
        min_distance: Smallest distance along the executed plan.
        model_steps: World-model step evaluations spent per episode.
        model_cost: The planner's own cost of its final plan under the model.
        plan_time: Wall time of the batched planning call(s) the episode was part of (s).
    """

    index: np.ndarray
    success: np.ndarray
    time_to_success: np.ndarray
    final_distance: np.ndarray
    min_distance: np.ndarray
    model_steps: np.ndarray
    model_cost: np.ndarray
    plan_time: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)

    @classmethod
    def concat(cls, parts: Sequence[EpisodeResults]) -> EpisodeResults:
        """Concatenate chunks (in order)."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per episode (for tables and artifacts)."""
        fields = [f.name for f in dataclasses.fields(self)]
        return [{f: getattr(self, f)[i].item() for f in fields} for i in range(len(self))]

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> EpisodeResults:
        """Inverse of :meth:`to_records`."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{f: np.asarray([r[f] for r in records]) for f in fields})

    def summary(self, wall_time: float | None = None) -> dict[str, float]:
        """Reported metrics (see :func:`grasplab.eval.metrics.summarize`)."""
        if wall_time is None:
            wall_time = float(np.unique(self.plan_time).sum()) if len(self) else 0.0
        return summarize(
            self.success, self.time_to_success, self.final_distance, self.model_steps, wall_time
        )
