"""The pick: which of a variant's trials becomes its chosen config, and its test evaluation.

The rule (``sweep.rescore_top`` / ``sweep.rescore_episodes`` in ``tune_configs/config.yaml``):
rank the variant's complete trials by tuning success, re-score the top few on fresh tuning
goals (never the test goals), and pick by the pooled score, so that ties and the winner's curse
do not decide it; then evaluate the pick and the variant's default config on the held-out test
goals, chunk by chunk on the worker pool. :func:`grasplab.platform.sweep.finish_stage` drives it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from grasplab.eval import EpisodeResults, EvalProtocol
from grasplab.eval.significance import compare
from grasplab.platform.config import (
    PlannerSpec,
    Stage,
    SweepSpec,
)
from grasplab.platform.report.rows import StageOutcome
from grasplab.platform.runtime import off_driver
from grasplab.platform.search import LABEL
from grasplab.platform.trial import chunk_indices, evaluate_chunks, figures
from grasplab.platform.workers import (
    Pool,
)

METRIC = "success_rate"
"""The tuning metric (maximised): success rate on the tuning goals."""


def ranked_results(results: Sequence[Any], n_chunks: int) -> list[Any]:
    """Trials best first: complete ones first, then success rate, then faster time-to-success."""
    candidates = [r for r in results if r.error is None and r.metrics]
    if not candidates:
        raise RuntimeError("every trial of the variant failed")

    def rank(result: Any) -> tuple[bool, float, float]:
        m = result.metrics
        tts = m.get("median_time_to_success", math.nan)
        return (
            m.get("chunks", 0) >= n_chunks,
            m.get(METRIC, 0.0),
            -(math.inf if tts is None or math.isnan(tts) else tts),
        )

    return sorted(candidates, key=rank, reverse=True)  # stable: ties keep the trials' order


def best_result(results: Sequence[Any], n_chunks: int) -> Any:
    """The best trial by the search's score alone (:func:`ranked_results`)."""
    return ranked_results(results, n_chunks)[0]


def rescore_candidates(ranked: Sequence[Any], top: int, n_chunks: int) -> list[Any]:
    """The first ``top`` trials of ``ranked`` scored on every tuning goal, distinct configs."""
    picked, seen = [], []
    for result in ranked:
        if len(picked) >= top:
            break
        config = {k: v for k, v in result.config.items() if k != LABEL}
        if result.metrics.get("chunks", 0) >= n_chunks and config not in seen:
            picked.append(result)
            seen.append(config)
    return picked


def rescore_row(rank: int, result: Any, fresh: EpisodeResults) -> dict[str, Any]:
    """One candidate's figures: its search score, its fresh-goal score and the pooled one."""
    m = figures(result.metrics)
    n_search = int(m.get("n", 0))
    wins_search = int(round(float(m.get(METRIC, 0.0)) * n_search))
    n_fresh, wins_fresh = len(fresh), int(np.sum(fresh.success))
    steps = (float(m.get("model_steps", 0.0)) * n_search + float(np.sum(fresh.model_steps))) / max(
        1, n_search + n_fresh
    )
    return {
        "search_rank": rank,
        "trial": str(m.get("trial_id", "")),
        "config": {k: v for k, v in result.config.items() if k != LABEL},
        "search_successes": wins_search,
        "search_n": n_search,
        "fresh_successes": wins_fresh,
        "fresh_n": n_fresh,
        "pooled_success_rate": (wins_search + wins_fresh) / max(1, n_search + n_fresh),
        "model_steps": steps,
        "picked": False,
    }


def pick_rescored(rows: Sequence[dict[str, Any]]) -> int:
    """Index of the pick among re-scored ``rows`` (the rule above).

    Most pooled successes (search + fresh goals), then fewer model steps, then search order.
    """
    return min(
        range(len(rows)),
        key=lambda i: (
            -(rows[i]["search_successes"] + rows[i]["fresh_successes"]),
            rows[i]["model_steps"],
            rows[i]["search_rank"],
        ),
    )


def rescore_and_pick(
    ranked: Sequence[Any],
    top: int,
    n_chunks: int,
    score: Any,
) -> tuple[Any, list[dict[str, Any]], str]:
    """The picked trial, the re-score rows and a note (why there was no re-score, else "").

    Args:
        ranked: The variant's trials best first (:func:`ranked_results`).
        top: ``sweep.rescore_top``.
        n_chunks: Chunks of a complete trial.
        score: ``score(configs) -> list[EpisodeResults]`` on the fresh tuning goals, or a
            string saying why there are none.
    """
    candidates = rescore_candidates(ranked, top, n_chunks) if top >= 2 else []
    if len(candidates) < 2:
        why = "rescore_top < 2" if top < 2 else f"{len(candidates)} complete trial(s) to compare"
        return ranked[0], [], f"no re-score: {why}"
    if isinstance(score, str):
        return ranked[0], [], f"no re-score: {score}"
    configs = [{k: v for k, v in r.config.items() if k != LABEL} for r in candidates]
    position = {id(r): i for i, r in enumerate(ranked)}
    rows = [
        rescore_row(position[id(r)], r, fresh)
        for r, fresh in zip(candidates, score(configs), strict=True)
    ]
    chosen = pick_rescored(rows)
    rows[chosen]["picked"] = True
    return candidates[chosen], rows, ""


def submit_test(
    pool: Pool, spec: SweepSpec, stage: Stage, planner: PlannerSpec, config: dict[str, Any]
) -> list[ray.ObjectRef]:
    """Dispatch the config on every held-out test episode (chunks spread over the pool)."""
    chunks = chunk_indices(stage.protocol.test_episodes, spec.sweep.chunk_size)
    return submit_eval(pool, spec, planner, stage.protocol, config, "test", chunks)


def submit_eval(
    pool: Pool,
    spec: SweepSpec,
    planner: PlannerSpec,
    protocol: Any,
    config: dict[str, Any],
    split: str,
    chunks: Sequence[Sequence[int]],
) -> list[ray.ObjectRef]:
    """Dispatch ``config`` on the episodes ``chunks`` of ``split`` of ``protocol``."""
    context = {
        "planner": planner.name,
        "protocol": protocol.to_dict(),
        "world_model": spec.world_model,
    }
    return evaluate_chunks(pool.dispatcher, context, config, split, chunks)


def gather_test(refs: Sequence[ray.ObjectRef]) -> tuple[EpisodeResults, float]:
    """Per-episode test results of dispatched chunks, and the worker seconds they took."""
    outputs = ray.get(list(refs))
    records = [r for out in outputs for r in out["records"]]
    return EpisodeResults.from_records(records), sum(o["compute_s"] for o in outputs)


def fresh_scorer(
    pool: Pool, spec: SweepSpec, stage: Stage, planner: PlannerSpec, spent: list[float]
) -> Any:
    """``score(configs)`` on the stage's fresh tuning goals, or why there are none.

    Every config is dispatched at once; the worker seconds are added to ``spent``.
    """
    extra = spec.sweep.rescore_episodes or stage.protocol.tune_episodes
    fresh = ray.get(pool.call("fresh_tuning_goals", protocol=stage.protocol.to_dict(), extra=extra))
    if isinstance(fresh, str):
        return fresh
    extended, indices = EvalProtocol.from_dict(fresh["protocol"]), fresh["indices"]
    size = spec.sweep.chunk_size
    chunks = [indices[i : i + size] for i in range(0, len(indices), size)]

    def score(configs: Sequence[dict[str, Any]]) -> list[EpisodeResults]:
        full = [planner.trial_config(c) for c in configs]
        refs = [submit_eval(pool, spec, planner, extended, c, "tune", chunks) for c in full]
        out = []
        for part in refs:
            results, compute = gather_test(part)
            spent.append(compute)
            out.append(results)
        return out

    return score


@dataclass
class Pick:
    """A variant's chosen config, and its test evaluations (and its default's) in flight."""

    planner: PlannerSpec
    trials: list[Any]
    best: Any
    tuned: dict[str, Any]
    config: dict[str, Any]
    refs: list[Any]
    rescored: list[dict[str, Any]]
    note: str
    default: dict[str, Any]
    default_refs: list[Any]


def pick_and_submit(
    spec: SweepSpec,
    stage: Stage,
    pool: Pool,
    planner: PlannerSpec,
    results: list[Any],
    n_chunks: int,
    spent: list[float],
) -> Pick:
    """Re-score and pick the variant's config; submit its test chunks (and its default's)."""
    mine = [r for r in results if r.config.get(LABEL) == planner.label]
    ranked = ranked_results(mine, n_chunks)
    score = (
        fresh_scorer(pool, spec, stage, planner, spent)
        if spec.sweep.rescore_top >= 2 and planner.search_space
        else "nothing to compare"
    )
    best, rescored, note = rescore_and_pick(ranked, spec.sweep.rescore_top, n_chunks, score)
    tuned = {k: best.config[k] for k in planner.search_space if k in best.config}
    config = planner.trial_config(tuned)
    default = planner.default_config() if planner.search_space else {}
    fresh_default = default and default != config
    return Pick(
        planner=planner,
        trials=mine,
        best=best,
        tuned=tuned,
        config=config,
        refs=submit_test(pool, spec, stage, planner, config),
        rescored=rescored,
        note=note,
        default=default,
        default_refs=submit_test(pool, spec, stage, planner, default) if fresh_default else [],
    )


def gather_outcome(stage: Stage, pick: Pick, n_chunks: int) -> tuple[StageOutcome, float]:
    """The variant's outcome once its test chunks are back, and the worker seconds they took."""
    test_results, compute = gather_test(pick.refs)
    plan_time = float(sum(set(test_results.plan_time.tolist())))
    key = stage.outcome_key(pick.planner.label)
    defaults: dict[str, Any] = {}
    if pick.default:
        default_results, default_compute = (
            gather_test(pick.default_refs) if pick.default_refs else (test_results, 0.0)
        )
        compute += default_compute
        default_time = float(sum(set(default_results.plan_time.tolist())))
        defaults = {
            "default_config": pick.default,
            "default_test": default_results.summary(wall_time=default_time),
            "default_test_records": default_results.to_records(),
            "default_comparison": off_driver(
                compare,
                key,
                f"{key} (default)",
                test_results.to_records(),
                default_results.to_records(),
                stage.protocol.horizon,
            ).to_dict(),
        }
    best, scored = pick.best, [r for r in pick.trials if r.metrics]
    outcome = StageOutcome(
        key=key,
        label=pick.planner.label,
        planner=pick.planner.name,
        horizon=stage.protocol.horizon,
        best_trial=best.metrics.get("trial_id", ""),
        best_config=pick.config,
        tuned=pick.tuned,
        tune_metrics={
            k: figures(best.metrics).get(k, math.nan)
            for k in (METRIC, "ci_low", "ci_high", "median_time_to_success", "n")
        },
        test=test_results.summary(wall_time=plan_time),
        trials=[
            (r.metrics.get(METRIC, math.nan), r.metrics.get("median_time_to_success", math.nan))
            for r in scored
        ],
        test_records=test_results.to_records(),
        trial_complete=[r.metrics.get("chunks", 0) >= n_chunks for r in scored],
        rescore=pick.rescored,
        rescore_note=pick.note,
        **defaults,
    )
    return outcome, compute
