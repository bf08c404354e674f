"""``grasplab ablate``: a tiny ablation study end to end (embedded Ray, SQLite MLflow).

One cell (the oracle point maze) at two seeds runs the whole ablation experiment (six GRASP
variants and LatCo) through the real CLI entry point; the study run, its nested sweeps, the
pooled table (recomputed here from the sweeps' own test tables) and ``grasplab report <study>``
are then checked. Bad study input exits 2 before anything is created.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from grasplab import cli
from grasplab.cli import ablate as cli_ablate
from grasplab.cli import report as cli_report
from grasplab.eval.metrics import wilson_interval
from grasplab.platform import fingerprint, study
from grasplab.platform.config import ConfigError
from grasplab.platform.report import study as report_study
from grasplab.platform.report.rows import ResultRow
from grasplab.platform.tracking import PARENT, ROLE, default_tracking

VARIANTS = [
    "grasp",
    "grasp_no_stopgrad",
    "grasp_no_sync",
    "grasp_no_noise",
    "grasp_no_goal",
    "grasp_cem_sync",
    "latco",
]
TINY = [
    "protocol=tiny",
    "protocol.tune_episodes=2",
    "sweep.num_samples=1",
    "sweep.chunk_size=2",
    "report.plots=false",
    "report.gif=false",
    "study.only=[pointmaze]",
    "study.seeds=[0,1]",
    *(f"planners.{v}.config.n_steps=40" for v in VARIANTS),
]


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    cwd, stdout = os.getcwd(), io.StringIO()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout):
            assert cli_ablate.main([*TINY, "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    uri = default_tracking(folder)[0]
    client = MlflowClient(uri)
    runs = client.search_runs(["1"], f"tags.`{ROLE}` = 'study'")
    assert len(runs) == 1
    return SimpleNamespace(
        folder=folder, uri=uri, client=client, run=runs[0], stdout=stdout.getvalue()
    )


def test_one_study_run_with_a_nested_finished_sweep_per_seed(studied):
    run = studied.run
    assert run.info.status == "FINISHED"
    fp = fingerprint.of_run(run)  # the study run's runtime fingerprint, printed first
    assert fp["device"] == "cpu" and fingerprint.header_lines(fp)[0] in studied.stdout
    sweeps = studied.client.search_runs(["1"], f"tags.`{PARENT}` = '{run.info.run_id}'")
    assert sorted(
        (s.data.tags["grasplab.cell"], s.data.tags["grasplab.seed"], s.info.status) for s in sweeps
    ) == [("pointmaze", "0", "FINISHED"), ("pointmaze", "1", "FINISHED")]
    for s in sweeps:
        assert s.data.tags[ROLE] == "sweep"
        assert json.loads(s.data.params["planners"]) == VARIANTS  # same variants, same budget
        assert s.data.params["num_samples"] == "1"
        assert s.data.params["protocol.seed"] == s.data.tags["grasplab.seed"]
        assert {f"{v}/test_n" for v in VARIANTS} <= set(s.data.metrics)


def test_pooled_table_equals_the_sweeps_test_records(studied):
    client, run = studied.client, studied.run
    sweeps = client.search_runs(["1"], f"tags.`{PARENT}` = '{run.info.run_id}'")
    metrics = run.data.metrics
    for variant in VARIANTS:
        wins = n = 0
        for s in sweeps:
            path = client.download_artifacts(
                s.info.run_id, f"test/{variant}.json", str(studied.folder)
            )
            data = json.loads(open(path).read())
            success = data["columns"].index("success")
            wins += sum(bool(row[success]) for row in data["data"])
            n += len(data["data"])
        assert n == 8  # 4 test goals x 2 seeds
        key = f"pointmaze/H6/{variant}/test_"
        assert metrics[key + "n"] == n
        assert metrics[key + "success_rate"] == pytest.approx(wins / n)
        assert (metrics[key + "ci_low"], metrics[key + "ci_high"]) == pytest.approx(
            wilson_interval(wins, n)
        )
        cell = f"{100 * wins / n:.0f}% ["
        assert any(
            line.startswith(f"| {variant} ") and cell in line
            for line in studied.stdout.splitlines()
        )
    assert "pointmaze/H6/latco/p_success_adj" in metrics  # each variant vs full GRASP
    assert "Verdict:" in studied.stdout and "McNemar" in run.data.tags["verdict"]


def test_report_rebuilds_the_study_from_mlflow(studied, capsys):
    out = studied.folder / "rebuilt"
    ref = studied.run.data.params["study_name"]
    assert cli_report.main([ref, "--out", str(out), "--tracking-uri", studied.uri]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == [
        "ablation.html",
        "ablation.md",
        "ablation.png",
        "ablation.json",
    ]
    page = (out / "ablation.html").read_text()
    assert 'id="ablation"' in page and 'src="data:image/png;base64,' in page
    assert "<script" not in page
    assert (out / "ablation.png").read_bytes().startswith(b"\x89PNG")
    rows = json.loads((out / "ablation.json").read_text())
    assert {r["variant"] for r in rows} == set(VARIANTS) and all(r["seeds"] == 2 for r in rows)
    logged = {a.path for a in studied.client.list_artifacts(studied.run.info.run_id, "report")}
    assert "report/ablation.html" in logged and "report/ablation.png" in logged


def test_a_study_exports_to_a_bundle_that_verifies(studied, capsys):
    out = studied.folder / "study-bundle"
    argv = ["export", studied.run.info.run_id, "--out", str(out), "--tracking-uri", studied.uri]
    assert cli.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["dir"] for s in manifest["sweeps"]] == ["pointmaze-s0", "pointmaze-s1"]
    assert manifest["fingerprint"] == fingerprint.of_run(studied.run)
    assert cli.main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "figures: all" in text and "match the manifest" in text
    (out / "pointmaze-s1" / "episodes" / f"{VARIANTS[0]}.jsonl").write_text("")
    assert cli.main(["verify", str(out)]) == 2  # the top-level sums cover the sub-bundles
    assert "pointmaze-s1/episodes" in capsys.readouterr().err


def test_resume_of_a_finished_study_is_refused(studied, capsys):
    cwd = os.getcwd()
    os.chdir(studied.folder)
    try:
        assert cli_ablate.main([*TINY, "--resume"]) == 2
    finally:
        os.chdir(cwd)
    assert "no unfinished study named 'ablation'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.seeds=[0,0]", "study.seeds must be distinct"),
        ("~study.cells", "study.cells must name at least one cell"),
        ("study.only=[pointmase]", "no cell 'pointmase'; did you mean 'pointmaze'?"),
        ("+study.cells.bad={env:nowhere}", "study cell 'bad' (seed 0): In 'config': Could not"),
        ("+study.cells.bad={protocol.horizn:5}", "did you mean 'protocol.horizon'?"),
    ],
)
def test_bad_study_input_exits_2_before_anything_exists(override, message, tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert cli_ablate.main(["protocol=tiny", override]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert err.startswith("grasplab ablate: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_shipped_studies_compose_and_validate(tmp_path):
    learned = study.load_study(["study=learned", "protocol.horizon=50"], tmp_path)
    assert [(c.label, c.seed) for c in learned.cells] == [("wall", 0), ("pointmaze", 0)]
    assert all(c.spec.world_model.endswith(f"{c.label}-pixel-b1") for c in learned.cells)
    assert all(c.spec.protocol.horizon == 50 for c in learned.cells)
    assert {p.label for p in learned.cells[0].spec.planners} == set(VARIANTS)
    with pytest.raises(ConfigError, match="no `study` section"):
        study.load_study(["experiment=grasp_vs_baselines"], tmp_path)


def test_bars_draw_rates_of_zero_and_one():
    from grasplab.eval.metrics import summarize

    def bar(label, wins, n=10):
        ok = [i < wins for i in range(n)]
        metrics = summarize(ok, [1.0] * n, [0.0] * n, [1.0] * n, 0.0)
        return ResultRow(f"wall/H50/{label}", label, 50, metrics, cell="wall")

    png = report_study.bars_png(
        [bar("grasp", 0), bar("latco", 10)], {("wall", 50): {"success_rate": 0.0}}
    )
    assert png.startswith(b"\x89PNG")


def test_the_ablation_job_runs_the_study(monkeypatch):
    from grasplab.cli import jobs, sweep

    seen = {}
    monkeypatch.setattr(cli_ablate, "main", lambda argv: seen.setdefault("study", argv) and 0)
    monkeypatch.setattr(sweep, "main", lambda argv: seen.setdefault("sweep", argv) and 0)
    jobs.run_job("ablation", ["study=learned"])
    jobs.run_job("long_horizon", [])
    assert seen["study"] == ["experiment=ablation", "cluster=remote", "study=learned"]
    assert seen["sweep"] == ["experiment=long_horizon", "cluster=remote"]
