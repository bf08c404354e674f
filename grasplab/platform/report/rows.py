"""The row every table is made of (:class:`ResultRow`), and the sweep's stage record.

A :class:`ResultRow` is one planner variant at one horizon on the held-out test goals. The
sweep's printed summary makes them from its :class:`StageOutcome` records
(:meth:`StageOutcome.row`), ``grasplab report`` from the outcome each sweep logged to MLflow
(:mod:`grasplab.platform.report.readback`), and an ablation study by pooling a variant's rows
over its seeds (:mod:`grasplab.platform.study`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ResultRow:
    """One planner variant at one horizon on the held-out test goals.

    Attributes:
        key: Unique name in its table (``grasp-H20``; ``<sweep id>:grasp-H20`` when several
            sweeps are lined up; ``<cell>/H<horizon>/<variant>`` in a study).
        label: Variant label as printed.
        horizon: Plan horizon (model steps).
        test: Summary metrics (``success_rate``, ``ci_low``, ``ci_high``, ``n``, ...).
        records: Per-episode test records.
        tuned: The chosen config's tuned fields.
        default: The variant's default config on the same goals: its summary metrics, ``{}``
            when the variant has no search (or the sweep predates it).
        default_comparison: The paired test of the pick against the default
            (:class:`~grasplab.eval.significance.Comparison` as a dict, ``a`` = the pick).
        default_is_pick: The search picked the default config itself.
        sweep: Sweep id it comes from.
        cell: Study cell (env + world model), ``""`` outside a study.
        seeds: Seeds pooled into it (a study's), else 1.
    """

    key: str
    label: str
    horizon: int
    test: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    tuned: dict[str, Any] = field(default_factory=dict)
    default: dict[str, float] = field(default_factory=dict)
    default_comparison: dict[str, Any] = field(default_factory=dict)
    default_is_pick: bool = False
    sweep: str = ""
    cell: str = ""
    seeds: int = 1


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
            (``grasplab.platform.pick.rescore_row``); empty when there was no re-score.
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

    def row(self, sweep: str = "") -> ResultRow:
        """The outcome's row of the test table."""
        return ResultRow(
            key=self.key,
            label=self.label,
            horizon=self.horizon,
            test=dict(self.test),
            records=list(self.test_records),
            tuned=dict(self.tuned),
            default=dict(self.default_test),
            default_comparison=dict(self.default_comparison),
            default_is_pick=bool(self.default_config) and self.default_config == self.best_config,
            sweep=sweep,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StageOutcome:
        """Inverse of :meth:`to_dict`."""
        data = dict(values)
        data["trials"] = [tuple(t) for t in data.get("trials", [])]
        return cls(**data)


@dataclass
class SweepResult:
    """What a finished sweep returns (and prints).

    Attributes:
        sweep_id: The sweep's unique id.
        parent_run_id: The MLflow parent run.
        tracking_uri: The MLflow store.
        outcomes: One per stage.
        floors: Random-policy floor on the test goals, by horizon.
        table: The printed comparison table (fits 120 columns; abbreviations in its legend).
        ui: Command that opens the MLflow UI.
        wall_time: Seconds from start to end (Ray start included when embedded).
        tune_time: Seconds inside ``Tuner.fit`` and test evaluation (Ray start excluded).
        trial_compute: Worker seconds spent evaluating chunks (tuning trials + test runs).
        num_workers: Size of the worker pool.
        comparisons: Pairwise significance tests of the stages (same horizon, test goals).
        verdict: One sentence saying which differences are significant.
        url: The parent run's page in the MLflow UI's model-training view.
        summary: What ``grasplab sweep`` prints: header, verdict, table, legend, URL.
    """

    sweep_id: str
    parent_run_id: str
    tracking_uri: str
    outcomes: list[StageOutcome]
    floors: dict[int, dict[str, float]]
    table: str
    ui: str
    wall_time: float = 0.0
    tune_time: float = 0.0
    trial_compute: float = 0.0
    num_workers: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Any] = field(default_factory=list)
    verdict: str = ""
    url: str = ""
    summary: str = ""
