"""The sweep's report: comparison table, plots (matplotlib Agg) and a GIF (Pillow)."""

from __future__ import annotations

import html
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


def _sts(metrics: Mapping[str, float]) -> str:
    value = metrics.get("median_steps_to_success", math.nan)
    return "-" if value is None or math.isnan(value) else f"{value:.0f}"


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
            "median model steps to success": _sts(o.test),
            "model steps": f"{o.test.get('model_steps', math.nan):.0f}",
            "n": f"{o.test.get('n', 0):.0f}",
        }
        for o in outcomes
    ]
    rows = _with_defaults(rows, outcomes, _default_comparison_row)
    for horizon, floor in sorted(floors.items()):
        rows.append(
            {
                "planner": "random floor",
                "horizon": str(horizon),
                "best config": "uniform random actions",
                "test success [95% CI] / median tts": format_cell(floor),
                "median tts": "-",
                "median model steps to success": "0",
                "model steps": "0",
                "n": f"{floor.get('n', 0):.0f}",
            }
        )
    return rows


DEFAULT_SUFFIX = " (default)"
"""Label suffix of a variant's untuned row (its default config on the same test goals)."""


def _with_defaults(
    rows: list[dict[str, str]], outcomes: Sequence[StageOutcome], make: Any
) -> list[dict[str, str]]:
    """``rows`` (one per outcome) with each tuned variant's default row right after its own."""
    out = []
    for row, o in zip(rows, outcomes, strict=True):
        out.append(row)
        if o.default_test:
            out.append(make(o))
    return out


def tuned_vs_default(o: StageOutcome) -> str:
    """``tuned - default: +3 pts, McNemar p=0.34 (only tuned 5 / only default 1)``."""
    c = o.default_comparison
    if o.default_config == o.best_config:
        return "the pick is the default config"
    diff = 100 * (c["success_a"] - c["success_b"])
    return (
        f"tuned - default: {diff:+.0f} pts, {c['success_test']} p={_p(c['p_success'])} "
        f"(only tuned {c['a_only']:.0f} / only default {c['b_only']:.0f})"
    )


def _default_comparison_row(o: StageOutcome) -> dict[str, str]:
    return {
        "planner": o.label + DEFAULT_SUFFIX,
        "horizon": str(o.horizon),
        "best config": f"untuned defaults; {tuned_vs_default(o)}",
        "test success [95% CI] / median tts": format_cell(o.default_test),
        "median tts": _tts(o.default_test),
        "median model steps to success": _sts(o.default_test),
        "model steps": f"{o.default_test.get('model_steps', math.nan):.0f}",
        "n": f"{o.default_test.get('n', 0):.0f}",
    }


def _default_summary_row(o: StageOutcome) -> dict[str, str]:
    return {
        "planner": o.label + DEFAULT_SUFFIX,
        "H": str(o.horizon),
        "SR % [95% CI]": _sr(o.default_test),
        "TTS (s)": _tts(o.default_test).removesuffix(" s"),
        "STS": _sts(o.default_test),
        "steps": f"{o.default_test.get('model_steps', math.nan):.0f}",
        "n": f"{o.default_test.get('n', 0):.0f}",
        "best config": tuned_vs_default(o),
    }


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


def _figure(size: tuple[float, float] = (6, 4)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=100)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated ``(time, success)`` points: less time, more success; sorted by time."""
    valid = sorted((t, s) for s, t in points if not math.isnan(t))
    front, best = [], -1.0
    for t, s in valid:
        if s > best:
            front.append((t, s))
            best = s
    return front


def _timed(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ``(success, time)`` points with a finite, positive time (placeable on a log axis)."""
    return [(s, t) for s, t in points if t is not None and math.isfinite(t) and t > 0]


EARLY = "stopped early (fewer episodes)"


def _count(points: Sequence[Any], shown: Sequence[Any], what: str) -> str:
    """``3 complete trials`` or ``3 complete trials (1 without success, not plotted)``."""
    hidden = len(points) - len(shown)
    return f"{len(points)} {what}" + (f" ({hidden} without success, not plotted)" if hidden else "")


def pareto_plot(outcomes: Sequence[StageOutcome]) -> Any:
    """Success vs median time-to-success (log axis) of every trial on the tuning goals.

    Per planner variant one colour: complete trials filled, trials stopped early by ASHA
    hollow (their success is on fewer episodes), the Pareto front of the complete trials as a
    step line, the chosen config as a star. Trials without any success have no time-to-success
    and are counted in the legend. The legend sits outside the axes.
    """
    fig, ax = _figure((8.5, 4.5))
    for i, o in enumerate(outcomes):
        color = f"C{i % 10}"
        complete = o.complete()
        groups = {
            kind: [p for p, c in zip(o.trials, complete, strict=False) if c == (kind == "complete")]
            for kind in ("complete", "early")
        }
        full, early = _timed(groups["complete"]), _timed(groups["early"])
        ax.scatter(
            [t for _, t in full],
            [100 * s for s, _ in full],
            color=color,
            alpha=0.7,
            label=f"{o.key}: {_count(groups['complete'], full, 'complete trials')}",
        )
        if groups["early"]:
            ax.scatter(
                [t for _, t in early],
                [100 * s for s, _ in early],
                facecolors="none",
                edgecolors=color,
                label=f"{o.key}: {_count(groups['early'], early, EARLY)}",
            )
        front = pareto_front(full)
        if front:
            ax.step([t for t, _ in front], [100 * s for _, s in front], where="post", color=color)
        chosen = _timed(
            [
                (
                    o.tune_metrics.get("success_rate", math.nan),
                    o.tune_metrics.get("median_time_to_success", math.nan),
                )
            ]
        )
        if chosen:
            ax.scatter(
                [chosen[0][1]],
                [100 * chosen[0][0]],
                marker="*",
                s=220,
                color=color,
                edgecolors="black",
                zorder=5,
                label=f"{o.key}: chosen config",
            )
    ax.set_xscale("log")
    ax.set_xlabel("median time-to-success (s, log scale; tuning goals)")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-5, 105)
    ax.set_title("success vs time-to-success per trial (line: Pareto front of complete trials)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def horizon_plot(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]]
) -> Any:
    """Test success (with 95% CI) vs horizon per planner variant, random floor dashed."""
    fig, ax = _figure((8, 4))
    for label in dict.fromkeys(o.label for o in outcomes):
        mine = sorted((o for o in outcomes if o.label == label), key=lambda o: o.horizon)
        h = [o.horizon for o in mine]
        y = np.array([100 * o.test["success_rate"] for o in mine])
        low = np.maximum(0.0, y - np.array([100 * o.test["ci_low"] for o in mine]))
        high = np.maximum(0.0, np.array([100 * o.test["ci_high"] for o in mine]) - y)
        ax.errorbar(h, y, yerr=[low, high], marker="o", capsize=3, label=label)
    if floors:
        hs = sorted(floors)
        ax.plot(hs, [100 * floors[h]["success_rate"] for h in hs], "k--", label="random floor")
    ax.set_xlabel("horizon (model steps)")
    ax.set_ylabel("test success (%)")
    ax.set_title("success vs horizon (held-out test goals)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
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


TRAIL_RGB = (255, 120, 0)
GOAL_RGB = (0, 190, 60)
FAIL_RGB = (220, 30, 30)
HEADER_RGB = (25, 25, 25)


def agent_centres(frames: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres ``(row, col)`` of the agent in each frame and in the goal image.

    The background is the per-pixel median over the frames and the goal image (the agent moves,
    the scene does not); the agent is what differs from it. A frame where nothing differs gets
    NaN.

    Args:
        frames: uint8 ``(T, H, W, 3)``.
        goal: uint8 ``(H, W, 3)``: the goal state rendered.

    Returns:
        ``(T, 2)`` and ``(2,)`` float pixel coordinates.
    """
    stack = np.concatenate([frames, goal[None]]).astype(np.int16)
    background = np.median(stack, axis=0)
    masks = np.abs(stack - background).sum(-1) > 40
    centres = np.full((len(stack), 2), np.nan)
    for i, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        if len(rows):
            centres[i] = rows.mean(), cols.mean()
    return centres[:-1], centres[-1]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def episode_frames(
    frames: np.ndarray,
    goal: np.ndarray,
    reached: Sequence[bool],
    title: str,
    min_side: int = 320,
) -> list[Any]:
    """Annotated PIL images of an executed episode, one per frame.

    Each image is the env's render upscaled (nearest) to at least ``min_side`` pixels, with the
    trail of visited positions, the goal marked, and a header: ``title`` (planner, stage,
    episode), the step counter and whether the goal has been reached (``FAILURE`` on the last
    frame of an episode that never reached it).

    Args:
        frames: uint8 ``(T, H, W, 3)``: the start state then every executed env step.
        goal: uint8 ``(H, W, 3)``: the goal state.
        reached: ``(T,)``: goal reached at or before each frame.
        title: First header line.
        min_side: Smallest side of the image part, in pixels.
    """
    from PIL import Image, ImageDraw

    T, H, W, _ = frames.shape
    if len(reached) != T:
        raise ValueError(f"episode_frames: {len(reached)} reached flags for {T} frames")
    scale = max(1, math.ceil(min_side / min(H, W)))
    font, header = _font(14), 44
    centres, goal_at = agent_centres(frames, goal)
    points = [((c + 0.5) * scale) for r, c in centres if not math.isnan(r)]
    rows = [((r + 0.5) * scale) for r, c in centres if not math.isnan(r)]
    trail = list(zip(points, (y + header for y in rows), strict=True))
    seen = np.cumsum(~np.isnan(centres[:, 0]))
    images = []
    for t in range(T):
        image = Image.new("RGB", (W * scale, H * scale + header), HEADER_RGB)
        image.paste(
            Image.fromarray(np.ascontiguousarray(frames[t])).resize(
                (W * scale, H * scale), Image.NEAREST
            ),
            (0, header),
        )
        draw = ImageDraw.Draw(image)
        if not math.isnan(goal_at[0]):
            gx, gy = (goal_at[1] + 0.5) * scale, (goal_at[0] + 0.5) * scale + header
            ring = max(6, scale * 2)
            draw.ellipse((gx - ring, gy - ring, gx + ring, gy + ring), outline=GOAL_RGB, width=3)
            draw.text((gx + ring + 2, gy - ring), "goal", fill=GOAL_RGB, font=font)
        mine = trail[: int(seen[t])]
        if len(mine) > 1:
            draw.line(mine, fill=TRAIL_RGB, width=max(2, scale // 3))
        for x, y in mine:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=TRAIL_RGB)
        if reached[t]:
            flag, color = "goal reached: SUCCESS", GOAL_RGB
        elif t == T - 1:
            flag, color = "goal not reached: FAILURE", FAIL_RGB
        else:
            flag, color = "goal not reached yet", (200, 200, 200)
        draw.text((6, 4), title, fill=(255, 255, 255), font=font)
        draw.text((6, 23), f"step {t}/{T - 1}", fill=(255, 255, 255), font=font)
        draw.text((W * scale // 3, 23), flag, fill=color, font=font)
        images.append(image)
    return images


def episode_gif(
    frames: np.ndarray,
    goal: np.ndarray,
    reached: Sequence[bool],
    title: str,
    path: Path,
    fps: int = 6,
) -> Path:
    """Write :func:`episode_frames` as a looping GIF (the last frame held for 2 s)."""
    images = episode_frames(frames, goal, reached, title)
    durations = [int(1000 / fps)] * (len(images) - 1) + [2000]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False
    )
    return path


def best_outcome(outcomes: Sequence[StageOutcome]) -> StageOutcome:
    """The stage with the highest test success (ties: the larger horizon, then order)."""
    return max(outcomes, key=lambda o: (o.test["success_rate"], o.horizon))


# --- the printed summary: header, verdict, a table within 120 columns, legend ----------------

WIDTH = 120
"""The printed table fits this many columns."""
LEGEND = (
    "H: plan horizon (model steps); SR: success rate on the n held-out test goals, % with its "
    "95% Wilson CI; TTS: median wall time to success over solved goals (s: the time of the "
    "batched planning call at the chunk size and device in the header); STS: median world-model "
    "steps to success over solved goals (the episode's own, exact); steps: mean world-model "
    "steps per episode; paired cost tests use STS; best config: the tuned fields Optuna picked "
    "(full configs in comparison.json); <planner> (default): its untuned default config on the "
    "same test goals, against the pick by McNemar's exact test on the paired goals (unadjusted "
    "p); random floor: uniform random actions."
)
ALPHA = 0.05
"""Significance level of the verdict (on Holm-adjusted p-values)."""


def _sr(metrics: Mapping[str, float]) -> str:
    rate = metrics.get("success_rate", math.nan)
    if rate is None or math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f} [{100 * metrics['ci_low']:.0f}, {100 * metrics['ci_high']:.0f}]"


def summary_rows(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]]
) -> list[dict[str, str]]:
    """Compact rows of the printed table (abbreviations in :data:`LEGEND`)."""
    rows = [
        {
            "planner": o.label,
            "H": str(o.horizon),
            "SR % [95% CI]": _sr(o.test),
            "TTS (s)": _tts(o.test).removesuffix(" s"),
            "STS": _sts(o.test),
            "steps": f"{o.test.get('model_steps', math.nan):.0f}",
            "n": f"{o.test.get('n', 0):.0f}",
            "best config": config_text(o.tuned),
        }
        for o in outcomes
    ]
    rows = _with_defaults(rows, outcomes, _default_summary_row)
    for horizon, floor in sorted(floors.items()):
        rows.append(
            {
                "planner": "random floor",
                "H": str(horizon),
                "SR % [95% CI]": _sr(floor),
                "TTS (s)": "-",
                "STS": "0",
                "steps": "0",
                "n": f"{floor.get('n', 0):.0f}",
                "best config": "-",
            }
        )
    return rows


def fit_table(rows: Sequence[Mapping[str, str]], width: int = WIDTH) -> str:
    """:func:`render_table` with the LAST column cut (``...``) so every line fits ``width``."""
    if not rows:
        return ""
    columns = list(rows[0])
    last = columns[-1]
    others = sum(max(len(c), *(len(r[c]) for r in rows)) + 3 for c in columns[:-1])
    room = max(len(last), width - others - 4)

    def cut(text: str) -> str:
        return text if len(text) <= room else text[: room - 3] + "..."

    return render_table([{**r, last: cut(r[last])} for r in rows])


def _sr_pct(metrics: Mapping[str, float]) -> str:
    """``25% [5, 70]``: the success rate with its 95% CI, for sentences."""
    rate = metrics.get("success_rate", math.nan)
    if rate is None or math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f}% [{100 * metrics['ci_low']:.0f}, {100 * metrics['ci_high']:.0f}]"


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _find(comparisons: Sequence[Any], a: str, b: str) -> tuple[Any, bool] | None:
    """The comparison of ``a`` and ``b`` and whether it is stored as ``(a, b)``."""
    for c in comparisons:
        if (c.a, c.b) == (a, b):
            return c, True
        if (c.a, c.b) == (b, a):
            return c, False
    return None


def _versus(lead: Any, other: Any, comparisons: Sequence[Any], alpha: float) -> str:
    found = _find(comparisons, lead.key, other.key)
    described = f"{other.label}'s ({_sr_pct(other.test)}"
    if found is None:
        return f"not tested against {described})"
    c, _ = found
    p = c.p_success_adj
    better = lead.test["success_rate"] > other.test["success_rate"]
    word = (
        "significantly higher than" if better and p < alpha else "not significantly different from"
    )
    return f"{word} {described}, p={_p(p)})"


def _tts_clause(group: Sequence[Any], comparisons: Sequence[Any], alpha: float) -> str:
    keys = {o.key: o.label for o in group}
    found = [c for c in comparisons if c.a in keys and c.b in keys and not math.isnan(c.p_tts_adj)]
    significant = [c for c in found if c.p_tts_adj < alpha]
    if not found:
        return "time-to-success not testable (too few goals solved by both)"
    if not significant:
        return f"no time-to-success difference is significant ({found[0].tts_test})"
    return "; ".join(_cost_phrase(c, keys) for c in significant)


def _cost_phrase(c: Any, keys: Mapping[str, str]) -> str:
    """The phrase for one significant cost difference.

    ``GRASP reaches the goal in fewer model steps than CEM (median 3100 steps less, p=...;
    wall seconds to success, median GRASP minus CEM: +0.12 s)``: the tested unit first, the
    wall seconds (of batched calls, not tested) after it.
    """
    cheaper, dearer = (c.a, c.b) if c.tts_diff < 0 else (c.b, c.a)
    sign = 1 if c.tts_diff < 0 else -1
    if getattr(c, "tts_unit", "s") == "model steps":
        head = (
            f"{keys[cheaper]} reaches the goal in fewer model steps than {keys[dearer]} "
            f"(median {abs(c.tts_diff):.0f} steps less, p={_p(c.p_tts_adj)}, {c.tts_test}"
        )
        seconds = getattr(c, "seconds_diff", math.nan)
        if not math.isnan(seconds):
            head += (
                f"; wall seconds to success, median {keys[cheaper]} minus {keys[dearer]}: "
                f"{sign * seconds:+.2f} s"
            )
        return head + ")"
    return (
        f"{keys[cheaper]} solves faster than {keys[dearer]} (median {abs(c.tts_diff):.2f} s "
        f"less, p={_p(c.p_tts_adj)}, {c.tts_test} on wall seconds)"
    )


def verdict(
    outcomes: Sequence[Any],
    comparisons: Sequence[Any],
    where: str,
    alpha: float = ALPHA,
) -> str:
    """One sentence saying which differences are significant (Holm-adjusted p below ``alpha``).

    Per horizon, the planner with the highest test success is set against each other one on
    success, then the significant time-to-success differences are named.

    Args:
        outcomes: Result sets with ``key``, ``label``, ``horizon`` and ``test`` metrics.
        comparisons: :class:`~grasplab.eval.significance.Comparison` of pairs of ``key``.
        where: ``"pointmaze (oracle)"``: env and world model.
        alpha: Significance level.
    """
    clauses = []
    for horizon in sorted({o.horizon for o in outcomes}):
        group = [o for o in outcomes if o.horizon == horizon]
        lead = max(group, key=lambda o: o.test.get("success_rate", -1.0))
        head = (
            f"at H={horizon} on {where}, {lead.label}'s test success "
            f"({_sr_pct(lead.test)}, n={lead.test.get('n', 0):.0f})"
        )
        others = [o for o in group if o is not lead]
        if not others:
            clauses.append(f"{head} has no other planner to compare with")
            continue
        versus = [_versus(lead, o, comparisons, alpha) for o in others]
        joined = versus[0] if len(versus) == 1 else ", ".join(versus[:-1]) + " and " + versus[-1]
        test = next((c.success_test for c in comparisons if c.horizon == horizon), "")
        clauses.append(
            f"{head} is {joined} [{test}, Holm-adjusted, alpha={alpha}]; "
            f"{_tts_clause(group, comparisons, alpha)}"
        )
    text = "; ".join(clauses) or "no results to compare"
    return text[0].upper() + text[1:] + "."


def where_text(env: str, env_overrides: Mapping[str, Any], world_model: str) -> str:
    """``pointmaze[layout=medium] (oracle)``."""
    extra = ",".join(f"{k}={v}" for k, v in sorted(env_overrides.items()))
    return f"{env}{f'[{extra}]' if extra else ''} ({world_model})"


def header_lines(
    where: str,
    horizons: Sequence[int],
    version: str,
    fingerprint: str,
    n: Sequence[int],
    timing: str = "",
) -> list[str]:
    """The summary's first lines: env and world model, horizons, protocol, n, what TTS times.

    ``timing``: e.g. ``batched calls of 8 episodes on cpu`` (what a wall time to success is).
    """
    counts = sorted(set(n))
    lines = [
        f"env / world model: {where}",
        f"horizon(s): {', '.join(str(h) for h in sorted(set(horizons)))} model steps",
        f"protocol: version {version} (fingerprint {fingerprint})",
        f"n: {', '.join(str(c) for c in counts)} held-out test goals per planner",
    ]
    if timing:
        lines.append(f"{TIMING}{timing}")
    return lines


TIMING = "wall times (TTS): "


def timing_line(line: str, device: str) -> str:
    """A header line with the device of a ``wall times (TTS): ...`` line set to ``device``."""
    if not line.startswith(TIMING) or " on " not in line:
        return line
    return line.rsplit(" on ", 1)[0] + f" on {device}"


def significance_rows(comparisons: Sequence[Any]) -> list[dict[str, str]]:
    """One row per pairwise comparison: tests used, raw and Holm-adjusted p-values.

    ``n`` counts goal pairs (paired) or the episodes of both (unpaired); the success rates with
    their CIs are in the results table.
    """
    return [
        {
            "H": str(c.horizon),
            "A vs B": f"{c.a} vs {c.b}",
            "n": str(c.n),
            "only A / only B": "-" if not c.paired else f"{c.a_only:.0f} / {c.b_only:.0f}",
            "success test": c.success_test,
            "p": _p(c.p_success),
            "p (Holm)": _p(c.p_success_adj),
            "cost A-B": _cost_diff(c),
            "n cost": str(c.n_tts),
            "cost test": c.tts_test,
            "p cost": _p(c.p_tts),
            "p cost (Holm)": _p(c.p_tts_adj),
        }
        for c in comparisons
    ]


def _cost_diff(c: Any) -> str:
    """Median paired cost difference in its unit (model steps to success, or seconds)."""
    if math.isnan(c.tts_diff):
        return "-"
    if getattr(c, "tts_unit", "s") == "model steps":
        return f"{c.tts_diff:+.0f} steps"
    return f"{c.tts_diff:+.2f} s"


def significance_metrics(comparisons: Sequence[Any]) -> dict[str, float]:
    """Test results as parent-run metrics, grouped so the UI plots them side by side.

    ``p_success_holm/<a>_vs_<b>``, ``p_success/<a>_vs_<b>``, ``p_tts_holm/...``, ``p_tts/...``
    and ``success_diff/<a>_vs_<b>`` (``a`` minus ``b``).
    """
    out: dict[str, float] = {}
    for c in comparisons:
        pair = f"{c.a}_vs_{c.b}"
        out[f"p_success/{pair}"] = c.p_success
        out[f"p_success_holm/{pair}"] = c.p_success_adj
        out[f"p_tts/{pair}"] = c.p_tts
        out[f"p_tts_holm/{pair}"] = c.p_tts_adj
        out[f"success_diff/{pair}"] = c.success_a - c.success_b
    return out


def summary_text(
    header: Sequence[str],
    verdict_text: str,
    table: str,
    url: str = "",
    command: str = "",
    markdown: bool = False,
) -> str:
    """The printed summary, or (``markdown``) the parent run's description.

    Lines are wrapped at :data:`WIDTH` columns, except the table's, which fit already.
    """
    import textwrap

    lines = [f"- {h}" for h in header] if markdown else list(header)
    lines += ["", *textwrap.wrap(f"Verdict: {verdict_text}", WIDTH), "", table, ""]
    lines += textwrap.wrap(LEGEND, WIDTH)
    if url:
        lines += ["", f"MLflow run (model-training view): {url}"]
    if command:
        lines += ["start the UI on this sweep's store with:", f"  {command}"]
    return "\n".join(lines)


CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;font-size:13px}th{background:#eee}.bar{background:#4a7;height:10px}"
    "img{max-width:600px;margin:0.5em;border:1px solid #ddd}"
)


def html_table(rows: Sequence[Mapping[str, str]], table_id: str) -> str:
    """An HTML table (header from the first row's keys), values escaped."""
    if not rows:
        return "<p>(none)</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
