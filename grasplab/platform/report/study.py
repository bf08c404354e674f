"""The ablation study's report: the table pooled over seeds, the tests, the bars, the documents.

Built from MLflow alone (the study run and its cells' sweep runs, read back by
:mod:`grasplab.platform.report.readback`), by ``grasplab ablate`` when a study ends and by
``grasplab report <study>``. Every row is a :class:`~grasplab.platform.report.rows.ResultRow`
(a variant in a cell at a horizon, pooled over the study's seeds).
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grasplab.platform.report.readback import load_sweep
from grasplab.platform.report.rows import ResultRow
from grasplab.platform.report.tables import CSS, fit_table, html_table, render_table, success_pct
from grasplab.platform.tracking import CELL, PARENT, ROLE, SEED, STUDY_ID, run_url

REFERENCE = "grasp"
"""The variant every other variant is compared with (the full method)."""
ALPHA = 0.05
"""Significance level of the study's verdict (Holm-adjusted)."""


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
