"""Significance of pairwise planner comparisons on the same held-out test goals.

Two planners scored on the same test split solve the SAME goals, so their per-episode results
are paired by task index. Success is compared with McNemar's exact test (an exact binomial test
on the discordant pairs); time-to-success with the Wilcoxon signed-rank test on the episodes both
planners solved. When the episodes are not paired (different task sets), Fisher's exact test and
the Mann-Whitney U test are used instead. The time-to-success tests compare each episode's
model steps to success (``model_steps_to_success``: exact, and the episode's own, whatever
else shared its batched call), not wall-clock seconds: an episode's wall time is the time of
the batched call it was planned in, shared by every episode of its chunk, so seconds are
neither independent nor really paired. Records made before that field existed fall back to
seconds (``tts_unit`` says which). p-values are Holm-adjusted over all comparisons of a
family (one family for success, one for time-to-success). The tests are scipy's and
statsmodels', not re-implemented here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np

MCNEMAR = "McNemar exact"
FISHER = "Fisher exact"
WILCOXON = "Wilcoxon signed-rank"
MANN_WHITNEY = "Mann-Whitney U"


@dataclass(frozen=True)
class Comparison:
    """One pairwise comparison of two result sets (``a`` vs ``b``) at one horizon.

    Attributes:
        a: Key of the first result set (e.g. ``grasp-H20``).
        b: Key of the second.
        horizon: Plan horizon both were scored at.
        paired: Whether the episodes were paired by test-goal index.
        n: Episodes compared (pairs when paired, else ``n_a + n_b``).
        success_a: Success rate of ``a`` on the compared episodes.
        success_b: Success rate of ``b``.
        a_only: Paired: goals only ``a`` solved (discordant pairs); else NaN.
        b_only: Paired: goals only ``b`` solved; else NaN.
        success_test: Name of the test used on success.
        p_success: Its two-sided p-value (raw).
        p_success_adj: Holm-adjusted p-value (NaN until :func:`holm_adjust`).
        n_tts: Episodes in the time-to-success test (pairs both solved, or successes of both).
        tts_diff: Paired: median of ``a - b`` over goals both solved; else difference of medians
            (in ``tts_unit``; negative means ``a`` reaches the goal cheaper).
        tts_test: Name of the test used on time-to-success.
        p_tts: Its two-sided p-value (raw; NaN when too few successes to test).
        p_tts_adj: Holm-adjusted p-value.
        tts_unit: ``model steps`` (per-episode model steps to success) or ``s`` (wall seconds,
            for records without model steps to success).
        seconds_diff: The same difference in wall seconds to success (descriptive only: the
            seconds of a batched call, not tested).
    """

    a: str
    b: str
    horizon: int
    paired: bool
    n: int
    success_a: float
    success_b: float
    a_only: float
    b_only: float
    success_test: str
    p_success: float
    n_tts: int
    tts_diff: float
    tts_test: str
    p_tts: float
    p_success_adj: float = math.nan
    p_tts_adj: float = math.nan
    tts_unit: str = "model steps"
    seconds_diff: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided p-value of McNemar's exact test on paired successes ``a[i]``, ``b[i]``.

    Args:
        a: Success of planner A per goal, shape ``(N,)``.
        b: Success of planner B on the same goals, shape ``(N,)``.

    Returns:
        The p-value; 1.0 when no pair is discordant.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"paired successes need equal shapes, got {x.shape} and {y.shape}")
    table = [[int(np.sum(x & y)), int(np.sum(x & ~y))], [int(np.sum(~x & y)), int(np.sum(~x & ~y))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def fisher_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided p-value of Fisher's exact test on two independent success samples."""
    from scipy.stats import fisher_exact as fisher

    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    table = [[int(x.sum()), int((~x).sum())], [int(y.sum()), int((~y).sum())]]
    return float(fisher(table).pvalue)


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on paired times ``a[i] - b[i]``.

    Returns:
        The p-value; NaN with no pair, 1.0 when every difference is zero.
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size == 0:
        return math.nan
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff).pvalue)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test; NaN when either sample is empty."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (statsmodels); NaN entries stay NaN, not counted."""
    from statsmodels.stats.multitest import multipletests

    values = np.asarray(pvalues, dtype=float)
    out = np.full(values.shape, math.nan)
    finite = np.isfinite(values)
    if finite.any():
        out[finite] = multipletests(values[finite], method="holm")[1]
    return out.tolist()


def _arrays(
    records: Sequence[Mapping[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    index = np.asarray([int(r["index"]) for r in records], dtype=int)
    success = np.asarray([bool(r["success"]) for r in records], dtype=bool)
    tts = np.asarray([float(r["time_to_success"]) for r in records], dtype=float)
    steps = np.asarray(
        [float(r.get("model_steps_to_success", math.nan)) for r in records], dtype=float
    )
    return index, success, tts, steps


def _median_diff(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def compare(
    key_a: str,
    key_b: str,
    records_a: Sequence[Mapping[str, Any]],
    records_b: Sequence[Mapping[str, Any]],
    horizon: int,
) -> Comparison:
    """Compare two result sets: paired by test-goal ``index`` when both hold the same goals.

    Args:
        key_a: Name of the first result set.
        key_b: Name of the second.
        records_a: Per-episode records with ``index``, ``success``, ``time_to_success`` and
            (since protocol 2026-12-04) ``model_steps_to_success``.
        records_b: The same for ``b``.
        horizon: Horizon both were scored at (carried into the result).
    """
    ia, sa, wa, ma = _arrays(records_a)
    ib, sb, wb, mb = _arrays(records_b)
    steps = not (np.isnan(ma[sa]).any() or np.isnan(mb[sb]).any())
    ta, tb = (ma, mb) if steps else (wa, wb)
    unit = "model steps" if steps else "s"
    paired = ia.size > 0 and sorted(ia.tolist()) == sorted(ib.tolist()) and len(set(ia)) == ia.size
    if paired:
        oa, ob = np.argsort(ia), np.argsort(ib)
        sa, ta, sb, tb = sa[oa], ta[oa], sb[ob], tb[ob]
        wa, wb = wa[oa], wb[ob]
        both = sa & sb
        diff = ta[both] - tb[both]
        return Comparison(
            a=key_a,
            b=key_b,
            horizon=horizon,
            paired=True,
            n=int(ia.size),
            success_a=float(sa.mean()),
            success_b=float(sb.mean()),
            a_only=float(np.sum(sa & ~sb)),
            b_only=float(np.sum(~sa & sb)),
            success_test=MCNEMAR,
            p_success=mcnemar_exact(sa, sb),
            n_tts=int(both.sum()),
            tts_diff=float(np.median(diff)) if diff.size else math.nan,
            tts_test=WILCOXON,
            p_tts=wilcoxon_paired(ta[both], tb[both]),
            tts_unit=unit,
            seconds_diff=_median_diff(wa[both] - wb[both]),
        )
    fa, fb = ta[sa], tb[sb]
    return Comparison(
        a=key_a,
        b=key_b,
        horizon=horizon,
        paired=False,
        n=int(ia.size + ib.size),
        success_a=float(sa.mean()) if sa.size else math.nan,
        success_b=float(sb.mean()) if sb.size else math.nan,
        a_only=math.nan,
        b_only=math.nan,
        success_test=FISHER,
        p_success=fisher_exact(sa, sb),
        n_tts=int(fa.size + fb.size),
        tts_diff=float(np.median(fa) - np.median(fb)) if fa.size and fb.size else math.nan,
        tts_test=MANN_WHITNEY,
        p_tts=mann_whitney(fa, fb),
        tts_unit=unit,
        seconds_diff=float(np.median(wa[sa]) - np.median(wb[sb]))
        if fa.size and fb.size
        else math.nan,
    )


def holm_adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with Holm-adjusted p-values (success and time-to-success families)."""
    p_success = holm([c.p_success for c in comparisons])
    p_tts = holm([c.p_tts for c in comparisons])
    return [
        replace(c, p_success_adj=ps, p_tts_adj=pt)
        for c, ps, pt in zip(comparisons, p_success, p_tts, strict=True)
    ]


def pairwise(
    records: Mapping[str, Sequence[Mapping[str, Any]]], horizons: Mapping[str, int]
) -> list[Comparison]:
    """Every pair of result sets at the same horizon, compared and Holm-adjusted together.

    Args:
        records: Result-set key -> per-episode test records (insertion order is kept).
        horizons: Result-set key -> its horizon.
    """
    keys = list(records)
    pairs = [(a, b) for a, b in combinations(keys, 2) if horizons[a] == horizons[b]]
    return holm_adjust([compare(a, b, records[a], records[b], horizons[a]) for a, b in pairs])
