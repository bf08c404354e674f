"""Per-episode results and their summary: numpy only (light to import, e.g. in Tune trials)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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
        model_steps: World-model step evaluations the episode cost: until the probe first saw
            it solved (its plan is frozen from then on), else the planner's whole budget.
            Independent of the batch the episode was planned in.
        model_cost: The planner's own cost of its final plan under the model.
        plan_time: Wall time of the batched planning call(s) the episode was part of (s), at
            the chunk size and on the device it ran on.
        model_steps_to_success: Model steps until the plan first reached the goal (exact: the
            planner's count when its probe first saw the episode solved; the whole budget when
            only the final plan was judged); NaN for failures. Unlike ``time_to_success`` it
            belongs to the episode alone, so it is the unit of paired cost comparisons.
    """

    DETERMINISTIC: ClassVar[tuple[str, ...]] = (
        "success",
        "final_distance",
        "min_distance",
        "model_cost",
        "model_steps",
        "model_steps_to_success",
    )
    """Fields that are bit-identical whatever chunk, batch or worker planned the episode (same
    device type and dtype); the wall-clock fields are the batched call's and never are."""

    index: np.ndarray
    success: np.ndarray
    time_to_success: np.ndarray
    final_distance: np.ndarray
    min_distance: np.ndarray
    model_steps: np.ndarray
    model_cost: np.ndarray
    plan_time: np.ndarray
    model_steps_to_success: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.model_steps_to_success.size != self.index.size:  # results made before the field
            self.model_steps_to_success = np.full(self.index.size, np.nan)

    def __len__(self) -> int:
        return int(self.index.size)

    @classmethod
    def concat(cls, parts: Sequence[EpisodeResults]) -> EpisodeResults:
        """Concatenate chunks (in order)."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})

    def select(self, rows: Sequence[int]) -> EpisodeResults:
        """The episodes at positions ``rows`` (in that order)."""
        at = np.asarray(rows, dtype=int)
        fields = [f.name for f in dataclasses.fields(self)]
        return type(self)(**{f: getattr(self, f)[at] for f in fields})

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per episode (for tables and artifacts)."""
        fields = [f.name for f in dataclasses.fields(self)]
        return [{f: getattr(self, f)[i].item() for f in fields} for i in range(len(self))]

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> EpisodeResults:
        """Inverse of :meth:`to_records`."""
        fields = [f.name for f in dataclasses.fields(cls)]
        return cls(
            **{f: np.asarray([r[f] for r in records]) for f in fields if f in records[0]}
            if records
            else {f: np.zeros(0) for f in fields}
        )

    def summary(self, wall_time: float | None = None) -> dict[str, float]:
        """Reported metrics (see :func:`grasplab.eval.metrics.summarize`)."""
        if wall_time is None:
            wall_time = float(np.unique(self.plan_time).sum()) if len(self) else 0.0
        return summarize(
            self.success,
            self.time_to_success,
            self.final_distance,
            self.model_steps,
            wall_time,
            self.model_steps_to_success,
        )
