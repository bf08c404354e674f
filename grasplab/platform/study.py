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

import difflib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grasplab.moved import moved_names
from grasplab.platform import fingerprint, runtime
from grasplab.platform import progress as live
from grasplab.platform.config import ConfigError, SweepSpec, compose, parse
from grasplab.platform.report.readback import ReportError
from grasplab.platform.report.study import StudyReport, build_report, log_report
from grasplab.platform.tracking import (
    CELL,
    PARENT,
    ROLE,
    SEED,
    STUDY_ID,
    git_sha,
    ui_command,
)


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
                # checked here, not in a process per cell (a study parses cells x seeds)
                spec = parse(compose([*base, *extra, *pinned]), isolate=False)
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


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.ablate.main",
        "parse_args": "grasplab.cli.ablate.parser",
        "cell_sweeps": "grasplab.platform.report.study.cell_sweeps",
        "pool_floor": "grasplab.platform.report.study.pool_floor",
        "pool_bars": "grasplab.platform.report.study.pool_bars",
        "compare_to_reference": "grasplab.platform.report.study.compare_to_reference",
        "verdict_text": "grasplab.platform.report.study.verdict_text",
        "table_rows": "grasplab.platform.report.study.table_rows",
        "significance_rows": "grasplab.platform.report.study.significance_rows",
        "bars_png": "grasplab.platform.report.study.bars_png",
        "render_html": "grasplab.platform.report.study.render_html",
        "REFERENCE": "grasplab.platform.report.study.REFERENCE",
        "ALPHA": "grasplab.platform.report.study.ALPHA",
    },
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
