"""Every config composes and validates; every experiment recipe runs end to end at tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml

from grasplab.cli.jobs import job_overrides
from grasplab.planners import PLANNERS
from grasplab.platform import sweep
from grasplab.platform.config import ConfigError, Distribution, compose, config_dir, load, parse

GROUPS = (
    "planner",
    "env",
    "world_model",
    "protocol",
    "search_space",
    "experiment",
    "cluster",
    "tasks",
)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def planner_name(option: str) -> str:
    """The registry name a planner preset builds (``grasp_reference`` -> ``grasp``)."""
    return yaml.safe_load((config_dir() / "planner" / f"{option}.yaml").read_text())["name"]


def builtin_planners() -> list[str]:
    """Planner presets of built-in planners; ``planner/target.yaml`` names a user's class by
    import path (tests/test_byo.py runs it)."""
    return [o for o in options("planner") if o != "target"]


def test_every_group_has_options_and_planner_groups_cover_the_registry():
    for group in GROUPS:
        assert options(group), group
    assert set(PLANNERS) <= set(builtin_planners())  # one preset per planner, plus variants
    assert {planner_name(o) for o in builtin_planners()} == set(PLANNERS)
    assert set(options("search_space")) == set(PLANNERS)
    assert "target" in options("planner") and "target" in options("world_model")
    assert {"grasp_vs_baselines", "long_horizon", "ablation", "pusht"} <= set(options("experiment"))


@pytest.mark.parametrize("option", builtin_planners())
def test_every_planner_with_its_search_space_validates(option):
    name = planner_name(option)
    spec = load(
        [f"+planner@planners.extra={option}", f"+search_space@planners.extra.search_space={name}"]
    )
    extra = next(p for p in spec.planners if p.label == "extra")
    assert extra.name == name and extra.search_space
    config_fields = set(PLANNERS[name][1].__dataclass_fields__)
    assert set(extra.search_space) <= config_fields  # search spaces use the config's names
    assert set(extra.tune_space()) == set(extra.search_space)


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("env", "protocol", "cluster", "experiment") for o in options(g)]
    + ["world_model=oracle", "tasks=env"],
)
def test_every_group_option_composes_and_validates(override):
    raw = compose([override])
    if raw["env"]["name"].startswith("sim:") and raw["world_model"].get("spec") == "oracle":
        with pytest.raises(ConfigError, match="'oracle' needs a torch env"):
            load([override])  # a real simulator has no oracle dynamics
        return
    spec = load([override])
    assert spec.planners and spec.protocol.horizon >= 1
    assert compose([override]) == spec.raw  # plain, resolved, reproducible


def test_checkpoint_world_model_needs_a_spec():
    with pytest.raises(ConfigError, match="world_model.spec"):
        load(["world_model=checkpoint"])


def test_distributions_convert_to_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    assert isinstance(
        Distribution.from_dict("x", {"type": "loguniform", "low": 1e-3, "high": 1.0}).to_tune(),
        Float,
    )
    steps = Distribution.from_dict("n", {"type": "int", "low": 1, "high": 3}).to_tune()
    assert isinstance(steps, Integer) and (steps.lower, steps.upper) == (1, 4)  # inclusive high
    choice = Distribution.from_dict("o", {"type": "choice", "values": ["adam", "sgd"]}).to_tune()
    assert isinstance(choice, Categorical) and choice.categories == ["adam", "sgd"]
    with pytest.raises(ConfigError, match="loguniform needs low > 0"):
        Distribution.from_dict("x", {"type": "loguniform", "low": 0.0, "high": 1.0})
    with pytest.raises(ConfigError, match="unknown type"):
        Distribution.from_dict("x", {"type": "normal", "low": 0.0, "high": 1.0})


def test_ablation_variants_pin_their_field_and_do_not_search_it():
    spec = load(["experiment=ablation"])
    by_label = {p.label: p for p in spec.planners}
    assert by_label["grasp_no_sync"].config["sync_interval"] == 0
    assert "sync_interval" not in by_label["grasp_no_sync"].search_space
    assert by_label["grasp_no_noise"].config["noise_scale"] == 0.0
    assert by_label["grasp_no_stopgrad"].config["detach_states"] is False
    assert by_label["grasp_cem_sync"].config["sync_mode"] == "cem"
    assert by_label["grasp_no_goal"].config["goal_weight"] == 0.0
    assert "goal_weight" not in by_label["grasp_no_goal"].search_space
    assert by_label["latco"].name == "latco"
    assert "noise_scale" in by_label["grasp"].search_space


def test_parse_rejects_what_the_code_would_reject():
    raw = compose([])
    raw["planners"]["grasp"]["config"]["lr_states"] = -1.0
    with pytest.raises(ConfigError, match="lr_states"):
        parse(raw)


def test_remote_cluster_logs_to_loopback_when_ray_is_local_only(monkeypatch):
    monkeypatch.delenv("GRASPLAB_HEAD_IP", raising=False)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the one-machine recipe
    assert compose(["cluster=remote"])["mlflow"]["tracking_uri"] == "http://127.0.0.1:5000"
    monkeypatch.setenv("GRASPLAB_HEAD_IP", "10.0.0.7")  # ray_cluster.yaml's head
    assert compose(["cluster=remote"])["mlflow"]["tracking_uri"] == "http://10.0.0.7:5000"


def test_sweep_settings_come_from_the_config_file_only():
    raw = compose([])
    assert load([]).sweep.num_samples == raw["sweep"]["num_samples"]  # the composed config's
    del raw["sweep"]["num_samples"]
    with pytest.raises(ConfigError, match=r"sweep: missing key\(s\) \['num_samples'\]"):
        parse(raw)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="grasplab", log_to_driver=False)
    yield
    ray.shutdown()


TINY = [
    "protocol=tiny",
    "sweep.num_samples=1",
    "sweep.chunk_size=4",
    "report.plots=false",
    "report.gif=false",
]
# GRASP's 200 iterations are the tiny runs' main cost; 50 still run a sync (sync_interval 50) and
# a probe, which is what a smoke run needs.
GRASP_50 = "planners.{}.config.n_steps=50"
EXTRA = {
    "long_horizon": ["sweep.horizons=[4,6]", GRASP_50.format("grasp")],
    "grasp_vs_baselines": [GRASP_50.format("grasp")],
    # Push-T in the real simulator on the shipped held-out excerpt and state MLP
    # (its recipe sets protocol fields, which win over the `protocol=tiny` group: set them here)
    "pusht": [
        "protocol.horizon=6",
        "protocol.tune_episodes=4",
        "protocol.test_episodes=4",
        GRASP_50.format("grasp"),
        GRASP_50.format("grasp_reference"),
        "planners.latco.config.n_steps=50",
    ],
}
STUDIES = {"ablation"}  # run at tiny size as a study (grasplab ablate) in tests/test_study.py


@pytest.mark.parametrize("experiment", sorted(set(options("experiment")) - STUDIES))
def test_every_experiment_runs_at_tiny_size(experiment, tmp_path: Path, local_ray):
    overrides = [f"experiment={experiment}", *TINY, *EXTRA.get(experiment, [])]
    spec, state = sweep.prepare(overrides, tmp_path)
    result = sweep.run_sweep(spec, state, progress=False)
    assert len(result.outcomes) == len(spec.planners) * len(spec.horizons)
    assert {o.horizon for o in result.outcomes} == set(spec.horizons)
    assert all(o.test["n"] == spec.protocol.test_episodes for o in result.outcomes)
    assert spec.protocol.test_episodes <= 8 and spec.protocol.horizon <= 8  # tiny, as named
    assert state.status == "finished"


def test_ray_cluster_yaml_passes_rays_own_schema_validation():
    import copy

    import jsonschema
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((config_dir().parent / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))
    types = raw["available_node_types"]
    assert raw["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    assert any("pip install" in c and "grasplab" in c for c in raw["setup_commands"])
    assert any("mlflow server" in c for c in raw["head_start_ray_commands"])
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu_worker"]["bogus_field"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_ray_cluster_yaml_sets_up_the_servers_store_before_the_server_starts(tmp_path):
    import sqlite3
    import subprocess
    import sys

    raw = yaml.safe_load((config_dir().parent / "ray_cluster.yaml").read_text())
    commands = raw["head_start_ray_commands"]
    (prepare,) = [i for i, c in enumerate(commands) if "use_wal" in c]
    (server,) = [i for i, c in enumerate(commands) if "mlflow server" in c]
    assert prepare < server
    home = "/home/ubuntu/grasplab_mlflow"
    assert f"sqlite:///{home}/mlflow.db" in commands[prepare]
    assert f"sqlite:///{home}/mlflow.db" in commands[server]  # the same store
    line = commands[prepare].split("&&", 1)[1].replace(home, str(tmp_path / "mlflow"))
    line = line.replace("python -c", f"{sys.executable} -c", 1)
    subprocess.run(line, shell=True, check=True, timeout=120)
    with sqlite3.connect(tmp_path / "mlflow" / "mlflow.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA page_size").fetchone()[0] == 1024


def test_jobs_start_from_their_experiment_and_let_overrides_win():
    from grasplab.cli.jobs import JOBS, job_overrides

    repo = config_dir().parent
    assert {p.stem for p in (repo / "jobs").glob("*.py")} == set(JOBS)
    assert job_overrides("ablation", ["seed=3"]) == [
        "experiment=ablation",
        "cluster=remote",
        "seed=3",
    ]
    assert job_overrides("sweep", ["cluster=local"]) == ["cluster=local"]
    for job in set(JOBS) - {"train"}:  # the train job's config: the test below
        load(job_overrides(job, []))  # every sweep job's config validates


def train_options() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "train" / "world_model").glob("*.yaml"))


@pytest.mark.parametrize("env", options("env"))
@pytest.mark.parametrize("kind", train_options())
def test_every_train_config_composes_and_validates(kind, env, tmp_path):
    from grasplab.platform import train
    from grasplab.world_models.training import PatchTrainConfig, TrainConfig

    assert set(train_options()) == set(train.KINDS)
    spec = train.load([f"world_model={kind}", f"env={env}"], tmp_path)
    assert (spec.kind, spec.env) == (kind, compose([f"env={env}"])["env"]["name"])
    assert spec.out.parent == tmp_path / "runs" and spec.data.dir.parent == tmp_path / "data"
    config_class = PatchTrainConfig if kind == "patch" else TrainConfig
    assert set(spec.options) < set(config_class.__dataclass_fields__)
    model_fields = train.model_config_class(kind).__dataclass_fields__
    assert spec.raw["model"] and set(spec.raw["model"]) < set(model_fields)
    job = train.load(
        job_overrides("train", [f"world_model={kind}", f"env={env}"], tmp_path), tmp_path
    )
    assert job.mlflow["tracking_uri"].startswith("http")  # the head's MLflow server


def test_grasp_reference_preset_is_the_reference_config_and_plans():
    from grasplab.planners import GRASPConfig, make_planner

    from .conftest import lq_problem

    spec = load(
        ["+planner@planners.ref=grasp_reference", "+search_space@planners.ref.search_space=grasp"]
    )
    ref = next(p for p in spec.planners if p.label == "ref")
    config = GRASPConfig.from_dict(ref.trial_config({}))
    assert config == GRASPConfig.reference(n_steps=200, probe_every=25)
    # GRASP's search space tunes the sync optimiser; the reference preset pins the authors' one.
    grasp = load(["+planner@planners.g=grasp", "+search_space@planners.g.search_space=grasp"])
    g = next(p for p in grasp.planners if p.label == "g")
    assert g.search_space["sync_optimizer"].values == ("fresh", "kept")
    assert "sync_optimizer" not in ref.search_space and ref.fixed["sync_optimizer"] == "fresh"
    problem, err0 = lq_problem(0, batch=4, horizon=6)
    result = make_planner("grasp", config).plan(problem)
    assert result.actions.shape == (4, 6, problem.model.action_dim)
    assert bool((result.cost < err0).all())
