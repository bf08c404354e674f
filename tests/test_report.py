"""The sweep's printed summary and verdict, the parent's description, and ``grasplab report``.

Statistics are checked against hand-computed answers; one tiny sweep (the real CLI) then feeds
the summary, description, metrics and report assertions; the HTML report is rendered in a
headless Chromium.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from grasplab.cli import report as cli_report
from grasplab.eval import significance as sig
from grasplab.platform.config import load
from grasplab.platform.report import document as reporting
from grasplab.platform.report import readback, tables
from grasplab.platform.tracking import Tracker
from tests.conftest import TINY_SWEEP

from .support import MlflowServer, trials_and_parents


def records(success: list[int], tts: list[float] | None = None, order: list[int] | None = None):
    order = order or list(range(len(success)))
    tts = tts or [1.0 if s else math.nan for s in success]
    return [{"index": i, "success": bool(success[i]), "time_to_success": tts[i]} for i in order]


# --- statistics with known answers -----------------------------------------------------------


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    # 1 goal only A solved, 6 only B solved, 3 both, 2 neither: p = 2 * P(X <= 1 | 7, 1/2)
    a = [1] + [0] * 6 + [1] * 3 + [0] * 2
    b = [0] + [1] * 6 + [1] * 3 + [0] * 2
    assert sig.mcnemar_exact(a, b) == pytest.approx(2 * (1 + 7) / 2**7)
    assert sig.mcnemar_exact([1, 0], [1, 0]) == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="equal shapes"):
        sig.mcnemar_exact([1, 0], [1])


def test_holm_and_the_rank_tests_match_hand_computed_values():
    adjusted = sig.holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    # five positive paired differences: exact two-sided p = 2 / 2**5
    assert sig.wilcoxon_paired([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]) == pytest.approx(0.0625)
    assert sig.wilcoxon_paired([1.0], [1.0]) == 1.0 and math.isnan(sig.wilcoxon_paired([], []))
    # Fisher on [[3, 1], [1, 3]]: two-sided p = 34/70
    assert sig.fisher_exact([1, 1, 1, 0], [1, 0, 0, 0]) == pytest.approx(34 / 70)


def test_compare_pairs_episodes_by_goal_index_else_falls_back_to_unpaired_tests():
    a = records([1, 1, 0, 1], [0.5, 1.0, math.nan, 2.0])
    b = records([1, 0, 0, 1], [1.5, math.nan, math.nan, 1.0], order=[3, 2, 1, 0])
    c = sig.compare("a", "b", a, b, 6)
    assert (c.paired, c.n, c.a_only, c.b_only, c.n_tts) == (True, 4, 1, 0, 2)
    assert c.success_test == sig.MCNEMAR and c.tts_test == sig.WILCOXON
    assert c.tts_diff == pytest.approx(0.0)  # median of (0.5 - 1.5, 2.0 - 1.0)
    shifted = [{**r, "index": r["index"] + 10} for r in b]
    u = sig.compare("a", "b", a, shifted, 6)
    assert (u.paired, u.success_test, u.tts_test) == (False, sig.FISHER, sig.MANN_WHITNEY)


def outcome(key: str, success: list[int], horizon: int = 15):
    k, n = sum(success), len(success)
    low, high = sig_ci(k, n)
    return SimpleNamespace(
        key=key,
        label=key,
        horizon=horizon,
        test={"success_rate": k / n, "ci_low": low, "ci_high": high, "n": n},
        test_records=records(success),
    )


def sig_ci(k: int, n: int) -> tuple[float, float]:
    from grasplab.eval.metrics import wilson_interval

    return wilson_interval(k, n)


def test_verdict_says_which_differences_are_significant():
    grasp = outcome("grasp", [1] * 20)
    cem = outcome("cem", [0] * 20)
    gd = outcome("gd", [1] * 19 + [0])
    outcomes = [cem, grasp, gd]
    comparisons = sig.pairwise(
        {o.key: o.test_records for o in outcomes}, {o.key: o.horizon for o in outcomes}
    )
    text = tables.verdict(outcomes, comparisons, "pointmaze (oracle)")
    assert text.startswith("At H=15 on pointmaze (oracle), grasp's test success (100% [84, 100]")
    assert "significantly higher than cem's (0% [0, 16], p=<0.001)" in text
    assert "not significantly different from gd's (95% [76, 99], p=1.000)" in text
    assert "McNemar exact, Holm-adjusted" in text and text.count(".") >= 1
    metrics = tables.significance_metrics(comparisons)
    assert metrics["success_diff/cem_vs_grasp"] == -1.0
    assert 0 < metrics["p_success_holm/cem_vs_grasp"] < 1e-4


def test_printed_table_fits_120_columns_whatever_the_config_length():
    rows = [
        {"planner": "grasp", "H": "60", "SR": "70 [61, 77]", "best config": "x=1 " * 80},
        {"planner": "cem", "H": "60", "SR": "20 [13, 28]", "best config": "n=4"},
    ]
    lines = tables.fit_table(rows).splitlines()
    assert all(len(line) <= 120 for line in lines) and lines[2].rstrip(" |").endswith("...")
    assert "n=4" in lines[3]


def trial_run(x: float, y: int, success: float, n: int, early: str | None):
    tags = {"tuned": json.dumps(["x", "y"])} | ({} if early is None else {"early_stopped": early})
    return SimpleNamespace(
        data=SimpleNamespace(
            tags=tags,
            params={"x": str(x), "y": str(y), "planner": "cem"},
            metrics={"success_rate": success, "n": n},
        )
    )


def test_importances_use_complete_trials_only():
    # success follows x; y is noise. Early-stopped trials (tagged, or short of the tuning split
    # when untagged) are left out.
    runs = [trial_run(x / 10, (7 * x) % 5, x / 10, 8, "false") for x in range(10)]
    stopped = [trial_run(0.5, 1, 0.0, 2, "true"), trial_run(0.7, 2, 0.0, 2, None)]
    assert [reporting.complete(r, 8) for r in stopped] == [False, False]
    assert reporting.complete(trial_run(0.5, 1, 0.0, 8, None), 8)
    found = reporting.importances(runs + stopped, 8)
    assert set(found) == {"x", "y"} and found["x"] > 0.8 > found["y"]
    assert reporting.importances(runs[:1] + stopped, 8) == (
        "1 complete trial(s): importances need at least 2"
    )


# --- one tiny sweep through the real CLI -----------------------------------------------------


@pytest.fixture(scope="module")
def swept(tiny_sweep):
    """The session's tiny sweep (``tiny_sweep`` in ``tests/conftest.py``)."""
    return tiny_sweep


def test_printed_summary_has_header_verdict_url_and_a_120_column_table(swept):
    out, parent = swept.stdout, swept.parent
    assert "env / world model: pointmaze[layout=medium] (oracle)" in out
    assert "horizon(s): 6 model steps" in out and "n: 4 held-out test goals per planner" in out
    assert re.search(r"protocol: version 1 \(fingerprint [0-9a-f]{12}\)", out)
    assert "Verdict: At H=6 on pointmaze[layout=medium] (oracle)" in out
    url = (
        f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/"
        f"{parent.info.run_id}?workflowType=machine_learning"
    )
    assert (
        url in out
        and f"mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri {swept.uri}" in out
    )
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5 and all(len(line) <= 120 for line in table)
    # each planner's tuned row, then its default config's row on the same goals, then the floor
    labels = [line.split("|")[1].strip() for line in table[2:]]
    assert labels == ["grasp", "grasp (default)", "cem", "cem (default)", "random floor"]
    legend = " ".join(out.split())
    assert "SR: success rate" in legend and "TTS: median wall time to success" in legend
    assert "STS: median world-model steps to success" in legend
    # what a wall time is: the batched call at the sweep's chunk size and device
    assert re.search(r"wall times \(TTS\): batched calls of 2 episodes on cpu\b", out)
    assert "episodes on auto" not in out  # the device the workers planned on, not the setting
    header = table[0].split("|")
    assert "STS" in [c.strip() for c in header]


def test_parent_run_carries_the_description_and_the_tests_as_metrics(swept):
    client = MlflowClient(swept.uri)
    run = client.get_run(swept.parent.info.run_id)
    description, verdict = run.data.tags["mlflow.note.content"], run.data.tags["verdict"]
    assert verdict.startswith("At H=6 on pointmaze[layout=medium] (oracle)")
    # Markdown that renders as written: escaped text, a real table, configs in full
    assert tables.markdown_escape(verdict) in description
    assert "pointmaze\\[layout=medium\\] \\(oracle\\)" in description
    assert "\n\n| planner | H | SR % \\[95% CI\\] |" in description
    assert "\n|---|---|---|" in description and "| random floor | 6 |" in description
    full = re.search(r"^- grasp: `(.*)`$", description, re.M)
    assert full and "sync_interval=" in full[1] and "..." not in description
    # the logged p-value is McNemar's on the per-episode tables the parent holds
    logged = {
        k: readback.read_table(client, run.info.run_id, f"test/{k}.json") for k in ("grasp", "cem")
    }
    expected = sig.mcnemar_exact(
        *[[r["success"] for r in sorted(logged[k], key=lambda r: r["index"])] for k in logged]
    )
    assert run.data.metrics["p_success/grasp_vs_cem"] == pytest.approx(expected)
    assert run.data.metrics["p_success_holm/grasp_vs_cem"] == pytest.approx(expected)  # 1 test
    rates = [run.data.metrics[f"{k}/test_success_rate"] for k in ("grasp", "cem")]
    assert run.data.metrics["success_diff/grasp_vs_cem"] == pytest.approx(rates[0] - rates[1])


def test_each_test_result_and_the_floor_is_a_test_run_the_ui_can_compare(swept):
    client = MlflowClient(swept.uri)
    parent = client.get_run(swept.parent.info.run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`grasplab.role` = 'test'",
    )
    by_name = {r.info.run_name: r for r in runs}
    m = parent.data.metrics
    assert {"grasp", "cem", "random floor H6"} <= set(by_name)
    assert all(r.info.status == "FINISHED" for r in runs)
    for key in ("grasp", "cem"):
        if f"{key} (default)" in by_name:
            default = by_name[f"{key} (default)"]
            assert default.data.metrics["success_rate"] == m[f"{key}/default_test_success_rate"]
            assert default.data.tags["config"] == "default"
        else:  # the pick is the default config: its one run stands for both
            assert m[f"{key}/default_test_success_rate"] == m[f"{key}/test_success_rate"]
            assert m[f"{key}/tuned_vs_default_p_success"] == 1.0
    for key in ("grasp", "cem"):
        run = by_name[key]
        assert run.data.metrics["success_rate"] == m[f"{key}/test_success_rate"]
        assert run.data.metrics["n"] == m[f"{key}/test_n"]
        assert run.data.tags["variant"] == key and run.data.tags["config"] == "tuned"
        field = {"grasp": "n_steps", "cem": "n_iterations"}[key]  # the config, in full
        assert run.data.params["planner"] == key and field in run.data.params
    floor = by_name["random floor H6"]
    assert floor.data.metrics["success_rate"] == m["random_floor/H6/success_rate"]


def test_the_mlflow_ui_puts_the_planners_side_by_side(swept):
    """The runs table finds the test runs, and its compare view shows them side by side."""
    from urllib.parse import quote

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    client = MlflowClient(swept.uri)
    parent = client.get_run(swept.parent.info.run_id)
    experiment = parent.info.experiment_id
    search = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`grasplab.role` = 'test'"
    runs = client.search_runs([experiment], search)
    assert len(runs) >= 3

    def dom(url: str) -> str:
        page = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
            + ["--virtual-time-budget=30000", "--window-size=1600,1200", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return page.stdout

    server = MlflowServer(swept.folder)  # serves the sweep's own SQLite store, on loopback
    server.start()
    try:
        table = dom(f"{server.uri}/#/experiments/{experiment}/runs?searchFilter={quote(search)}")
        found = re.search(r"<strong>(\d+)</strong> matching runs", table)
        # the matching test runs, listed under their parent's row (which the UI counts too)
        assert found and int(found[1]) in (len(runs), len(runs) + 1), table[-2000:]
        ids = quote(json.dumps([r.info.run_id for r in runs]))
        compare = dom(
            f"{server.uri}/#/compare-runs?runs={ids}&experiments={quote(json.dumps([experiment]))}"
        )
    finally:
        server.stop()
    assert f"Comparing {len(runs)} Runs" in compare
    for run in runs:  # grasp, cem, their defaults, the random floor: one column each
        assert f">{html.escape(run.info.run_name)}<" in compare
    assert "success_rate" in compare


def test_tuned_and_default_side_by_side_with_the_paired_test_and_the_re_score(swept):
    client = MlflowClient(swept.uri)
    run = client.get_run(swept.parent.info.run_id)
    children, _ = trials_and_parents(swept.uri)
    spec = load(TINY_SWEEP)
    table_lines = [line for line in swept.stdout.splitlines() if line.startswith("|")]
    for planner in spec.planners:
        key = planner.label
        # one of the variant's trials ran its default config (in the search space's names; the
        # searcher asks it first: tests/test_platform_search.py), the other one TPE's
        mine = [r for r in children if r.data.tags.get("variant") == key]
        point, _ = planner.default_point()
        ran = [{k: r.data.params[k] for k in point} for r in mine]
        assert len(mine) == 2 and ran.count({k: str(v) for k, v in point.items()}) == 1
        # the default config on the same test goals, and McNemar's test against the pick
        tuned = readback.read_table(client, run.info.run_id, f"test/{key}.json")
        default = readback.read_table(client, run.info.run_id, f"default/{key}.json")
        assert sorted(r["index"] for r in tuned) == sorted(r["index"] for r in default)
        expected = sig.mcnemar_exact(
            *[[r["success"] for r in sorted(t, key=lambda r: r["index"])] for t in (tuned, default)]
        )
        m = run.data.metrics
        assert m[f"{key}/tuned_vs_default_p_success"] == pytest.approx(expected)
        rate = sum(r["success"] for r in default) / len(default)
        assert m[f"{key}/default_test_success_rate"] == pytest.approx(rate)
        row = next(line for line in table_lines if line.startswith(f"| {key} (default) "))
        assert f"{100 * rate:.0f} [" in row
        # the top trials were re-scored on fresh tuning goals; the pick is the re-score's
        rescored = readback.read_table(client, run.info.run_id, f"rescore/{key}.json")
        assert len(rescored) == 2 and sum(r["picked"] for r in rescored) == 1
        assert all(r["fresh_n"] == 2 and r["search_n"] == 2 for r in rescored)  # as many again
        picked = next(r for r in rescored if r["picked"])
        best = [r for r in mine if r.data.tags.get("best") == "true"]
        assert len(best) == 1 and best[0].data.tags.get("rescore_picked") == "true"
        assert best[0].data.metrics["rescore_successes"] == picked["fresh_successes"]


class Tables(HTMLParser):
    """Cells of every ``<table id=...>`` of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id"):
            self.current = dict(attrs)["id"]
            self.tables[self.current] = []
        elif tag == "tr" and self.current:
            self.tables[self.current].append([])
        elif tag in ("td", "th") and self.current:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[self.current][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def expected_rows(run) -> dict[str, list[str]]:
    """What the results table must show, computed from the parent run's metrics."""
    m = run.data.metrics
    rows = {}
    for key in ("grasp", "cem"):
        # the tuned pick, then the default config on the same goals ("grasp (default)")
        for label, prefix in ((key, f"{key}/test_"), (f"{key} (default)", f"{key}/default_test_")):
            tts = m.get(f"{prefix}median_time_to_success")
            sts = m.get(f"{prefix}median_steps_to_success")
            rows[label] = [
                label,
                "6",
                f"{100 * m[f'{prefix}success_rate']:.0f} [{100 * m[f'{prefix}ci_low']:.0f}, "
                f"{100 * m[f'{prefix}ci_high']:.0f}]",
                "-" if tts is None else f"{tts:.2f}",
                "-" if sts is None or math.isnan(sts) else f"{sts:.0f}",
                f"{m[f'{prefix}model_steps']:.0f}",
                f"{m[f'{prefix}n']:.0f}",
            ]
    rows["random floor"] = [
        "random floor",
        "6",
        f"{100 * m['random_floor/H6/success_rate']:.0f} [{100 * m['random_floor/H6/ci_low']:.0f}, "
        f"{100 * m['random_floor/H6/ci_high']:.0f}]",
        "-",
        "0",
        "0",
        f"{m['random_floor/H6/n']:.0f}",
    ]
    return rows


def test_report_from_mlflow_renders_in_chromium_with_the_runs_numbers(swept, capsys):
    out = swept.folder / "out"
    name = swept.parent.data.params["sweep_name"]
    assert cli_report.main([name, "--out", str(out), "--tracking-uri", swept.uri]) == 0
    assert capsys.readouterr().out.split() == [str(out / "report.html"), str(out / "report.md")]
    client = MlflowClient(swept.uri)
    run_id = swept.parent.info.run_id
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert logged == {"report/report.html", "report/report.md", "report/images"}
    images = {a.path for a in client.list_artifacts(run_id, "report/images")}
    assert "report/images/pareto.png" in images  # report.md's links hold in MLflow too
    page = (out / "report.html").read_text()
    assert "<script" not in page and not re.search(r"src=\"https?:", page)
    links = re.findall(r'href="([^"]+)"', page)  # the one link: the run in MLflow's UI
    assert len(links) == 1 and links[0].startswith("http://127.0.0.1:5000/#/experiments/")
    assert 'src="data:image/png;base64,' in page  # pareto.png, inlined
    # the answer first: verdict, table, then the Pareto plot at full width, then the rest
    order = ['id="verdict"', 'id="results"', 'class="wide"', 'id="significance"', 'id="setup"']
    places = [page.index(mark) for mark in order]
    assert places == sorted(places)
    # report.md's relative links resolve inside --out
    links = re.findall(r"\]\(([^)]+)\)", (out / "report.md").read_text())
    local = [link for link in links if not link.startswith("http")]
    assert "images/pareto.png" in local and all((out / link).is_file() for link in local)
    want = expected_rows(client.get_run(run_id))
    markdown = (out / "report.md").read_text()
    for row in want.values():
        assert "| " + " | ".join(row) in re.sub(r" +\|", " |", markdown)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    parsed = Tables()
    parsed.feed(dom)
    header, *body = parsed.tables["results"]
    assert header[:7] == ["planner", "H", "SR % [95% CI]", "TTS (s)", "STS", "steps", "n"]
    assert {row[0]: row[:7] for row in body} == want
    significance = parsed.tables["significance"]
    assert significance[1][1] == "grasp vs cem" and significance[1][4] == "McNemar exact"
    assert "Verdict." in dom and swept.parent.data.tags["verdict"] in dom.replace("&#39;", "'")
    assert "complete trials)" in dom  # Optuna importances per variant


def test_gifs_stand_in_a_grid_one_row_per_planner_with_valid_links(tmp_path):
    from types import SimpleNamespace

    from grasplab.platform.report.readback import Sweep

    run = SimpleNamespace(data=SimpleNamespace(tags={}), info=SimpleNamespace(run_name="s1"))
    gif = b"GIF89a..."
    images = {
        "pareto.png": b"\x89PNG...",
        "gifs/grasp_success.gif": gif,
        "gifs/grasp_failure.gif": gif,
        "gifs/cem_failure.gif": gif,  # CEM solved nothing: no success GIF
    }
    sweep = Sweep(run, {}, [], {}, [], images)
    rep = reporting.Report([sweep], [], [], "v.", ["h"], [{"a": "1"}], [], {}, {"s1": "http://x"})
    page = reporting.render_html(rep)
    parsed = Tables()
    parsed.feed(page)
    assert [row[0] for row in parsed.tables["gifs"]] == ["planner", "grasp", "cem"]
    assert parsed.tables["gifs"][2][1] == "-"  # no success to show
    assert page.count('src="data:image/gif;base64,') == 3
    assert page.index('class="wide"') < page.index('id="gifs"')
    md = reporting.markdown(rep)
    assert "| grasp | ![gifs/grasp_success.gif](images/gifs/grasp_success.gif) |" in md
    assert "| cem | - | ![gifs/cem_failure.gif](images/gifs/cem_failure.gif) |" in md
    assert "[s1](http://x)" in md


def test_two_sweeps_line_up_side_by_side(swept, capsys):
    client = MlflowClient(swept.uri)
    parent = client.get_run(swept.parent.info.run_id)
    tracker = Tracker(swept.uri, "grasplab")
    twin = tracker.start_parent("twin", "twin", {**parent.data.params, "sweep_name": "twin"})
    tracker.log_metrics(twin, parent.data.metrics)
    for key in ("grasp", "cem"):
        rows = readback.read_table(client, parent.info.run_id, f"test/{key}.json")
        tracker.log_table(twin, {c: [r[c] for r in rows] for c in rows[0]}, f"test/{key}.json")
    tracker.end(twin)
    out = swept.folder / "twin"
    assert (
        cli_report.main(
            [parent.info.run_id, "twin", "--out", str(out), "--tracking-uri", swept.uri]
        )
        == 0
    )
    capsys.readouterr()
    text = (out / "report.md").read_text()
    first = parent.data.tags["grasplab.sweep_id"]
    for name in (f"{first}:grasp", f"{first}:cem", "twin:grasp", "twin:cem", "twin:random floor"):
        assert f"| {name} " in text
    # the same goals, the same results: paired, and no difference at all
    assert re.search(
        rf"\| {first}:grasp vs twin:grasp +\| .* \| 0 / 0 +\| McNemar exact \| 1.000", text
    )
    assert {a.path for a in client.list_artifacts(twin, "report")} == {
        "report/report.html",
        "report/report.md",
        "report/images",  # images/<sweep id>/...: several sweeps, one folder each
    }
    links = re.findall(r"\]\((images/[^)]+)\)", text)
    assert links and all(link.startswith(f"images/{first}/") for link in links)
    assert all((out / link).is_file() for link in links)


def test_mixing_protocol_versions_or_task_sets_is_refused(swept, capsys):
    client = MlflowClient(swept.uri)
    parent = client.get_run(swept.parent.info.run_id)
    tracker = Tracker(swept.uri, "grasplab")
    ids = {}
    for name, change in (("old", {"protocol.version": "0"}), ("seed", {"protocol.seed": "7"})):
        params = {**parent.data.params, **change, "sweep_name": f"fake-{name}"}
        ids[name] = tracker.start_parent(f"fake-{name}", f"fake-{name}", params)
        tracker.end(ids[name])
    run_id = parent.info.run_id
    assert cli_report.main([run_id, ids["old"], "--tracking-uri", swept.uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"grasplab report: error: cannot mix protocol versions: {parent.info.run_name} has "
        "version 1, fake-old has version 0"
    ]
    assert cli_report.main([run_id, ids["seed"], "--tracking-uri", swept.uri]) == 2
    err = capsys.readouterr().err
    assert "cannot mix task sets" in err and "differ in protocol.seed" in err
    assert cli_report.main(["no_such_sweep", "--tracking-uri", swept.uri]) == 2
    assert "no sweep named 'no_such_sweep'" in capsys.readouterr().err


def test_horizon_plot_draws_rates_of_0_and_100_percent():
    """A 0% cell at n = 3 once crashed a finished sweep's report (a Wilson bound of 3e-18)."""
    import matplotlib.pyplot as plt

    from grasplab.eval.metrics import summarize
    from grasplab.platform.report import StageOutcome
    from grasplab.platform.report.figures import horizon_plot

    def outcome(horizon: int, solved: bool) -> StageOutcome:
        test = summarize([solved] * 3, [1.0 if solved else math.nan] * 3, [0.0] * 3, [9] * 3, 1.0)
        return StageOutcome("gd", "gd", "gd", horizon, "t", {}, {}, {}, test)

    outcomes = [outcome(10, True), outcome(20, False)]
    plt.close(horizon_plot(outcomes, {10: {"success_rate": 0.0}, 20: {"success_rate": 0.0}}))
    edge = {**outcomes[1].test, "ci_low": 1e-17}  # a bound past the rate: drawn, not refused
    plt.close(horizon_plot([outcomes[0], dataclasses.replace(outcomes[1], test=edge)], {}))
