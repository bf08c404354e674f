"""What a sweep writes to MLflow once its stages are decided: every figure, where a user looks.

Per stage outcome (:func:`log_outcome`): the test metrics on the parent, the per-episode tables,
the outcome itself (what ``grasplab export`` bundles), the re-score, the default config's test
and the ``test`` child runs that the MLflow UI compares side by side. Per sweep
(:func:`finish_report`): the comparison table, the parent's description, the significance
tests, the random floor's runs, the plots and the GIF replays of test episodes. All writes go
through the sweep's :class:`~grasplab.platform.tracking.Tracker`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from grasplab.platform import progress as live
from grasplab.platform import runtime
from grasplab.platform.config import (
    Stage,
    SweepSpec,
)
from grasplab.platform.report import figures, tables
from grasplab.platform.report.readback import outcome_artifact
from grasplab.platform.report.rows import StageOutcome, SweepResult
from grasplab.platform.tracking import (
    Tracker,
    log_test_run,
    records_table,
    trial_key,
)
from grasplab.platform.trial import chunk_indices
from grasplab.platform.workers import (
    Pool,
)


def log_outcome(tracker: Tracker, stage: Stage, outcome: StageOutcome) -> None:
    """Test metrics on the parent (``<variant>/test_*``) and on the best trial's child run.

    Also the re-score before the pick (``rescore/<key>.json`` on the parent; on each
    candidate's child run ``rescore_successes``, ``rescore_n``, ``rescore_pooled_success_rate``
    and the tag ``rescore_picked``) and the default config's test figures
    (``<key>/default_test_*``, per-episode ``default/<key>.json``) with the paired test against the
    pick (``<key>/tuned_vs_default_p_success``, McNemar's exact, unadjusted).
    """
    parent = tracker.parent_id
    metrics = {f"test_{k}": v for k, v in outcome.test.items()}
    tracker.log_metrics(parent, {f"{outcome.key}/{k}": v for k, v in metrics.items()})
    tracker.log_table(parent, records_table(outcome.test_records), f"test/{outcome.key}.json")
    # the exact outcome (config, full-precision records) that `grasplab export` bundles
    tracker.log_text(parent, json.dumps(outcome.to_dict()), outcome_artifact(outcome.key))
    best = trial_key(tracker.sweep_id, stage.key, outcome.best_trial)  # its run's handle
    tracker.log_metrics(best, metrics)
    tracker.set_tags(best, {"best": "true"})
    if outcome.rescore:
        rows = [{**r, "config": tables.config_text(r["config"])} for r in outcome.rescore]
        tracker.log_table(parent, records_table(rows), f"rescore/{outcome.key}.json")
        for row in outcome.rescore:
            run = trial_key(tracker.sweep_id, stage.key, row["trial"])
            tracker.log_metrics(
                run,
                {
                    "rescore_successes": row["fresh_successes"],
                    "rescore_n": row["fresh_n"],
                    "rescore_pooled_success_rate": row["pooled_success_rate"],
                },
            )
            tracker.set_tags(run, {"rescore_picked": str(row["picked"]).lower()})
    if outcome.rescore_note:
        tracker.set_tags(parent, {f"{outcome.key}/rescore": outcome.rescore_note})
    log_test_runs(tracker, stage, outcome)
    if outcome.default_test:
        default = {f"default_test_{k}": v for k, v in outcome.default_test.items()}
        c = outcome.default_comparison
        default["tuned_vs_default_p_success"] = c["p_success"]
        default["tuned_vs_default_success_diff"] = c["success_a"] - c["success_b"]
        tracker.log_metrics(parent, {f"{outcome.key}/{k}": v for k, v in default.items()})
        tracker.log_table(
            parent,
            records_table(outcome.default_test_records),
            f"default/{outcome.key}.json",
        )


def log_test_runs(tracker: Tracker, stage: Stage, outcome: StageOutcome) -> None:
    """The pick's test result (and its default config's) as ``test`` child runs."""
    base = {"planner": outcome.planner, "variant": outcome.label, "horizon": outcome.horizon}
    tags = {"stage": stage.key, "variant": outcome.label, "horizon": outcome.horizon}
    runs = [("tuned", outcome.key, outcome.best_config, outcome.test)]
    if outcome.default_test and outcome.default_config != outcome.best_config:
        name = f"{outcome.key}{tables.DEFAULT_SUFFIX}"
        runs.append(("default", name, outcome.default_config, outcome.default_test))
    for kind, name, config, metrics in runs:
        log_test_run(
            tracker,
            f"{tracker.sweep_id}/{stage.key}/test/{kind}/{outcome.label}",
            name,
            {**base, **config},
            metrics,
            {**tags, "config": kind},
        )


def log_floor_runs(tracker: Tracker, floors: Mapping[int, Mapping[str, float]]) -> None:
    """The random floor per horizon as ``test`` child runs (``random floor H<horizon>``)."""
    for horizon, floor in sorted(floors.items()):
        log_test_run(
            tracker,
            f"{tracker.sweep_id}/H{horizon}/test/random_floor",
            f"random floor H{horizon}",
            {"planner": "random", "variant": "random floor", "horizon": horizon},
            floor,
            {"variant": "random floor", "horizon": horizon, "config": "uniform random actions"},
        )


def finish_report(
    spec: SweepSpec,
    state: runtime.SweepState,
    tracker: Tracker,
    pool: Pool,
    result: SweepResult,
) -> None:
    """Log the comparison table, plots and GIFs (a success and a failure per variant)."""
    parent = tracker.parent_id
    tracker.log_text(parent, result.table + "\n", "comparison.md")
    tracker.log_table(parent, records_table(result.extras["rows"]), "comparison.json")
    rows = tables.summary_rows([o.row(result.sweep_id) for o in result.outcomes], result.floors)
    configs = {o.key: o.best_config for o in result.outcomes}
    description = tables.description(result.extras["header"], result.verdict, rows, configs)
    tracker.set_tags(parent, {"mlflow.note.content": description, "verdict": result.verdict})
    tracker.log_metrics(parent, tables.significance_metrics(result.comparisons))
    if result.comparisons:
        tracker.log_table(
            parent, records_table(c.to_dict() for c in result.comparisons), "significance.json"
        )
    for horizon, floor in result.floors.items():
        tracker.log_metrics(parent, {f"random_floor/H{horizon}/{k}": v for k, v in floor.items()})
    log_floor_runs(tracker, result.floors)
    folder = Path(state.folder) / "artifacts"  # kept until uploaded (a queued write)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.report.get("plots", True):
        log_plots(tracker, result, folder)
    if spec.report.get("gif", True) and result.outcomes:
        log_gifs(tracker, pool, spec, result, folder)


PLOT_DPI = 150
"""Resolution of the logged plots (``pareto.png``: about 1,500 px wide, legend readable)."""


def log_plots(tracker: Tracker, result: SweepResult, folder: Path) -> None:
    """Pareto scatter always; success vs horizon when the sweep spans several horizons.

    Drawn in a Ray worker (:func:`~grasplab.platform.runtime.off_driver`): matplotlib stays out
    of the driver's memory.
    """
    plots = runtime.off_driver(figures.plot_images, result.outcomes, result.floors, PLOT_DPI)
    for name, png in plots.items():
        (folder / name).write_bytes(png)
        tracker.log_artifact(tracker.parent_id, str(folder / name))


GIF_TRIES = 3
"""Test episodes replayed at most per GIF until the replay has the wanted outcome."""


def gif_artifact(key: str, kind: str) -> str:
    """Artifact path of an outcome's GIF: ``gifs/<key, / as _>_<success|failure>.gif``."""
    return f"gifs/{key.replace('/', '_')}_{kind}.gif"


def log_gifs(
    tracker: Tracker, pool: Pool, spec: SweepSpec, result: SweepResult, folder: Path
) -> list[str]:
    """Per planner variant and horizon, a solved and a failed test episode as GIFs.

    Each GIF is the best config planning a held-out test episode, executed in the TRUE env
    (:meth:`~grasplab.platform.workers.WorldModelWorker.plan_frames`), annotated by
    :func:`~grasplab.platform.report.figures.episode_gif` and logged at :func:`gif_artifact`.
    The replay plans the episode's test chunk again with the same seed; should its outcome
    still differ from the recorded one (an MPC protocol, a non-deterministic device), up to
    :data:`GIF_TRIES` episodes are tried. A variant with no success (or no failure) on the
    test goals gets none, with a note.

    The replays' worker seconds are added to ``result.trial_compute``.

    Returns:
        The notes (also printed and logged as ``gifs/notes.txt``).
    """
    wanted, notes = gif_candidates(result.outcomes)
    shown, compute = replay_episodes(pool, spec, wanted)
    result.trial_compute += compute
    for (key, kind), (o, index, out) in shown.items():
        title = f"{o.label} [{o.planner}] H{o.horizon}, test episode {index}"
        path = folder / gif_artifact(key, kind)
        frames, goal = np.asarray(out["frames"]), np.asarray(out["goal"])
        figures.episode_gif(frames, goal, out["reached"], title, path)
        tracker.log_artifact(tracker.parent_id, str(path), "gifs")
    notes += [
        f"{key}: no {kind} GIF (replaying test episodes {tried} gave the other outcome)"
        for (key, kind), (_, tried) in wanted.items()
        if (key, kind) not in shown
    ]
    if notes:
        live.of(tracker.sweep_id).phase("GIFs: " + "; ".join(notes))
        tracker.log_text(tracker.parent_id, "\n".join(notes) + "\n", "gifs/notes.txt")
    return notes


def gif_candidates(
    outcomes: Sequence[StageOutcome],
) -> tuple[dict[tuple[str, str], tuple[StageOutcome, list[int]]], list[str]]:
    """``(key, "success"|"failure") -> (outcome, test episodes to try)``, and notes."""
    wanted, notes = {}, []
    for o in outcomes:
        for kind in ("success", "failure"):
            found = [
                r["index"] for r in o.test_records if bool(r["success"]) == (kind == "success")
            ]
            if found:
                wanted[(o.key, kind)] = (o, found[:GIF_TRIES])
            else:
                notes.append(f"{o.key}: no {kind} GIF (no test episode was a {kind})")
    return wanted, notes


def replay_episodes(
    pool: Pool, spec: SweepSpec, wanted: dict[tuple[str, str], tuple[StageOutcome, list[int]]]
) -> tuple[dict[tuple[str, str], tuple[StageOutcome, int, dict[str, Any]]], float]:
    """Replay candidates (a round's GIFs at once, over the pool) until each has its outcome.

    Returns:
        The replays with the wanted outcome, and the worker seconds all replays took.
    """
    stages = {s.protocol.horizon: s for s in spec.stages()}
    chunks = {
        h: chunk_indices(s.protocol.test_episodes, spec.sweep.chunk_size) for h, s in stages.items()
    }
    shown, compute = {}, 0.0
    for attempt in range(GIF_TRIES):
        todo = {
            k: (o, int(c[attempt]))
            for k, (o, c) in wanted.items()
            if k not in shown and attempt < len(c)
        }
        refs = [
            pool.call(
                "plan_frames",
                spec=spec.world_model,
                protocol=stages[o.horizon].protocol.to_dict(),
                planner=o.planner,
                config=o.best_config,
                split="test",
                index=index,
                batch=next(c for c in chunks[o.horizon] if index in c),
            )
            for o, index in todo.values()
        ]
        for ((key, kind), (o, index)), out in zip(todo.items(), ray.get(refs), strict=True):
            compute += out["compute_s"]
            if out["success"] == (kind == "success"):
                shown[(key, kind)] = (o, index, out)
    return shown, compute
