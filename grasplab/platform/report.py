"""The sweep's report: comparison table, plots (matplotlib Agg) and a GIF (Pillow)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grasplab.eval import format_cell


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

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StageOutcome:
        """Inverse of :meth:`to_dict`."""
        data = dict(values)
        data["trials"] = [tuple(t) for t in data.get("trials", [])]
        return cls(**data)


def short(value: Any) -> str:
    """Compact text of a config value."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def config_text(tuned: Mapping[str, Any]) -> str:
    """``k=v`` pairs of the tuned fields."""
    return " ".join(f"{k}={short(v)}" for k, v in sorted(tuned.items())) or "(defaults)"


def _tts(metrics: Mapping[str, float]) -> str:
    value = metrics.get("median_time_to_success", math.nan)
    return "-" if value is None or math.isnan(value) else f"{value:.2f} s"


def comparison_rows(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]]
) -> list[dict[str, str]]:
    """Table rows: one per stage, then the random floor at each horizon."""
    rows = [
        {
            "planner": o.label,
            "horizon": str(o.horizon),
            "best config": config_text(o.tuned),
            "test success [95% CI] / median tts": format_cell(o.test),
            "median tts": _tts(o.test),
            "model steps": f"{o.test.get('model_steps', math.nan):.0f}",
            "n": f"{o.test.get('n', 0):.0f}",
        }
        for o in outcomes
    ]
    for horizon, floor in sorted(floors.items()):
        rows.append(
            {
                "planner": "random floor",
                "horizon": str(horizon),
                "best config": "uniform random actions",
                "test success [95% CI] / median tts": format_cell(floor),
                "median tts": "-",
                "model steps": "0",
                "n": f"{floor.get('n', 0):.0f}",
            }
        )
    return rows


def render_table(rows: Sequence[Mapping[str, str]]) -> str:
    """A fixed-width text table (also valid Markdown)."""
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    line = "| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |"
    rule = "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"
    body = ["| " + " | ".join(r[c].ljust(widths[c]) for c in columns) + " |" for r in rows]
    return "\n".join([line, rule, *body])


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4), dpi=100)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated ``(time, success)`` points: less time, more success; sorted by time."""
    valid = sorted((t, s) for s, t in points if not math.isnan(t))
    front, best = [], -1.0
    for t, s in valid:
        if s > best:
            front.append((t, s))
            best = s
    return front


def pareto_plot(outcomes: Sequence[StageOutcome]) -> Any:
    """Success vs median time-to-success of every trial (tuning goals), front per planner."""
    fig, ax = _figure()
    for o in outcomes:
        xs = [t for _, t in o.trials]
        ys = [100 * s for s, _ in o.trials]
        points = ax.scatter(xs, ys, alpha=0.5, label=o.key)
        front = pareto_front(o.trials)
        if front:
            ax.step(
                [t for t, _ in front],
                [100 * s for _, s in front],
                where="post",
                color=points.get_facecolor()[0],
            )
    ax.set_xlabel("median time-to-success (s, tuning goals)")
    ax.set_ylabel("success (%)")
    ax.set_title("success vs time-to-success (trials; Pareto front per planner)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def horizon_plot(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]]
) -> Any:
    """Test success (with 95% CI) vs horizon per planner variant, random floor dashed."""
    fig, ax = _figure()
    for label in dict.fromkeys(o.label for o in outcomes):
        mine = sorted((o for o in outcomes if o.label == label), key=lambda o: o.horizon)
        h = [o.horizon for o in mine]
        y = np.array([100 * o.test["success_rate"] for o in mine])
        low = y - np.array([100 * o.test["ci_low"] for o in mine])
        high = np.array([100 * o.test["ci_high"] for o in mine]) - y
        ax.errorbar(h, y, yerr=[low, high], marker="o", capsize=3, label=label)
    if floors:
        hs = sorted(floors)
        ax.plot(hs, [100 * floors[h]["success_rate"] for h in hs], "k--", label="random floor")
    ax.set_xlabel("horizon (model steps)")
    ax.set_ylabel("test success (%)")
    ax.set_title("success vs horizon (held-out test goals)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_gif(frames: np.ndarray, path: Path, scale: int = 3, fps: int = 8) -> Path:
    """Write uint8 frames ``(T, H, W, 3)`` as a looping GIF, upscaled by ``scale``."""
    from PIL import Image

    images = [
        Image.fromarray(np.ascontiguousarray(f)).resize(
            (f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST
        )
        for f in frames
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def best_outcome(outcomes: Sequence[StageOutcome]) -> StageOutcome:
    """The stage with the highest test success (ties: the larger horizon, then order)."""
    return max(outcomes, key=lambda o: (o.test["success_rate"], o.horizon))
