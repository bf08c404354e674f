"""``grasplab ablate [overrides] [--resume] [--quiet]``: an ablation study as one job.

The ablation experiment (``experiment=ablation``: GRASP full, no stop-gradient, no sync,
sigma = 0, gamma = 0, CEM sync, and LatCo) runs once per cell x seed of the ``study`` group
(``tune_configs/study/``): each run is a whole sweep, every variant tuned with the same budget and
scored on held-out test goals, on one Ray session. The sweeps' MLflow parent runs nest under
ONE study run, which receives the ablation table (pooled over seeds, 95% Wilson intervals),
each variant's paired test against full GRASP (McNemar exact, Holm-adjusted over the study), the
ablation bars (``ablation.png``) and an HTML + Markdown report. ``grasplab report <study>``
rebuilds that report from MLflow alone.

Examples::

    grasplab ablate protocol=tiny sweep.num_samples=1              # oracle cells, seconds
    grasplab ablate study=learned protocol.horizon=50 study.seeds=[0,1]
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grasplab.moved import moved_names
from grasplab.platform import fingerprint, runtime
from grasplab.platform import progress as live
from grasplab.platform.config import ConfigError, SweepSpec, compose, parse
from grasplab.platform.report.readback import ReportError, load_sweep
from grasplab.platform.report.rows import ResultRow
from grasplab.platform.report.tables import CSS, fit_table, html_table, render_table, success_pct
from grasplab.platform.tracking import PARENT, ROLE, git_sha, run_url, ui_command

STUDY_ID = "grasplab.study_id"
CELL = "grasplab.cell"
SEED = "grasplab.seed"
REFERENCE = "grasp"
"""The variant every other variant is compared with (the full method)."""
ALPHA = 0.05


@dataclass(frozen=True)
class Cell:
    """One sweep of the study: a cell (env and world model) at one seed."""

    label: str
    seed: int
    spec: SweepSpec

    @property
    def key(self) -> str:
        """``<cell>/s<seed>``."""
        return f"{self.label}/s{self.seed}"


@dataclass(frozen=True)
class Study:
    """A validated study: its name, its cells x seeds, and where it is tracked."""

    name: str
    cells: tuple[Cell, ...]
    labels: tuple[str, ...]
    seeds: tuple[int, ...]
    tracking_uri: str
    artifact_root: str | None
    experiment: str
    raw_study: dict[str, Any]


def hydra_value(value: Any) -> str:
    """A config value as the right-hand side of a Hydra override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def cell_overrides(label: str, values: Any) -> list[str]:
    """A cell's ``key: value`` pairs as Hydra overrides.

    Raises:
        ConfigError: The cell is not a mapping.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"study.cells.{label} must map override keys to values (e.g. {{env: wall}}), "
            f"got {values!r}"
        )
    return [f"{key}={hydra_value(value)}" for key, value in values.items()]


def base_overrides(overrides: Sequence[str]) -> list[str]:
    """The command line's overrides, after ``experiment=ablation`` unless it names another."""
    named = any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides)
    return list(overrides) if named else ["experiment=ablation", *overrides]


def load_study(overrides: Sequence[str], cwd: Path) -> Study:
    """Compose the study and validate every cell x seed's sweep config (nothing runs).

    A cell's overrides come after the command line's (the cell decides its env and world
    model); ``seed`` and ``protocol.seed`` are set per seed, ``name`` to ``<study>-<cell>-s<seed>``.

    Raises:
        ConfigError: Naming the first problem (and the cell it is in).
    """
    base = base_overrides(overrides)
    raw = compose(base)
    section = raw.get("study")
    if not isinstance(section, Mapping):
        raise ConfigError(
            "the experiment has no `study` section (cells and seeds); use experiment=ablation "
            "or add `- /study@study: oracle` to its defaults"
        )
    cells_cfg = section.get("cells")
    if not isinstance(cells_cfg, Mapping) or not cells_cfg:
        raise ConfigError(f"study.cells must name at least one cell, got {cells_cfg!r}")
    seeds = section.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"study.seeds must be distinct whole numbers >= 0, got {seeds!r}")
    only = section.get("only")
    if only is not None:
        if not isinstance(only, list) or not only:
            raise ConfigError(f"study.only must be a non-empty list of cells or null, got {only!r}")
        for label in only:
            if label not in cells_cfg:
                near = difflib.get_close_matches(str(label), [str(k) for k in cells_cfg], n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ConfigError(
                    f"study.only: no cell {label!r}{hint} (cells: {', '.join(map(str, cells_cfg))})"
                )
        cells_cfg = {k: v for k, v in cells_cfg.items() if k in only}
    name = str(raw.get("name") or raw.get("recipe") or "study")
    cells = []
    for label, values in cells_cfg.items():
        if not str(label).replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"study.cells: label {label!r} must be letters, digits, - or _")
        extra = cell_overrides(str(label), values)
        for seed in seeds:
            pinned = [f"seed={seed}", f"protocol.seed={seed}", f"name={name}-{label}-s{seed}"]
            try:
                spec = parse(compose([*base, *extra, *pinned]))
            except ConfigError as error:
                raise ConfigError(f"study cell {label!r} (seed {seed}): {error}") from error
            cells.append(Cell(str(label), int(seed), spec))
    first = cells[0].spec
    for cell in cells[1:]:
        if cell.spec.mlflow != first.mlflow or cell.spec.cluster != first.cluster:
            raise ConfigError(
                f"study cell {cell.label!r} changes mlflow.* or cluster.*: every cell of a study "
                "is tracked in one store and runs on one cluster"
            )
    from grasplab.platform.sweep import check_tracking, tracking_of

    uri, artifacts = tracking_of(first, cwd)
    check_tracking(uri)
    return Study(
        name=name,
        cells=tuple(cells),
        labels=tuple(dict.fromkeys(str(k) for k in cells_cfg)),
        seeds=tuple(int(s) for s in seeds),
        tracking_uri=uri,
        artifact_root=artifacts,
        experiment=first.mlflow.get("experiment") or "grasplab",
        raw_study={"cells": dict(cells_cfg), "seeds": list(seeds)},
    )


@dataclass
class StudyResult:
    """What a finished study returns: its run, report and the sweeps it ran."""

    study_id: str
    run_id: str
    tracking_uri: str
    report: StudyReport
    sweeps: dict[str, str] = field(default_factory=dict)
    wall_time: float = 0.0
    summary: str = ""


def _client(study: Study) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=study.tracking_uri)


def _experiment_id(client: Any, study: Study) -> str:
    found = client.get_experiment_by_name(study.experiment)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(study.experiment, artifact_location=study.artifact_root))


def open_study_run(client: Any, experiment_id: str, study: Study, resume: bool) -> tuple[str, str]:
    """``(study_id, run_id)``: a new study run, or (``--resume``) the latest unfinished one.

    Raises:
        ConfigError: ``--resume`` with no unfinished study of this name, or one whose cells and
            seeds differ from the command line's.
    """
    import json

    if resume:
        runs = client.search_runs(
            [experiment_id],
            f"tags.`{ROLE}` = 'study' and params.study_name = '{study.name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs or runs[0].info.status == "FINISHED":
            raise ConfigError(f"--resume: no unfinished study named {study.name!r}")
        run = runs[0]
        if json.loads(run.data.params.get("study", "{}")) != study.raw_study:
            raise ConfigError(
                f"--resume: study {study.name!r} was started with other cells or seeds "
                f"({run.data.params.get('study')})"
            )
        client.update_run(run.info.run_id, status="RUNNING")
        return run.data.tags[STUDY_ID], run.info.run_id
    study_id = runtime.new_sweep_id(study.name)
    first = study.cells[0].spec
    run = client.create_run(
        experiment_id, run_name=study_id, tags={ROLE: "study", STUDY_ID: study_id}
    )
    params = {
        "study_name": study.name,
        "study": json.dumps(study.raw_study, sort_keys=False),
        "recipe": first.recipe,
        "planners": json.dumps([p.label for p in first.planners]),
        "horizons": json.dumps(list(first.horizons)),
        "num_samples": first.sweep.num_samples,
        "protocol.version": first.protocol.to_dict().get("version", ""),
        "git_sha": git_sha(),
    }
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return study_id, run.info.run_id


def record_fingerprint(client: Any, run_id: str, cluster: dict[str, Any]) -> dict[str, str]:
    """Tag the study run with the runtime fingerprint (and log ``fingerprint.json``)."""
    fp = fingerprint.fingerprint(fingerprint.planning_device(cluster))
    from mlflow.entities import RunTag

    tags = [RunTag(k, v) for k, v in fingerprint.tags(fp).items()]
    client.log_batch(run_id, tags=tags)
    client.log_text(run_id, fingerprint.to_json(fp), fingerprint.ARTIFACT)
    return fp


def finished_cells(client: Any, experiment_id: str, run_id: str) -> set[str]:
    """``<cell>/s<seed>`` of the study's sweeps that finished (skipped by ``--resume``)."""
    runs = client.search_runs(
        [experiment_id], f"tags.`{PARENT}` = '{run_id}' and tags.`{ROLE}` = 'sweep'"
    )
    return {
        f"{r.data.tags.get(CELL)}/s{r.data.tags.get(SEED)}"
        for r in runs
        if r.info.status == "FINISHED"
    }


def run_study(
    study: Study, cwd: Path, *, progress: bool = True, resume: bool = False
) -> StudyResult:
    """Run every cell x seed on one Ray session, then the study report; returns the result.

    The study run ends FINISHED, or FAILED / KILLED with what finished kept: ``--resume``
    skips finished cells and resumes an interrupted one from its sweep state.
    """
    from grasplab.platform import sweep

    started = time.perf_counter()
    runtime.quiet_environment()
    client = _client(study)
    experiment_id = _experiment_id(client, study)
    study_id, run_id = open_study_run(client, experiment_id, study, resume)
    fp = record_fingerprint(client, run_id, study.cells[0].spec.cluster)
    done = finished_cells(client, experiment_id, run_id) if resume else set()
    lines = live.SweepProgress(enabled=progress, kind="study")
    lines.phase(
        f"{study_id}: {len(study.cells)} sweeps ({len(study.labels)} cells x "
        f"{len(study.seeds)} seeds), {len(study.cells[0].spec.planners)} variants each"
        + (f"; {len(done)} finished before, skipped" if done else "")
    )
    status, sweeps, times, owned = "FAILED", {}, [], False
    try:
        owned = runtime.connect(study.cells[0].spec.cluster)
        todo = [c for c in study.cells if c.key not in done]
        for number, cell in enumerate(todo, 1):
            eta = ""
            if times:
                eta = f", ETA {live.clock((len(todo) - number + 1) * sum(times) / len(times))}"
            lines.phase(
                f"sweep {number}/{len(todo)} of study {study_id}: cell {cell.label}, seed "
                f"{cell.seed} (elapsed {live.clock(time.perf_counter() - started)}{eta})"
            )
            state = cell_state(study, cell, study_id, run_id, cwd, resume)
            t0 = time.perf_counter()
            result = sweep.run_sweep(cell.spec, state, progress=progress)
            times.append(time.perf_counter() - t0)
            sweeps[cell.key] = result.parent_run_id
        lines.phase(f"{study_id}: ablation table, bars and report on the study run")
        rep = build_report(client, client.get_run(run_id), study.tracking_uri)
        log_report(client, run_id, rep, Path(cwd) / "reports" / study_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status=status)
        if owned:
            import ray

            ray.shutdown()
    result = StudyResult(study_id, run_id, study.tracking_uri, rep, sweeps)
    result.wall_time = time.perf_counter() - started
    result.summary = (
        "\n".join(fingerprint.header_lines(fp))
        + f"\n\n{rep.markdown}\nwall time {live.clock(result.wall_time)}; open the UI with: "
        f"{ui_command(study.tracking_uri, study.artifact_root)}"
    )
    lines.phase(f"{study_id} done in {live.clock(result.wall_time)}")
    return result


def cell_state(
    study: Study, cell: Cell, study_id: str, run_id: str, cwd: Path, resume: bool
) -> runtime.SweepState:
    """The cell's sweep state: its unfinished one (``--resume``) or a new one under the study."""
    root = runtime.storage_root(cell.spec.cluster, cwd)
    if resume:
        state = runtime.find_resumable(root, cell.spec.name)
        if state is not None and state.parent_tags.get(STUDY_ID) == study_id:
            return state
    sweep_id = runtime.new_sweep_id(cell.spec.name)
    return runtime.SweepState(
        sweep_id,
        cell.spec.name,
        cell.spec.raw,
        str(root / sweep_id),
        study.tracking_uri,
        study.artifact_root,
        parent_tags={PARENT: run_id, STUDY_ID: study_id, CELL: cell.label, SEED: str(cell.seed)},
    )


# --- the study report, from MLflow ---------------------------------------------------------------


@dataclass
class StudyReport:
    """The study's ablation table, tests, bars and texts (built from MLflow)."""

    study_id: str
    header: list[str]
    bars: list[ResultRow]
    floors: dict[tuple[str, int], dict[str, float]]
    comparisons: list[Any]
    verdict: str
    table: str
    rows: list[dict[str, str]]
    significance: list[dict[str, str]]
    url: str
    png: bytes = b""
    markdown: str = ""
    html: str = ""


def resolve_study(client: Any, ref: str) -> Any | None:
    """The study run named by ``ref`` (run id, study id or study name), or None."""
    import re

    from mlflow.exceptions import MlflowException

    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            run = client.get_run(ref)
        except MlflowException:
            return None
        return run if run.data.tags.get(ROLE) == "study" else None
    if "'" in ref or "\\" in ref:
        return None
    ids = [e.experiment_id for e in client.search_experiments()]
    for condition in (f"tags.`{STUDY_ID}` = '{ref}'", f"params.study_name = '{ref}'"):
        runs = client.search_runs(
            ids,
            f"tags.`{ROLE}` = 'study' and {condition}",
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            finished = [r for r in runs if r.info.status == "FINISHED"]
            return (finished or runs)[0]
    return None


def cell_sweeps(client: Any, run: Any) -> list[tuple[str, int, Any]]:
    """``(cell, seed, Sweep)`` of the study's FINISHED sweeps, in start order."""
    runs = client.search_runs(
        [run.info.experiment_id],
        f"tags.`{PARENT}` = '{run.info.run_id}' and tags.`{ROLE}` = 'sweep'",
        order_by=["attributes.start_time ASC"],
        max_results=10000,
    )
    return [
        (r.data.tags.get(CELL, "?"), int(r.data.tags.get(SEED, 0)), load_sweep(client, r))
        for r in runs
        if r.info.status == "FINISHED"
    ]


def pool_floor(floors: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Random floors of several seeds pooled (successes and n summed; Wilson interval)."""
    from grasplab.eval.metrics import wilson_interval

    n = sum(int(f.get("n", 0)) for f in floors)
    k = sum(round(f.get("success_rate", 0.0) * f.get("n", 0)) for f in floors)
    low, high = wilson_interval(k, n)
    return {"n": n, "success_rate": k / n if n else math.nan, "ci_low": low, "ci_high": high}


def pool_bars(sweeps: Sequence[tuple[str, int, Any]]) -> tuple[list[ResultRow], dict]:
    """Per cell x horizon x variant: the test records of every seed pooled; the random floors.

    Goal indices are made unique per seed, so that variants stay paired goal by goal.
    """
    import numpy as np

    from grasplab.eval.metrics import summarize

    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    seeds: dict[tuple[str, int, str], set[int]] = {}
    floors: dict[tuple[str, int], list[Mapping[str, float]]] = {}
    for cell, seed, sw in sweeps:
        for e in sw.entries:
            key = (cell, e.horizon, e.label)
            offset = 1_000_000 * seed
            groups.setdefault(key, []).extend(
                {**r, "index": int(r["index"]) + offset} for r in e.records
            )
            seeds.setdefault(key, set()).add(seed)
        for horizon, floor in sw.floors.items():
            floors.setdefault((cell, horizon), []).append(floor)
    bars = []
    for (cell, horizon, label), records in groups.items():
        success = np.asarray([bool(r["success"]) for r in records])
        metrics = summarize(
            success,
            [float(r["time_to_success"]) for r in records],
            [float(r.get("final_distance", math.nan)) for r in records],
            [float(r.get("model_steps", math.nan)) for r in records],
            0.0,
            [float(r.get("model_steps_to_success", math.nan)) for r in records],
        )
        bars.append(
            ResultRow(
                key=f"{cell}/H{horizon}/{label}",
                label=label,
                horizon=horizon,
                test=metrics,
                records=records,
                cell=cell,
                seeds=len(seeds[(cell, horizon, label)]),
            )
        )
    return bars, {k: pool_floor(v) for k, v in floors.items()}


def compare_to_reference(bars: Sequence[ResultRow], reference: str = REFERENCE) -> list[Any]:
    """Each variant against ``reference`` in its cell and horizon, paired on the goals.

    Holm-adjusted over the whole study.
    """
    from grasplab.eval.significance import compare, holm_adjust

    by_key = {(b.cell, b.horizon, b.label): b for b in bars}
    found = []
    for b in bars:
        ref = by_key.get((b.cell, b.horizon, reference))
        if ref is None or b.label == reference:
            continue
        found.append(
            compare(
                f"{b.cell}/H{b.horizon}/{b.label}",
                f"{b.cell}/H{b.horizon}/{reference}",
                b.records,
                ref.records,
                b.horizon,
            )
        )
    return holm_adjust(found)


def verdict_text(comparisons: Sequence[Any], alpha: float = ALPHA) -> str:
    """One sentence per study: which variants differ significantly from full GRASP."""
    if not comparisons:
        return f"No variant could be compared with full GRASP ('{REFERENCE}' missing)."
    significant = [c for c in comparisons if c.p_success_adj < alpha]
    if not significant:
        return (
            f"No ablation differs significantly from full GRASP in success (McNemar exact, "
            f"Holm over {len(comparisons)} comparisons, alpha {alpha})."
        )
    parts = []
    for c in significant:
        cell, horizon, label = c.a.split("/")
        delta = 100 * (c.success_a - c.success_b)
        word = "raises" if delta > 0 else "lowers"
        parts.append(
            f"{label} {word} success by {abs(delta):.0f} points on {cell} {horizon} "
            f"(p_adj {c.p_success_adj:.3g})"
        )
    rest = len(comparisons) - len(significant)
    return (
        "Against full GRASP: "
        + "; ".join(parts)
        + f"; the other {rest} comparisons are not significant (McNemar exact, Holm, alpha "
        f"{alpha})."
    )


def table_rows(
    bars: Sequence[ResultRow], floors: Mapping[tuple[str, int], Mapping[str, float]]
) -> list[dict[str, str]]:
    """Rows: variants (then the random floor); columns: cell x horizon (success % [95% CI])."""
    columns = list(dict.fromkeys((b.cell, b.horizon) for b in bars))
    labels = list(dict.fromkeys(b.label for b in bars))
    by_key = {(b.cell, b.horizon, b.label): b for b in bars}
    rows = []
    for label in labels:
        row = {"variant": label}
        for cell, horizon in columns:
            bar = by_key.get((cell, horizon, label))
            row[f"{cell} H{horizon}"] = success_pct(bar.test) if bar else "-"
        rows.append(row)
    floor_row = {"variant": "random"}
    for cell, horizon in columns:
        floor_row[f"{cell} H{horizon}"] = success_pct(floors.get((cell, horizon), {}))
    rows.append(floor_row)
    return rows


def significance_rows(comparisons: Sequence[Any]) -> list[dict[str, str]]:
    """One row per comparison with full GRASP."""
    return [
        {
            "comparison": f"{c.a} vs {c.b.rsplit('/', 1)[-1]}",
            "n pairs": str(c.n),
            "success": f"{100 * c.success_a:.0f}% vs {100 * c.success_b:.0f}%",
            "only variant / only full": f"{c.a_only:.0f} / {c.b_only:.0f}",
            "p (McNemar)": f"{c.p_success:.3g}",
            "p Holm": f"{c.p_success_adj:.3g}",
        }
        for c in comparisons
    ]


def bars_png(
    bars: Sequence[ResultRow], floors: Mapping[tuple[str, int], Mapping[str, float]]
) -> bytes:
    """The ablation bars: a panel per cell x horizon, a bar per variant with its 95% CI.

    The random floor is dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((b.cell, b.horizon) for b in bars))
    labels = list(dict.fromkeys(b.label for b in bars))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.2 + 0.75 * len(labels) * len(panels), 4), squeeze=False
    )
    for ax, (cell, horizon) in zip(axes[0], panels, strict=True):
        mine = {b.label: b for b in bars if (b.cell, b.horizon) == (cell, horizon)}
        xs, ys, low, high, colours = [], [], [], [], []
        for i, label in enumerate(labels):
            if label not in mine:
                continue
            m = mine[label].test
            xs.append(i)
            ys.append(100 * m["success_rate"])
            low.append(max(0.0, 100 * (m["success_rate"] - m["ci_low"])))  # Wilson: 0 - 1e-17
            high.append(max(0.0, 100 * (m["ci_high"] - m["success_rate"])))
            colours.append("#2a7" if label == REFERENCE else "#68a")
        ax.bar(xs, ys, yerr=[low, high], color=colours, capsize=3)
        floor = floors.get((cell, horizon))
        if floor and not math.isnan(floor.get("success_rate", math.nan)):
            ax.axhline(100 * floor["success_rate"], ls="--", color="grey", label="random floor")
            ax.legend(loc="upper right", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        n = max((b.test["n"] for b in mine.values()), default=0)
        ax.set_title(f"{cell}, H = {horizon} (n = {n:.0f} per bar)", fontsize=9)
        ax.set_ylim(0, 105)
        ax.set_ylabel("test success % (95% CI)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def build_report(client: Any, run: Any, tracking_uri: str) -> StudyReport:
    """The study report from the study run and its sweeps in MLflow.

    Raises:
        ValueError: The study has no finished sweep.
    """
    sweeps = cell_sweeps(client, run)
    study_id = run.data.tags.get(STUDY_ID, run.info.run_name)
    if not sweeps:
        raise ValueError(f"study {study_id} has no finished sweep to report")
    bars, floors = pool_bars(sweeps)
    comparisons = compare_to_reference(bars)
    rows = table_rows(bars, floors)
    params = run.data.params
    seeds = sorted({seed for _, seed, _ in sweeps})
    first = sweeps[0][2]
    header = [
        f"study {study_id} ({params.get('study_name', '?')}): recipe {params.get('recipe')}, "
        f"{len(sweeps)} finished sweeps, seeds {seeds}",
        f"cells: {', '.join(dict.fromkeys(c for c, _, _ in sweeps))}; protocol version "
        f"{first.protocol.get('version', '?')}, {first.protocol.get('test_episodes', '?')} test "
        f"goals per seed, {params.get('num_samples', '?')} trials per variant per sweep",
    ]
    url = run_url(tracking_uri, run.info.experiment_id, run.info.run_id)
    rep = StudyReport(
        study_id=study_id,
        header=header,
        bars=bars,
        floors=floors,
        comparisons=comparisons,
        verdict=verdict_text(comparisons),
        table=fit_table(rows),
        rows=rows,
        significance=significance_rows(comparisons),
        url=url,
    )
    rep.png = bars_png(bars, floors)
    legend = (
        "Cells: test success % [95% Wilson CI], pooled over seeds (n in the bars' titles). "
        f"Variants are compared with '{REFERENCE}' (full GRASP) on the same goals."
    )
    rep.markdown = "\n".join(
        [
            *rep.header,
            "",
            f"Verdict: {rep.verdict}",
            "",
            render_table(rows),
            "",
            legend,
            "",
            render_table(rep.significance) if rep.significance else "(no comparisons)",
            "",
            f"MLflow: {url}",
        ]
    )
    rep.html = render_html(rep, legend)
    return rep


def render_html(rep: StudyReport, legend: str) -> str:
    """A self-contained HTML page (inline CSS, the bars as a data: URI, no script)."""
    header = "".join(f"<li>{html.escape(h)}</li>" for h in rep.header)
    image = base64.b64encode(rep.png).decode()
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>grasplab ablation study'
        f"</title><style>{CSS}</style></head><body><h1>Ablation study {html.escape(rep.study_id)}"
        f'</h1><ul>{header}</ul><p id="verdict"><b>Verdict.</b> {html.escape(rep.verdict)}</p>'
        f"<h2>Ablation table</h2>{html_table(rep.rows, 'ablation')}<p>{html.escape(legend)}</p>"
        f'<h2>Ablation bars</h2><img id="bars" alt="ablation bars" '
        f'src="data:image/png;base64,{image}">'
        f"<h2>Against full GRASP</h2>{html_table(rep.significance, 'significance')}"
        "<p>McNemar's exact test on the same test goals (pooled over seeds), Holm-adjusted over "
        f"the study.</p><p>MLflow: <code>{html.escape(rep.url)}</code></p></body></html>"
    )


def log_report(client: Any, run_id: str, rep: StudyReport, out: Path) -> list[Path]:
    """Write ``ablation.{html,md,png,json}`` to ``out``; log them and more to the study run.

    Also the pooled metrics, the p-values against full GRASP and the description.
    """
    import json

    from mlflow.entities import Metric

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "ablation.html", out / "ablation.md", out / "ablation.png"]
    paths[0].write_text(rep.html, encoding="utf-8")
    paths[1].write_text(rep.markdown + "\n", encoding="utf-8")
    paths[2].write_bytes(rep.png)
    rows = [
        {"cell": b.cell, "horizon": b.horizon, "variant": b.label, "seeds": b.seeds, **b.test}
        for b in rep.bars
    ]
    (out / "ablation.json").write_text(json.dumps(rows, indent=1, default=float))
    paths.append(out / "ablation.json")
    for path in paths:
        client.log_artifact(run_id, str(path), "report")
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{b.cell}/H{b.horizon}/{b.label}/test_{k}", float(v), now, 0)
        for b in rep.bars
        for k, v in b.test.items()
        if k in ("success_rate", "ci_low", "ci_high", "n", "median_time_to_success")
        and math.isfinite(float(v))
    ]
    metrics += [
        Metric(f"{c.a}/p_success_adj", float(c.p_success_adj), now, 0)
        for c in rep.comparisons
        if math.isfinite(c.p_success_adj)
    ]
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    client.set_tag(run_id, "mlflow.note.content", rep.markdown)
    client.set_tag(run_id, "verdict", rep.verdict[:4000])
    return paths


__getattr__ = moved_names(
    __name__, {"main": "grasplab.cli.ablate.main", "parse_args": "grasplab.cli.ablate.parser"}
)


def report_study(client: Any, uri: str, run: Any, out: str | None) -> list[Path]:
    """Rebuild a study's ablation report from MLflow and log it back (``grasplab report``).

    Returns:
        The written files.

    Raises:
        ReportError: The study's runs cannot be read back into a report.
    """
    try:
        rep = build_report(client, run, uri)
    except ValueError as error:
        raise ReportError(str(error)) from error
    folder = Path(out or Path("reports") / run.data.tags.get(STUDY_ID, run.info.run_id))
    return log_report(client, run.info.run_id, rep, folder.resolve())
