"""Tables and statistics of a sweep: comparison and summary rows, the verdict, the header, HTML."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from grasplab.eval import format_cell
from grasplab.platform.report.rows import ResultRow


def short(value: Any) -> str:
    """Compact text of a config value."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def config_text(tuned: Mapping[str, Any]) -> str:
    """``k=v`` pairs of the tuned fields."""
    return " ".join(f"{k}={short(v)}" for k, v in sorted(tuned.items())) or "(defaults)"


def tts_cell(metrics: Mapping[str, float]) -> str:
    """Median time to success, ``0.42 s`` (``-`` when nothing was solved)."""
    value = metrics.get("median_time_to_success", math.nan)
    return "-" if value is None or math.isnan(value) else f"{value:.2f} s"


def sts_cell(metrics: Mapping[str, float]) -> str:
    """Median model steps to success (``-`` when nothing was solved)."""
    value = metrics.get("median_steps_to_success", math.nan)
    return "-" if value is None or math.isnan(value) else f"{value:.0f}"


def comparison_rows(
    results: Sequence[ResultRow], floors: Mapping[int, Mapping[str, float]]
) -> list[dict[str, str]]:
    """Rows of ``comparison.json``: one per result (then its default), the floor per horizon."""
    rows = []
    for r in results:
        rows.append(_comparison_row(r.label, r.horizon, config_text(r.tuned), r.test))
        if r.default:
            untuned = f"untuned defaults; {tuned_vs_default(r)}"
            rows.append(_comparison_row(r.label + DEFAULT_SUFFIX, r.horizon, untuned, r.default))
    for horizon, floor in sorted(floors.items()):
        rows.append(_comparison_row("random floor", horizon, "uniform random actions", floor))
        rows[-1].update({"median tts": "-", "median model steps to success": "0"})
        rows[-1]["model steps"] = "0"
    return rows


def _comparison_row(
    label: str, horizon: int, config: str, metrics: Mapping[str, float]
) -> dict[str, str]:
    return {
        "planner": label,
        "horizon": str(horizon),
        "best config": config,
        "test success [95% CI] / median tts": format_cell(metrics),
        "median tts": tts_cell(metrics),
        "median model steps to success": sts_cell(metrics),
        "model steps": f"{metrics.get('model_steps', math.nan):.0f}",
        "n": f"{metrics.get('n', 0):.0f}",
    }


DEFAULT_SUFFIX = " (default)"
"""Label suffix of a variant's untuned row (its default config on the same test goals)."""


def tuned_vs_default(r: ResultRow) -> str:
    """``tuned - default: +3 pts, McNemar p=0.34 (only tuned 5 / only default 1)``."""
    c = r.default_comparison
    if r.default_is_pick:
        return "the pick is the default config"
    if not c:
        return "no paired test"
    diff = 100 * (c["success_a"] - c["success_b"])
    return (
        f"tuned - default: {diff:+.0f} pts, {c['success_test']} p={p_text(c['p_success'])} "
        f"(only tuned {c['a_only']:.0f} / only default {c['b_only']:.0f})"
    )


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


def success_cell(metrics: Mapping[str, float]) -> str:
    """Success % with its 95% CI, ``71 [63, 78]`` (``-`` when there is none)."""
    rate = metrics.get("success_rate", math.nan)
    if rate is None or math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f} [{100 * metrics['ci_low']:.0f}, {100 * metrics['ci_high']:.0f}]"


def summary_rows(
    results: Sequence[ResultRow],
    floors: Sequence[ResultRow] | Mapping[int, Mapping[str, float]],
    protocol: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Rows of the printed (and reported) table; abbreviations in :data:`LEGEND`.

    Args:
        results: One row each, followed by its default config's row when it has one.
        floors: The random floor per horizon (``{horizon: metrics}``), or its rows (several
            sweeps lined up: labels that name their sweep).
        protocol: Sweep id -> protocol version: adds a ``protocol`` column (``grasplab
            report``).
    """
    if isinstance(floors, Mapping):
        floors = floor_rows(floors)
    rows = []
    for r in results:
        version = None if protocol is None else protocol.get(r.sweep, "?")
        rows.append(_summary_row(r.label, r.horizon, r.test, config_text(r.tuned), version))
        if r.default:
            label = r.label + DEFAULT_SUFFIX
            rows.append(_summary_row(label, r.horizon, r.default, tuned_vs_default(r), version))
    for f in floors:
        version = None if protocol is None else protocol.get(f.sweep, "?")
        row = _summary_row(f.label, f.horizon, f.test, "uniform random actions", version)
        rows.append({**row, "TTS (s)": "-", "STS": "0", "steps": "0"})
    return rows


def floor_rows(
    floors: Mapping[int, Mapping[str, float]], sweep: str = "", label: str = "random floor"
) -> list[ResultRow]:
    """The random floor's rows, one per horizon."""
    return [
        ResultRow(key=f"{label}-H{h}", label=label, horizon=h, test=dict(f), sweep=sweep)
        for h, f in sorted(floors.items())
    ]


def _summary_row(
    label: str, horizon: int, metrics: Mapping[str, float], config: str, version: str | None
) -> dict[str, str]:
    row = {
        "planner": label,
        "H": str(horizon),
        "SR % [95% CI]": success_cell(metrics),
        "TTS (s)": tts_cell(metrics).removesuffix(" s"),
        "STS": sts_cell(metrics),
        "steps": f"{metrics.get('model_steps', math.nan):.0f}",
        "n": f"{metrics.get('n', 0):.0f}",
    }
    if version is not None:
        row["protocol"] = version
    return {**row, "best config": config}


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


def success_pct(metrics: Mapping[str, float]) -> str:
    """``25% [5, 70]``: the success rate with its 95% CI, for sentences (``-``: none)."""
    rate = metrics.get("success_rate", math.nan)
    if rate is None or math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f}% [{100 * metrics['ci_low']:.0f}, {100 * metrics['ci_high']:.0f}]"


def p_text(value: float) -> str:
    """A p-value as printed: 3 decimals, ``<0.001``, or ``n/a``."""
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
    described = f"{other.label}'s ({success_pct(other.test)}"
    if found is None:
        return f"not tested against {described})"
    c, _ = found
    p = c.p_success_adj
    better = lead.test["success_rate"] > other.test["success_rate"]
    word = (
        "significantly higher than" if better and p < alpha else "not significantly different from"
    )
    return f"{word} {described}, p={p_text(p)})"


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
            f"(median {abs(c.tts_diff):.0f} steps less, p={p_text(c.p_tts_adj)}, {c.tts_test}"
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
        f"less, p={p_text(c.p_tts_adj)}, {c.tts_test} on wall seconds)"
    )


def verdict(
    outcomes: Sequence[ResultRow],
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
            f"({success_pct(lead.test)}, n={lead.test.get('n', 0):.0f})"
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
            "p": p_text(c.p_success),
            "p (Holm)": p_text(c.p_success_adj),
            "cost A-B": _cost_diff(c),
            "n cost": str(c.n_tts),
            "cost test": c.tts_test,
            "p cost": p_text(c.p_tts),
            "p cost (Holm)": p_text(c.p_tts_adj),
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
) -> str:
    """The printed summary (the parent run's description is :func:`description`).

    Lines are wrapped at :data:`WIDTH` columns, except the table's, which fit already.
    """
    import textwrap

    lines = list(header)
    lines += ["", *textwrap.wrap(f"Verdict: {verdict_text}", WIDTH), "", table, ""]
    lines += textwrap.wrap(LEGEND, WIDTH)
    if url:
        lines += ["", f"MLflow run (model-training view): {url}"]
    if command:
        lines += ["start the UI on this sweep's store with:", f"  {command}"]
    return "\n".join(lines)


MARKDOWN_SPECIAL = "\\`*_[]()#|<>"
"""Characters escaped in text that MLflow renders as Markdown (a run's description)."""


def markdown_escape(text: str) -> str:
    """``text`` with Markdown's special characters backslash-escaped (rendered as written)."""
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIAL else c for c in text)


def markdown_table(rows: Sequence[Mapping[str, str]]) -> str:
    """A Markdown pipe table: header from the first row's keys, every cell escaped."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(markdown_escape(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(markdown_escape(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def description(
    header: Sequence[str],
    verdict_text: str,
    rows: Sequence[Mapping[str, str]],
    configs: Mapping[str, Mapping[str, Any]],
) -> str:
    """A sweep's parent-run description (MLflow renders it as Markdown).

    The header as a list, the verdict, the full table (no cell cut), its legend, and every
    chosen config written out in full; all text escaped so that it renders as written.
    """
    lines = [f"- {markdown_escape(h)}" for h in header]
    lines += ["", f"**Verdict.** {markdown_escape(verdict_text)}", "", markdown_table(rows), ""]
    lines += [markdown_escape(LEGEND), "", "**Chosen configs** (every field)", ""]
    lines += [
        f"- {markdown_escape(key)}: `{config_text(config)}`" for key, config in configs.items()
    ]
    return "\n".join(lines) + "\n"


CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;font-size:13px}th{background:#eee}.bar{background:#4a7;height:10px}"
    "img{max-width:600px;margin:0.5em;border:1px solid #ddd}"
    ".wide{margin:1em 0}.wide img{width:100%;max-width:none;margin:0}"
    ".gifs img{max-width:380px}"
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
