"""Metrics with honest uncertainty: Wilson intervals, medians over successes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Args:
        successes: Number of successes ``k``.
        n: Number of trials; ``n = 0`` gives ``(0, 1)``.
        z: Normal quantile.

    Returns:
        ``(low, high)`` in ``[0, 1]``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the exact interval contains p; rounding can put a bound on the wrong side of it by ~1e-17
    # (k = 0: low = 3e-18 > p = 0), which turns an error bar negative
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def summarize(
    success: Sequence[bool] | np.ndarray,
    time_to_success: Sequence[float] | np.ndarray,
    final_distance: Sequence[float] | np.ndarray,
    model_steps: Sequence[float] | np.ndarray,
    wall_time: float,
    model_steps_to_success: Sequence[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """Aggregate per-episode results into the reported metrics.

    Returns:
        ``n``, ``success_rate``, ``ci_low``, ``ci_high``, ``median_time_to_success`` (over
        successes; NaN when none), ``median_steps_to_success`` (model steps, over successes;
        NaN when none or not recorded), ``final_distance`` (mean), ``model_steps`` (mean per
        episode), ``wall_time`` (seconds).
    """
    ok = np.asarray(success, dtype=bool)
    n, k = int(ok.size), int(ok.sum())
    low, high = wilson_interval(k, n)
    tts = np.asarray(time_to_success, dtype=float)[ok]
    steps = np.full(ok.size, np.nan)
    if model_steps_to_success is not None:
        steps = np.asarray(model_steps_to_success, dtype=float)
    steps = steps[ok & ~np.isnan(steps)]
    return {
        "n": n,
        "success_rate": k / n if n else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "median_time_to_success": float(np.median(tts)) if tts.size else float("nan"),
        "median_steps_to_success": float(np.median(steps)) if steps.size else float("nan"),
        "final_distance": float(np.mean(final_distance)) if n else float("nan"),
        "model_steps": float(np.mean(model_steps)) if n else float("nan"),
        "wall_time": float(wall_time),
    }


def format_cell(metrics: dict[str, float], time_unit: str = "s") -> str:
    """``"62% [48, 74] / 1.3 s"``: success with its 95% CI, then median time-to-success."""
    rate = 100 * metrics["success_rate"]
    low, high = 100 * metrics["ci_low"], 100 * metrics["ci_high"]
    tts = metrics["median_time_to_success"]
    tts_text = "-" if math.isnan(tts) else f"{tts:.2f} {time_unit}"
    return f"{rate:.0f}% [{low:.0f}, {high:.0f}] / {tts_text}"
