"""Runtime fingerprints and result bundles: ``grasplab export`` and ``grasplab verify``.

The session's tiny sweep (``tiny_sweep`` in ``tests/conftest.py``) is fingerprinted, exported,
verified clean, tampered with, broken in each way ``verify`` must refuse, and re-run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from grasplab import cli
from grasplab.cli import report as cli_report
from grasplab.platform import bundle, fingerprint
from grasplab.platform.report import readback, tables
from grasplab.platform.tracking import Tracker

KEYS = {
    "python",
    "torch",
    "cuda",
    "cudnn",
    "device",
    "device_name",
    "dtype",
    "ray",
    "mlflow",
    "optuna",
    "numpy",
    "platform",
    "cpu",
    "threads",
    "git_sha",
    "git_dirty",
}


# --- the fingerprint ---------------------------------------------------------------------------


def test_fingerprint_names_every_key_and_this_process_versions():
    import numpy
    import torch

    fp = fingerprint.fingerprint("cpu", threads=3)
    assert set(fp) == KEYS and all(isinstance(v, str) and v for v in fp.values())
    assert (fp["torch"], fp["numpy"]) == (torch.__version__, numpy.__version__)
    assert (fp["device"], fp["threads"], fp["dtype"]) == ("cpu", "3", "float32")
    assert (fp["git_sha"], fp["git_dirty"]) == fingerprint.git_state()  # "unknown" without git
    lines = fingerprint.header_lines(fp)
    assert (
        len(lines) == 2 and lines[0].startswith("runtime: cpu (") and "3 torch threads" in lines[0]
    )
    assert f"torch {torch.__version__}" in lines[1] and "mlflow" in lines[1]


def test_fingerprint_without_git_says_unknown(monkeypatch, tmp_path):
    fingerprint.git_state.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
    monkeypatch.delenv("GRASPLAB_GIT_SHA", raising=False)
    try:
        fp = fingerprint.fingerprint()
        assert (fp["git_sha"], fp["git_dirty"]) == ("unknown", "unknown")
        monkeypatch.setenv("GRASPLAB_GIT_SHA", "abc123-dirty")
        fingerprint.git_state.cache_clear()
        assert fingerprint.git_state() == ("abc123", "true")
    finally:
        fingerprint.git_state.cache_clear()


def test_differing_names_the_keys_that_differ():
    a = {"torch": "2.1", "numpy": "2.0", "git_dirty": "true"}
    b = {"torch": "2.2", "numpy": "2.0", "git_dirty": "false", "cuda": "12.4"}
    assert fingerprint.differing([a, b]) == ["cuda", "torch"]
    assert fingerprint.differing([a, dict(a)]) == []


def test_sweep_records_the_fingerprint_and_prints_it(tiny_sweep):
    client = MlflowClient(tiny_sweep.uri)
    run = client.get_run(tiny_sweep.parent.info.run_id)
    fp = fingerprint.of_run(run)
    assert set(fp) == KEYS and fp["threads"] == "1" and fp["device"] == "cpu"  # the workers'
    folder = client.download_artifacts(
        run.info.run_id, fingerprint.ARTIFACT, str(tiny_sweep.folder)
    )
    assert json.loads(Path(folder).read_text()) == fp
    for line in fingerprint.header_lines(fp):
        assert line in tiny_sweep.stdout
        assert tables.markdown_escape(line) in run.data.tags["mlflow.note.content"]


def twin_of(uri: str, parent_id: str, name: str, fp: dict[str, str] | None) -> str:
    """A second finished parent run with the same params, metrics, tables and ``fp``."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    tracker = Tracker(uri, "grasplab")
    twin = tracker.start_parent(name, name, {**parent.data.params, "sweep_name": name})
    tracker.log_metrics(twin, parent.data.metrics)
    for key in ("grasp", "cem"):
        rows = readback.read_table(client, parent_id, f"test/{key}.json")
        tracker.log_table(twin, {c: [r[c] for r in rows] for c in rows[0]}, f"test/{key}.json")
    if fp is not None:
        tracker.set_tags(twin, fingerprint.tags(fp))
    tracker.end(twin)
    return twin


def test_report_shows_the_fingerprint_and_warns_when_lined_up_ones_differ(tiny_sweep, capsys):
    parent = MlflowClient(tiny_sweep.uri).get_run(tiny_sweep.parent.info.run_id)
    fp = fingerprint.of_run(parent)
    other = {**fp, "torch": "0.0-other", "device_name": "another machine"}
    twin = twin_of(tiny_sweep.uri, parent.info.run_id, "fp-twin", other)
    out = tiny_sweep.folder / "fp-report"
    code = cli_report.main(
        [parent.info.run_id, twin, "--out", str(out), "--tracking-uri", tiny_sweep.uri]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "differing: device_name, torch" in err
    text = (out / "report.md").read_text()
    assert "torch 0.0-other" in text and "differing: device_name, torch" in text
    same = twin_of(tiny_sweep.uri, parent.info.run_id, "fp-same", fp)
    assert (
        cli_report.main(
            [parent.info.run_id, same, "--out", str(out), "--tracking-uri", tiny_sweep.uri]
        )
        == 0
    )
    assert "warning" not in capsys.readouterr().err
    assert fingerprint.header_lines(fp)[0] in (out / "report.md").read_text()


# --- export ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tiny_sweep, tmp_path_factory):
    """The tiny sweep exported by its parent run id (``grasplab export``)."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    argv = [
        "export",
        tiny_sweep.parent.info.run_id,
        "--out",
        str(out),
        "--tracking-uri",
        tiny_sweep.uri,
    ]
    assert cli.main(argv) == 0
    return out


def copy_of(bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle_dir, target)
    return target


def test_export_writes_a_manifest_rows_and_hashes(exported, tiny_sweep):
    manifest = json.loads((exported / "manifest.json").read_text())
    parent = MlflowClient(tiny_sweep.uri).get_run(tiny_sweep.parent.info.run_id)
    assert manifest["format"] == bundle.FORMAT and manifest["planner_seed"] == bundle.PLANNER_SEED
    assert manifest["protocol"]["fingerprint"] == parent.data.params["protocol.fingerprint"]
    assert manifest["sweep"]["command"].startswith("grasplab sweep protocol=tiny")
    assert manifest["fingerprint"] == fingerprint.of_run(parent)
    assert manifest["world_model"]["spec"] == "oracle"
    assert len(manifest["task_set"]["test_tasks_sha256"]) == 64
    assert [v["key"] for v in manifest["variants"]] == ["grasp", "cem"]
    for v in manifest["variants"]:
        assert v["figures"]["success_rate"] == parent.data.metrics[f"{v['key']}/test_success_rate"]
        rows = bundle.read_rows(exported / v["rows"])
        assert sorted(r["index"] for r in rows) == [0, 1, 2, 3]
        assert set(v["tuned"]) <= set(v["config"])
    [floor] = manifest["random_floor"]
    assert floor["figures"]["n"] == 4 and len(bundle.read_rows(exported / floor["rows"])) == 4
    [pair] = manifest["comparisons"]
    assert pair["p_success"] == parent.data.metrics["p_success/grasp_vs_cem"]
    sums = (exported / "SHA256SUMS").read_text().splitlines()
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert sorted(line.split("  ")[1] for line in sums) == [f for f in files if f != "SHA256SUMS"]


def test_verify_of_the_fresh_bundle_is_clean(exported, capsys):
    assert cli.main(["verify", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "hashes: 4 files match SHA256SUMS" in out
    assert "figures: all 28 recomputed from the rows match the manifest" in out


def test_a_tampered_row_is_refused(exported, tmp_path, capsys):
    copy = copy_of(exported, tmp_path)
    path = copy / "episodes" / "cem.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    row["success"] = not row["success"]
    path.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    assert cli.main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match SHA256SUMS: episodes/cem.jsonl" in err[0]
    # re-hashed after the edit: the figures recomputed from the rows then disagree
    bundle.write_sums(copy)
    assert cli.main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "cem success_rate: manifest" in out and "cem ci_high: manifest" in out


def test_a_p_value_that_the_rows_do_not_give_is_named(exported, tmp_path, capsys):
    copy = copy_of(exported, tmp_path)
    # 0.123456 is no exact McNemar p-value of 4 goals (those are 1, 0.5, 0.25, 0.125)
    rewrite_manifest(copy, lambda m: m["comparisons"][0].update(p_success=0.123456))
    assert cli.main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"figures: 1 of \d+ differ from the manifest", out)
    assert "grasp vs cem p_success: manifest 0.123456, from the rows" in out


def rewrite_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    bundle.write_sums(folder)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no bundle folder at"),
        ("truncated", "manifest.json is unreadable or truncated"),
        ("newer", "bundle format 2 is newer than this grasplab reads (1)"),
        ("model", "cannot load world model '/no/such/checkpoint'"),
    ],
)
def test_verify_refuses_bad_input_in_one_line(exported, tmp_path, capsys, case, message):
    copy = copy_of(exported, tmp_path)
    argv = ["verify", str(copy)]
    if case == "missing":
        argv = ["verify", str(tmp_path / "nowhere")]
    elif case == "truncated":
        text = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(text[: len(text) // 2])
        bundle.write_sums(copy)
    elif case == "newer":
        rewrite_manifest(copy, lambda m: m.update(format=bundle.FORMAT + 1))
    else:
        rewrite_manifest(copy, lambda m: m["world_model"].update(spec="/no/such/checkpoint"))
        argv.append("--rerun=1")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grasplab verify: error: ") and message in err[0]


def test_export_refuses_an_unknown_or_running_sweep_naming_the_nearest(
    tiny_sweep, tmp_path, capsys
):
    uri = ["--tracking-uri", tiny_sweep.uri]
    assert cli.main(["export", "grasp_vs_baseline", "--out", str(tmp_path / "a"), *uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sweep named 'grasp_vs_baseline'" in err[0]
    assert "nearest: 'grasp_vs_baselines'" in err[0]
    tracker = Tracker(tiny_sweep.uri, "grasplab")
    running = tracker.start_parent("still-running", "still-running", {"sweep_name": "busy"})
    try:
        assert cli.main(["export", running, "--out", str(tmp_path / "b"), *uri]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "sweep still-running is RUNNING, not FINISHED" in err[0]
        assert cli.main(["export", "busy", "--out", str(tmp_path / "c"), *uri]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has no FINISHED parent run (latest: RUNNING)" in err[0]
    finally:
        tracker.end(running, "KILLED")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_checkpoint_travels_in_the_bundle_and_must_hash_to_the_manifest(tmp_path):
    from grasplab.eval import EvalProtocol

    shipped = Path(fingerprint.__file__).parents[1] / "world_models/checkpoints/pointmaze-mlp-b1"
    entry = bundle.world_model_entry(str(shipped), tmp_path / bundle.MODEL_DIR)
    assert entry["bundled"] == bundle.MODEL_DIR and set(entry["files"]) == {
        "config.json",
        "weights.safetensors",
    }
    assert entry["files"]["config.json"] == bundle.sha256_file(shipped / "config.json")
    protocol = EvalProtocol(env_overrides={"layout": "medium"}, tune_episodes=2, test_episodes=2)
    manifest = {"world_model": entry}
    model = bundle.load_world_model(tmp_path, manifest, protocol, "cpu")
    assert model.action_dim == 2
    (tmp_path / bundle.MODEL_DIR / "config.json").write_text("{}")
    with pytest.raises(bundle.BundleError, match="not the checkpoint the sweep used"):
        bundle.load_world_model(tmp_path, manifest, protocol, "cpu")
    unbundled = {"world_model": {**entry, "bundled": ""}}  # loaded from the spec, hash checked
    assert bundle.load_world_model(tmp_path, unbundled, protocol, "cpu").action_dim == 2


def test_rerun_reproduces_every_sampled_episode(exported, capsys):
    """Needs per-episode random streams (issue 21 point 1): an episode planned alone must match
    the one planned in its chunk of 2."""
    code = cli.main(["verify", str(exported), "--rerun", "2"])
    out = capsys.readouterr().out
    assert "rerun grasp: 2/2 reproduce bit-identically, 2/2 agree on success" in out, out
    assert "rerun cem: 2/2 reproduce bit-identically, 2/2 agree on success" in out, out
    assert code == 0
