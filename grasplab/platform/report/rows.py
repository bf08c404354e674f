"""What one planner variant at one horizon produced: the sweep's durable record, one row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StageOutcome:
    """What one stage (planner variant x horizon) produced.

    Attributes:
        key: Stage key (``grasp``, ``grasp-H20``).
        label: Planner variant.
        planner: Registry name.
        horizon: Plan horizon of the stage.
        best_trial: Tune trial id of the best config.
        best_config: The best trial's full planner config.
        tuned: The best trial's sampled fields only.
        tune_metrics: The best trial's last report on the tuning goals.
        test: Summary metrics of the best config on the held-out test goals.
        trials: ``(success_rate, median_time_to_success)`` of every trial (tuning goals).
        test_records: Per-episode test results.
        trial_complete: Per entry of ``trials``: scored on every tuning episode (False: stopped
            early by ASHA). Empty (state of an older sweep): all taken as complete.
        rescore: The candidates re-scored on fresh tuning goals before the pick, one dict each
            (``grasplab.platform.sweep.rescore_row``); empty when there was no re-score.
        rescore_note: Why there was no re-score ("" when there was one).
        default_config: The variant's untuned full config ({} for a variant without a search).
        default_test: Summary metrics of the default config on the same test goals.
        default_test_records: Its per-episode test results.
        default_comparison: The paired test of the pick against the default config
            (:class:`~grasplab.eval.significance.Comparison` as a dict, ``a`` = the pick).
    """

    key: str
    label: str
    planner: str
    horizon: int
    best_trial: str
    best_config: dict[str, Any]
    tuned: dict[str, Any]
    tune_metrics: dict[str, float]
    test: dict[str, float]
    trials: list[tuple[float, float]] = field(default_factory=list)
    test_records: list[dict[str, Any]] = field(default_factory=list)
    trial_complete: list[bool] = field(default_factory=list)
    rescore: list[dict[str, Any]] = field(default_factory=list)
    rescore_note: str = ""
    default_config: dict[str, Any] = field(default_factory=dict)
    default_test: dict[str, float] = field(default_factory=dict)
    default_test_records: list[dict[str, Any]] = field(default_factory=list)
    default_comparison: dict[str, Any] = field(default_factory=dict)

    def complete(self) -> list[bool]:
        """Per trial: scored on every tuning episode (all True for an older sweep's state)."""
        return self.trial_complete or [True] * len(self.trials)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StageOutcome:
        """Inverse of :meth:`to_dict`."""
        data = dict(values)
        data["trials"] = [tuple(t) for t in data.get("trials", [])]
        return cls(**data)
