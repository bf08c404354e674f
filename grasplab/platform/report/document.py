"""The documents of ``grasplab report`` (:mod:`grasplab.cli.report`): HTML + Markdown of sweeps.

Built from MLflow alone (never from local sweep folders): the parent run's params and
test metrics, its per-episode test tables (``test/<key>.json``), its trial child runs and its
image artifacts. Writes a self-contained ``report.html`` (images inlined as base64, no external
URL or script) and a ``report.md``, and logs both to every parent run under ``report/``.

Contents: the comparison table (success % [95% CI], median time-to-success, n, random floor,
protocol version), a significance test per pairwise comparison at the same horizon (McNemar's
exact test on success and Wilcoxon signed-rank on each goal's model steps to success, paired
on the same test goals; Holm-adjusted), the verdict, Optuna's hyperparameter importances per
planner variant (complete trials only) and every png/gif image of the parent run.

Several sweeps are lined up side by side (keys ``<sweep id>:<variant>``) and compared pairwise;
sweeps with different protocol versions or task sets are refused (exit 2); sweeps whose runtime
fingerprints differ (:mod:`grasplab.platform.fingerprint`) are lined up with a warning that
names the differing keys.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from grasplab.eval.significance import Comparison, pairwise
from grasplab.platform import fingerprint
from grasplab.platform.report import tables
from grasplab.platform.report.readback import (
    ReportError,
    Sweep,
    load_sweep,  # noqa: F401  (re-exported: grasplab.cli.report reads sweeps through here)
    outcome_key,
    param_value,
    protocol_of,
    sweep_id_of,
)
from grasplab.platform.report.rows import ResultRow
from grasplab.platform.report.tables import CSS, html_table
from grasplab.platform.tracking import ROLE, SWEEP_ID, run_url

TASK_SET = ("env", "env_overrides", "seed", "tune_episodes", "test_episodes", "success_rule")
"""Protocol fields that decide which goals are posed and what counts as solved."""
RUN_ID = re.compile(r"[0-9a-f]{32}")


def open_store(uri: str) -> MlflowClient:
    """A client of the store; a missing SQLite file is an error (not a new empty store)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ReportError(f"no MLflow store at {uri} (pass --tracking-uri)")
    return MlflowClient(tracking_uri=uri)


def resolve(client: MlflowClient, ref: str) -> Any:
    """The parent run of ``ref``: a parent run id, a sweep id, or a sweep name.

    A sweep name gives its latest FINISHED sweep.
    """
    if RUN_ID.fullmatch(ref):
        try:
            run = client.get_run(ref)
        except MlflowException as error:
            raise ReportError(f"no run {ref} in the store") from error
        if run.data.tags.get(ROLE) != "sweep":
            raise ReportError(f"run {ref} is not a sweep's parent run")
        return run
    if "'" in ref or "\\" in ref:
        raise ReportError(f"not a sweep name, sweep id or run id: {ref!r}")
    ids = [e.experiment_id for e in client.search_experiments()]
    role = f"tags.`{ROLE}` = 'sweep'"
    for condition in (f"tags.`{SWEEP_ID}` = '{ref}'", f"params.sweep_name = '{ref}'"):
        runs = client.search_runs(
            ids, f"{role} and {condition}", order_by=["attributes.start_time DESC"]
        )
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            return finished[0]
        if runs:
            raise ReportError(
                f"sweep {ref!r} has no FINISHED parent run (latest: {runs[0].info.status})"
            )
    raise ReportError(f"no sweep named {ref!r} and no parent run with that id in the store")


def check_compatible(runs: Sequence[Any]) -> None:
    """Refuse to line up parent runs with different protocol versions or task sets."""
    first, mine = runs[0], protocol_of(runs[0])
    for other in runs[1:]:
        theirs = protocol_of(other)
        a, b = mine.get("version"), theirs.get("version")
        if a != b:
            raise ReportError(
                f"cannot mix protocol versions: {sweep_id_of(first)} has version {a}, "
                f"{sweep_id_of(other)} has version {b}"
            )
        differ = [f for f in TASK_SET if mine.get(f) != theirs.get(f)]
        if differ:
            raise ReportError(
                f"cannot mix task sets: {sweep_id_of(first)} and {sweep_id_of(other)} differ in "
                + ", ".join(f"protocol.{f}" for f in differ)
            )


def fingerprint_warning(runs: Sequence[Any]) -> str | None:
    """Why the lined-up parent runs' runtime fingerprints differ (keys named), or None."""
    fps = [fingerprint.of_run(r) for r in runs]
    keys = fingerprint.differing(fps) if len(fps) > 1 else []
    if not keys:
        return None
    return (
        f"sweeps {', '.join(sweep_id_of(r) for r in runs)} ran with different runtime "
        f"fingerprints (differing: {', '.join(keys)})"
    )


def fingerprint_lines(sweeps: Sequence[Sweep]) -> list[str]:
    """The report header's runtime lines: one fingerprint, or one per sweep and a warning."""
    fps = [fingerprint.of_run(s.run) for s in sweeps]
    if len(sweeps) == 1 or not fingerprint.differing(fps):
        return fingerprint.header_lines(fps[0])
    lines = [
        f"{s.sweep_id}: {line}"
        for s, fp in zip(sweeps, fps, strict=True)
        for line in fingerprint.header_lines(fp)
    ]
    return [*lines, f"warning: {fingerprint_warning([s.run for s in sweeps])}"]


def line_up(sweeps: Sequence[Sweep]) -> list[ResultRow]:
    """Every entry; keys and labels prefixed by the sweep id when several sweeps."""
    if len(sweeps) == 1:
        return list(sweeps[0].entries)
    return [
        replace(e, key=f"{s.sweep_id}:{e.key}", label=f"{s.sweep_id}:{e.label}")
        for s in sweeps
        for e in sorted(s.entries, key=lambda e: (e.horizon, e.label))
    ]


# --- Optuna importances ------------------------------------------------------------------------


def complete(trial: Any, tune_episodes: int) -> bool:
    """A trial that ran every tuning episode: not tagged early-stopped (else its ``n``)."""
    flag = trial.data.tags.get("early_stopped")
    if flag is not None:
        return flag != "true"
    return trial.data.metrics.get("n", 0) >= tune_episodes


def distribution(values: Sequence[Any]) -> Any:
    """An Optuna distribution covering ``values`` (the search space, inferred from trials)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted({json.dumps(v) for v in values}))


def importances(trials: Sequence[Any], tune_episodes: int) -> dict[str, float] | str:
    """Optuna's fANOVA importances of the tuned fields on tuning success, or why there are none.

    The study is rebuilt in memory from the complete trials' params and ``success_rate``.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = [t for t in trials if complete(t, tune_episodes) and "success_rate" in t.data.metrics]
    if len(done) < 2:
        return f"{len(done)} complete trial(s): importances need at least 2"
    names = sorted({f for t in done for f in param_value(t.data.tags.get("tuned", "[]"))})
    values = {f: [param_value(t.data.params[f]) for t in done] for f in names}
    spaces = {f: distribution(v) for f, v in values.items()}
    varied = [f for f in names if not spaces[f].single()]
    if not varied:
        return "no tuned field varied across the complete trials"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for i, t in enumerate(done):
        params = {f: _optuna_value(values[f][i], spaces[f]) for f in varied}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={f: spaces[f] for f in varied},
                value=t.data.metrics["success_rate"],
            )
        )
    try:
        found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as error:
        return f"importances failed: {error}"
    return found


def _optuna_value(value: Any, space: Any) -> Any:
    from optuna.distributions import CategoricalDistribution

    return json.dumps(value) if isinstance(space, CategoricalDistribution) else value


def importance_tables(sweeps: Sequence[Sweep]) -> dict[str, dict[str, float] | str]:
    """Importances per planner variant and stage (``<sweep>:`` prefix with several sweeps).

    Keys name the variant and its number of complete trials: ``cem (6 complete trials)``.
    """
    out: dict[str, dict[str, float] | str] = {}
    for s in sweeps:
        groups: dict[str, list[Any]] = {}
        for t in s.trials:
            groups.setdefault(outcome_key(t), []).append(t)
        prefix = f"{s.sweep_id}:" if len(sweeps) > 1 else ""
        episodes = int(s.protocol.get("tune_episodes", 0))
        for key, trials in sorted(groups.items()):
            count = sum(complete(t, episodes) for t in trials)
            out[f"{prefix}{key} ({count} complete trials)"] = importances(trials, episodes)
    return out


# --- rendering -------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything the report shows, as plain data."""

    sweeps: list[Sweep]
    entries: list[ResultRow]
    comparisons: list[Comparison]
    verdict: str
    header: list[str]
    rows: list[dict[str, str]]
    significance: list[dict[str, str]]
    importances: dict[str, dict[str, float] | str]
    urls: dict[str, str]


def table_rows(sweeps: Sequence[Sweep], entries: Sequence[ResultRow]) -> list[dict[str, str]]:
    """The comparison table: the entries (each with its default row), each sweep's floors."""
    protocol = {s.sweep_id: s.protocol.get("version", "?") for s in sweeps}
    floors = [
        row
        for s in sweeps
        for row in tables.floor_rows(
            s.floors,
            s.sweep_id,
            f"{s.sweep_id}:random floor" if len(sweeps) > 1 else "random floor",
        )
    ]
    return tables.summary_rows(entries, floors, protocol)


def build(uri: str, sweeps: Sequence[Sweep]) -> Report:
    """Tables, tests, verdict and importances of the lined-up sweeps."""
    entries = line_up(sweeps)
    comparisons = pairwise({e.key: e.records for e in entries}, {e.key: e.horizon for e in entries})
    first = sweeps[0]
    overrides = param_value(first.protocol.get("env_overrides", "{}"))
    where = tables.where_text(
        first.protocol.get("env", "?"),
        overrides if isinstance(overrides, dict) else {},
        ", ".join(dict.fromkeys(s.run.data.params.get("world_model", "?") for s in sweeps)),
    )
    header = tables.header_lines(
        where,
        [e.horizon for e in entries],
        first.protocol.get("version", "?"),
        ", ".join(dict.fromkeys(s.protocol.get("fingerprint", "?") for s in sweeps)),
        [int(e.test.get("n", 0)) for e in entries],
    )
    header.insert(0, f"sweep(s): {', '.join(s.sweep_id for s in sweeps)}")
    chunk = first.run.data.params.get("chunk_size")
    device = fingerprint.of_run(first.run).get("device", "")
    if chunk and device:
        header.append(f"{tables.TIMING}batched calls of {chunk} episodes on {device}")
    header.extend(fingerprint_lines(sweeps))
    return Report(
        list(sweeps),
        entries,
        comparisons,
        tables.verdict(entries, comparisons, where),
        header,
        table_rows(sweeps, entries),
        tables.significance_rows(comparisons),
        importance_tables(sweeps),
        {s.sweep_id: run_url(uri, s.run.info.experiment_id, s.run.info.run_id) for s in sweeps},
    )


GIF = re.compile(r"gifs/(?P<key>.+)_(?P<kind>success|failure)\.gif")
"""Name of a test-episode GIF on a parent run (:func:`grasplab.platform.publish.gif_artifact`)."""
SIGNIFICANCE_NOTE = (
    "Success: McNemar's exact test on the goals one planner solved and the other did not "
    "(paired on the same test goals; Fisher's exact test when unpaired). Cost to success: "
    "Wilcoxon signed-rank on each goal's model steps to success, over the goals both solved "
    "(Mann-Whitney U when unpaired; wall seconds only for sweeps made before model steps to "
    "success were recorded: a wall time is its batched call's, shared by its chunk). "
    "p-values Holm-adjusted over all comparisons, per family."
)


def image_path(sweeps: Sequence[Sweep], sweep: Sweep, name: str) -> str:
    """Where an image of ``sweep`` lies inside the report folder (relative, ``/``-separated)."""
    return f"images/{sweep.sweep_id}/{name}" if len(sweeps) > 1 else f"images/{name}"


def gif_grid(sweeps: Sequence[Sweep]) -> list[tuple[Sweep, str, dict[str, str]]]:
    """``(sweep, key, {"success": name, "failure": name})``: one row per planner variant."""
    rows: dict[tuple[str, str], tuple[Sweep, dict[str, str]]] = {}
    for s in sweeps:
        for name in s.images:
            found = GIF.fullmatch(name)
            if found:
                rows.setdefault((s.sweep_id, found["key"]), (s, {}))[1][found["kind"]] = name
    return [(s, key, kinds) for (_, key), (s, kinds) in rows.items()]


def plots(sweeps: Sequence[Sweep]) -> list[tuple[Sweep, str]]:
    """Every image that is not a test-episode GIF (``pareto.png`` first)."""
    found = [(s, n) for s in sweeps for n in s.images if not GIF.fullmatch(n)]
    return sorted(found, key=lambda item: item[1] != "pareto.png")


def markdown(rep: Report) -> str:
    """The Markdown report: the answer first (links relative to the report folder)."""
    lines = ["# grasplab report", "", f"**Verdict.** {rep.verdict}", "", "## Test results", ""]
    lines += [tables.render_table(rep.rows), "", tables.LEGEND, ""]
    for s, name in plots(rep.sweeps):
        lines += [f"![{name}]({image_path(rep.sweeps, s, name)})", ""]
    grid = gif_grid(rep.sweeps)
    if grid:
        lines += ["## Test episodes (success, failure)", ""]
        lines += ["| planner | success | failure |", "|---|---|---|"]
        for s, key, kinds in grid:
            cells = [
                f"![{kinds[k]}]({image_path(rep.sweeps, s, kinds[k])})" if k in kinds else "-"
                for k in ("success", "failure")
            ]
            label = f"{s.sweep_id}:{key}" if len(rep.sweeps) > 1 else key
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        lines.append("")
    lines += ["## Pairwise significance tests", ""]
    lines += [tables.render_table(rep.significance) if rep.significance else "(one planner)", ""]
    lines += [SIGNIFICANCE_NOTE, ""]
    lines += ["## Hyperparameter importances (Optuna fANOVA, complete trials, tuning success)", ""]
    for key, value in rep.importances.items():
        text = (
            value if isinstance(value, str) else ", ".join(f"{k} {v:.2f}" for k, v in value.items())
        )
        lines.append(f"- {key}: {text}")
    lines += ["", "## Setup", "", *(f"- {h}" for h in rep.header), ""]
    lines += ["## MLflow runs", ""]
    lines += [f"- [{sweep}]({url})" for sweep, url in rep.urls.items()]
    return "\n".join(lines) + "\n"


def html_importances(values: Mapping[str, dict[str, float] | str]) -> str:
    """One small table per variant, a bar per field."""
    parts = []
    for key, value in values.items():
        parts.append(f"<h3>{html.escape(key)}</h3>")
        if isinstance(value, str):
            parts.append(f"<p>{html.escape(value)}</p>")
            continue
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td>"
            f'<td style="width:200px"><div class="bar" style="width:{100 * v:.0f}%">'
            "</div></td></tr>"
            for k, v in value.items()
        )
        parts.append(f"<table><tr><th>field</th><th>importance</th><th></th></tr>{rows}</table>")
    return "".join(parts)


def data_uri(name: str, data: bytes) -> str:
    """An image inlined as a data URI."""
    kind = "gif" if name.lower().endswith(".gif") else "png"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def html_plots(sweeps: Sequence[Sweep]) -> str:
    """The plots at full width (``pareto.png`` first), inlined."""
    parts = [
        f'<figure class="wide"><img alt="{html.escape(name)}" '
        f'src="{data_uri(name, s.images[name])}"><figcaption>{html.escape(s.sweep_id)}: '
        f"{html.escape(name)}</figcaption></figure>"
        for s, name in plots(sweeps)
    ]
    return "".join(parts) or "<p>(no plots on the parent run)</p>"


def html_gifs(sweeps: Sequence[Sweep]) -> str:
    """The test-episode GIFs in a grid: one row per planner, success and failure side by side."""
    grid = gif_grid(sweeps)
    if not grid:
        return "<p>(no GIFs on the parent run)</p>"
    rows = []
    for s, key, kinds in grid:
        label = f"{s.sweep_id}:{key}" if len(sweeps) > 1 else key
        cells = [
            f'<td><img alt="{html.escape(kinds[k])}" '
            f'src="{data_uri(kinds[k], s.images[kinds[k]])}"></td>'
            if k in kinds
            else "<td>-</td>"
            for k in ("success", "failure")
        ]
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    head = "<tr><th>planner</th><th>success</th><th>failure</th></tr>"
    return f'<table id="gifs" class="gifs">{head}{"".join(rows)}</table>'


def render_html(rep: Report) -> str:
    """The self-contained HTML report (inline CSS and images, no script, no external URL).

    The answer first: the verdict, the table and the Pareto plot at full width, then the GIF
    grid, the tests, the importances, the setup and the (clickable) MLflow runs.
    """
    header = "".join(f"<li>{html.escape(h)}</li>" for h in rep.header)
    urls = "".join(
        f'<li>{html.escape(k)}: <a href="{html.escape(v)}">{html.escape(v)}</a></li>'
        for k, v in rep.urls.items()
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>grasplab report</title>'
        f"<style>{CSS}</style></head><body><h1>grasplab report</h1>"
        f'<p id="verdict"><b>Verdict.</b> {html.escape(rep.verdict)}</p>'
        f"<h2>Test results</h2>{html_table(rep.rows, 'results')}"
        f"<p>{html.escape(tables.LEGEND)}</p>{html_plots(rep.sweeps)}"
        f"<h2>Test episodes</h2>{html_gifs(rep.sweeps)}"
        f"<h2>Pairwise significance tests</h2>{html_table(rep.significance, 'significance')}"
        f"<p>{html.escape(SIGNIFICANCE_NOTE)}</p>"
        "<h2>Hyperparameter importances</h2><p>Optuna fANOVA on the tuning success rate, "
        f"complete trials only.</p>{html_importances(rep.importances)}"
        f'<h2>Setup</h2><ul id="setup">{header}</ul>'
        f'<h2>MLflow runs (model-training view)</h2><ul id="runs">{urls}</ul></body></html>'
    )


def write_report(client: MlflowClient, uri: str, sweeps: Sequence[Sweep], out: Path) -> list[Path]:
    """Write ``report.html``, ``report.md`` and its ``images/`` to ``out``; log them.

    Every file goes to every parent run under ``report/``, so that the Markdown's relative
    links hold there too.
    """
    rep = build(uri, sweeps)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.html", out / "report.md"]
    paths[0].write_text(render_html(rep), encoding="utf-8")
    paths[1].write_text(markdown(rep), encoding="utf-8")
    images = []
    for s in sweeps:
        for name, data in s.images.items():
            path = out / image_path(sweeps, s, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            images.append(path)
    for s in sweeps:
        for path in paths:
            client.log_artifact(s.run.info.run_id, str(path), "report")
        for path in images:
            folder = path.parent.relative_to(out).as_posix()
            client.log_artifact(s.run.info.run_id, str(path), f"report/{folder}")
    return paths
