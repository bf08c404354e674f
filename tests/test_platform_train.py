"""``grasplab train``: collect, train, track and register in MLflow; sweep a ``models:/`` URI."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from grasplab.cli import train as cli_train
from grasplab.cli.jobs import job_overrides
from grasplab.platform import fingerprint, sweep
from grasplab.platform.tracking import default_tracking
from grasplab.platform.workers import resolve_spec
from grasplab.world_models import checkpoint
from grasplab.world_models.training import STATE_DIR

from .support import sweep_runs

MODEL = "grasplab-wall-mlp"
TINY = [
    "env=wall",
    "world_model=mlp",
    "data.episodes=8",
    "data.steps=12",
    "data.action_block=2",
    "data.shard_episodes=4",
    "train.steps=20",
    "train.batch=8",
    "train.window=2",
    "train.eval_every=10",
    "train.val_windows=8",
    "train.val_fraction=0.25",
    "train.progress=false",
    "model.width=16",
    "model.depth=1",
]


def run_main(overrides: list[str]) -> tuple[int, str]:
    """``train.main`` with its stdout captured."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_train.main(overrides)
    return code, out.getvalue()


def train_runs(root: Path) -> list:
    return sweep_runs(default_tracking(root)[0], "grasplab-train")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One tiny collection + training in a fresh folder: ``(root, printed output)``."""
    root = tmp_path_factory.mktemp("train").resolve()
    code, printed = run_main([*TINY, f"root={root}"])
    assert code == 0
    return root, printed


def test_training_logs_one_run_with_params_history_artifacts_and_a_version(trained):
    root, printed = trained
    assert (root / "data" / "wall-b2" / "manifest.json").is_file()  # collected first
    runs = train_runs(root)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    params = run.data.params
    assert params["world_model.kind"] == "mlp" and params["env.name"] == "wall"
    assert [params[k] for k in ("train.steps", "train.batch", "model.width")] == ["20", "8", "16"]
    assert (params["data.episodes"], params["dataset.episodes"]) == ("8", "8")
    assert params["model_config.width"] == "16" and params["model_config.action_block"] == "2"
    assert params["git_sha"] not in ("", "unknown")
    fp = fingerprint.of_run(run)  # the runtime fingerprint, as tags and in the printed lines
    assert fp["device"] == "cpu" and fp["torch"] and fp["git_sha"] == params["git_sha"][:40]
    assert fingerprint.header_lines(fp)[0] in printed
    client = MlflowClient(default_tracking(root)[0])
    for name in ("val_loss", "train_loss", "lr"):
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [10, 20], name
    assert run.data.metrics["steps_done"] == 20
    files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert files == {"config.json", "weights.safetensors"}
    [version] = client.search_model_versions(f"name = '{MODEL}'")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert run.data.tags["grasplab.model_uri"] == f"models:/{MODEL}/1"
    assert f"model: models:/{MODEL}/1" in printed
    assert f"checkpoint: {root / 'runs' / 'wall-mlp'} " in printed


def test_registered_model_downloads_to_the_same_checkpoint(trained, monkeypatch):
    root, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_tracking(root)[0])  # as workers get it
    folder = Path(resolve_spec(f"models:/{MODEL}/1"))
    assert folder != root / "runs" / "wall-mlp" and (folder / "weights.safetensors").is_file()
    remote, local = checkpoint.load(folder), checkpoint.load(root / "runs" / "wall-mlp")
    g = torch.Generator().manual_seed(0)
    states = torch.randn(7, local.state_dim, generator=g)
    actions = torch.rand(7, local.action_dim, generator=g) * 2 - 1
    expected = local.step(local.encode(states), actions)
    assert torch.equal(remote.step(remote.encode(states), actions), expected)
    assert not torch.equal(expected, local.encode(states))  # the model does something


def test_sweep_plans_with_the_registered_model(trained):
    root, _ = trained
    uri = f"models:/{MODEL}/1"
    overrides = [
        "env=wall",
        "protocol=tiny",
        "protocol.action_block=2",
        "world_model=checkpoint",
        f"world_model.spec={uri}",
        "~planners.gd",
        "~planners.grasp",
        "planners.cem.config.n_iterations=2",
        "sweep.num_samples=1",
        "sweep.chunk_size=4",
        "report.gif=false",
        "report.plots=false",
    ]
    spec, state = sweep.prepare(overrides, root)
    result = sweep.run_sweep(spec, state, progress=False, num_workers=1)
    trials = [r for r in sweep_runs(result.tracking_uri) if r.data.tags["grasplab.role"] == "trial"]
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"
    assert trials[0].data.params["world_model"] == uri
    assert [o.test["n"] for o in result.outcomes] == [4]


def test_rerun_resumes_in_the_same_run_and_more_steps_continue(trained, tmp_path):
    root = trained[0]  # its store and dataset; another out dir, experiment and model name
    args = [
        *TINY,
        f"root={root}",
        f"train.out={tmp_path / 'out'}",
        "mlflow.experiment=rerun",
        "mlflow.model_name=rerun-model",
    ]
    assert run_main(args)[0] == 0
    assert run_main(args)[0] == 0  # the same command again: same run, same version
    runs = sweep_runs(default_tracking(root)[0], "rerun")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    code, printed = run_main([*args, "train.steps=30"])  # continues from step 20
    assert code == 0 and "models:/rerun-model/2" in printed and "30 steps" in printed
    runs = sweep_runs(default_tracking(root)[0], "rerun")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    newest = max(runs, key=lambda r: r.info.start_time)
    history = MlflowClient(default_tracking(root)[0]).get_metric_history(
        newest.info.run_id, "val_loss"
    )
    assert [m.step for m in history] == [30]  # only what this invocation trained


def test_patch_model_trains_registers_and_resumes(trained, tmp_path):
    root = trained[0]  # its store and dataset
    tiny = [a for a in TINY if not a.startswith(("world_model=", "model.", "train.steps"))]
    args = [
        *tiny,
        "world_model=patch",
        "model.hidden=8",
        "train.encoder_steps=10",
        "train.encoder_batch=4",
        f"root={root}",
        f"train.out={tmp_path / 'out'}",
        "mlflow.experiment=patch",
    ]
    code, printed = run_main([*args, "train.steps=10"])
    assert code == 0 and "models:/grasplab-wall-patch/1" in printed and "20 steps" in printed
    code, printed = run_main([*args, "train.steps=20"])  # continues in stage 2 from step 20
    # a new version only if validation improved (else the same weights: version 1 reused)
    assert code == 0 and "models:/grasplab-wall-patch/" in printed and "30 steps" in printed
    model = checkpoint.load(tmp_path / "out")
    assert model.kind == "patch" and model.state_dim == 1024
    assert checkpoint.info(tmp_path / "out")["history"][-1]["stage"] == 2


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_failed_or_interrupted_training_ends_its_run(trained, monkeypatch, error, status):
    from grasplab.world_models import training

    def broken(**kwargs):
        kwargs["log"]({"loss": 1.0, "val_loss": 1.0}, 1)
        raise error("boom")

    monkeypatch.setattr(training, "train", broken)
    experiment = f"broken-{status}"
    args = [*TINY, f"root={trained[0]}", f"mlflow.experiment={experiment}"]
    if error is KeyboardInterrupt:
        assert run_main(args)[0] == 130
    else:
        with pytest.raises(RuntimeError, match="boom"):
            run_main(args)
    [run] = sweep_runs(default_tracking(trained[0])[0], experiment)
    assert run.info.status == status and run.data.metrics["val_loss"] == 1.0


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("world_model=nope", "world_model/nope"),
        ("world_model=oracle", "choose one of ['mlp', 'pixel', 'patch']"),
        ("env=nope", "env/nope"),
        ("train.steps=0", "TrainConfig.steps"),
        ("model.width=0", "MLPConfig.width"),
        ("data.steps=13", "multiple of data.action_block"),
        ("threads=0", "threads must be an int >= 1"),
        ("train.episodes=[5,2]", "TrainConfig.episodes"),
        ("model.angle_dims=[7]", "MLPConfig.angle_dims"),
    ],
)
def test_bad_override_is_one_line_and_exit_code_2(tmp_path, capsys, override, needle):
    assert cli_train.main([f"root={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("grasplab train: error")
    assert not (tmp_path / "mlflow.db").exists()  # validated before any store or run existed


def test_resuming_another_trainings_state_is_refused(trained, capsys):
    root, _ = trained
    assert (root / "runs" / "wall-mlp" / STATE_DIR / "state.json").is_file()
    assert cli_train.main([*TINY, f"root={root}", "model.width=32"]) == 2
    assert "differs in ['model']" in capsys.readouterr().err
    assert len(train_runs(root)) == 1  # no run was opened


def test_job_defaults_to_the_cluster_and_a_lasting_root():
    assert job_overrides("train", ["env=wall"], home=Path("/h")) == [
        "cluster=remote",
        "root=/h/grasplab",
        "env=wall",
    ]
    assert job_overrides("train", ["cluster=local", "root=/r"]) == ["cluster=local", "root=/r"]
