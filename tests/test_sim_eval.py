"""Evaluation and sweeps in REAL simulators, and task sets from recorded episodes.

Push-T and PointMaze (the `sims` extra) as the true env of the runner (open loop, MPC on the live
simulators, the random floor, pixel observations), dataset task sets (goal = the replayed
state, disjoint splits, the dataset in the fingerprint, training episodes refused), the driver's
bad-input checks, and a tiny end-to-end Push-T sweep with a state model trained in the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from grasplab.cli import bench_long_horizon
from grasplab.cli import sweep as cli_sweep
from grasplab.eval import EvalProtocol
from grasplab.eval.runner import evaluate, random_floor
from grasplab.eval.tasks import TaskSet, check_train_overlap
from grasplab.planners import make_planner
from grasplab.world_models import LinearModel, checkpoint
from grasplab.world_models.data import collect, dataset_identity, load_episodes, read_manifest
from grasplab.world_models.pixel import PixelConfig, PixelModel
from grasplab.world_models.training import train

REASON = 'needs the `sims` extra: pip install -e ".[sims]"'
pytest.importorskip("gym_pusht", reason=REASON)
pytest.importorskip("gymnasium_robotics", reason=REASON)

CEM = {"n_iterations": 2, "n_samples": 16, "n_elites": 4}
SPLITS = {"tune": [6, 7], "test": [7, 8]}  # the training episodes are [0, 6) of 8


@pytest.fixture(scope="module")
def pusht_data(tmp_path_factory) -> Path:
    """8 random-policy Push-T episodes of 12 env steps, collected in the real simulator."""
    out = tmp_path_factory.mktemp("pusht") / "data"
    collect(
        "sim:pusht", episodes=8, steps=12, seed=0, out_dir=out, shard_episodes=4, progress=False
    )
    return out


@pytest.fixture(scope="module")
def pusht_model(pusht_data: Path) -> Path:
    """A small state MLP trained for a few steps on ``pusht_data`` (``grasplab train``'s code)."""
    out = pusht_data.parent / "mlp"
    train(
        "mlp",
        pusht_data,
        out,
        steps=4,
        batch=16,
        eval_every=4,
        val_fraction=0.25,
        val_windows=16,
        window=2,
        progress=False,
        model={"width": 32, "depth": 1},
    )
    return out


def pusht_protocol(data: Path, **fields) -> EvalProtocol:
    task_set = {"source": "dataset", "data": str(data), "k": 4, "splits": SPLITS}
    values = {"env": "sim:pusht", "horizon": 4, "tune_episodes": 2, "test_episodes": 2}
    return EvalProtocol(**{**values, "task_set": task_set, **fields})


def maze_model() -> LinearModel:
    """Double integrator of PointMaze's point mass (dt = 0.01 s): an analytic state model."""
    dt = 0.01
    A = torch.eye(4)
    A[0, 2] = A[1, 3] = dt
    B = torch.zeros(4, 2)
    B[2, 0] = B[3, 1] = 1.0
    return LinearModel(A, B)


# ---------------------------------------------------------------- collection and checkpoints


def test_collect_in_a_real_simulator_records_its_states(pusht_data):
    data = load_episodes(pusht_data)
    assert data.manifest["env"] == "sim:pusht" and data.manifest["complete"]
    assert data.states.shape == (8, 13, 5) and data.actions.shape == (8, 12, 2)
    assert data.images.shape == (8, 13, 64, 64, 3) and data.images.dtype == torch.uint8
    assert float(data.actions.min()) >= 0.0 and float(data.actions.max()) <= 512.0
    assert (data.states[:, 1:, :2] - data.states[:, :-1, :2]).abs().max() > 1.0  # it moved


def test_checkpoint_records_its_dataset_and_training_episodes(pusht_data, pusht_model):
    info = checkpoint.info(pusht_model)
    assert info["data"]["identity"] == dataset_identity(read_manifest(pusht_data))
    assert info["train_episodes"] == [0, 6] and info["val_episodes"] == [6, 8]


# ---------------------------------------------------------------- task sets


def test_dataset_goals_are_the_states_replayed_in_the_simulator(pusht_data):
    from grasplab.envs import make_sim

    protocol = pusht_protocol(pusht_data, task_set={**pusht_protocol(pusht_data).task_set})
    fixed = EvalProtocol.from_dict(
        {**protocol.to_dict(), "task_set": {**protocol.task_set, "offset": 3}}
    )
    tasks = fixed.tasks("test")
    data = load_episodes(pusht_data, images=False)
    assert torch.equal(tasks.start, data.states[[7, 7], 3])
    with make_sim("pusht") as sim:
        replayed = sim.execute(data.states[7:8, 3], data.states[7:8, 3], data.actions[7:8, 3:7])
    assert torch.allclose(tasks.goal[0], replayed.states[0, -1].float())
    assert not torch.equal(tasks.goal[0], tasks.start[0])
    drawn = protocol.tasks("tune")  # offsets drawn per task, from the seed
    assert torch.equal(drawn.start, protocol.tasks("tune").start)
    assert all(any(torch.equal(s, r) for r in data.states[6]) for s in drawn.start)


def test_task_set_splits_must_be_disjoint_and_named():
    with pytest.raises(ValueError, match=r"overlap: tune episodes \[0, 5\) and test episodes"):
        TaskSet.from_dict(
            {"source": "dataset", "data": "d", "splits": {"tune": [0, 5], "test": [4, 8]}}
        )
    with pytest.raises(ValueError, match="must name exactly"):
        TaskSet.from_dict({"source": "dataset", "data": "d", "splits": {"tune": [0, 5]}})
    with pytest.raises(ValueError, match="unknown key"):
        TaskSet.from_dict({"source": "dataset", "episodes": 3})
    assert TaskSet.from_dict({"source": "env"}).to_dict() == {}


def test_fingerprint_covers_the_task_set_and_the_dataset(tmp_path):
    data = tmp_path / "data"
    collect("pointmaze", episodes=4, steps=10, seed=0, out_dir=data, progress=False)
    plain = EvalProtocol(env="pointmaze", horizon=5, tune_episodes=2, test_episodes=2)
    assert "task_set" not in plain.to_dict()  # older protocols keep their fingerprints
    spec = {"source": "dataset", "data": str(data), "splits": {"tune": [0, 2], "test": [2, 4]}}
    protocol = EvalProtocol.from_dict({**plain.to_dict(), "task_set": spec})
    assert protocol.fingerprint() != plain.fingerprint()
    tasks = protocol.tasks("test")  # torch env: goals replayed with env.step
    episodes = load_episodes(data, images=False)
    assert tasks.start.shape == (2, 4) and episodes.states[2:4].shape[1] == 11
    before = protocol.fingerprint()
    shutil.rmtree(data)
    collect("pointmaze", episodes=4, steps=10, seed=1, out_dir=data, progress=False)
    assert protocol.fingerprint() != before  # same spec, another dataset


def test_training_episodes_are_refused_unless_allowed(pusht_data, pusht_model):
    info = checkpoint.info(pusht_model)
    spec = {
        "source": "dataset",
        "data": str(pusht_data),
        "splits": {"tune": [5, 6], "test": [6, 8]},
    }
    with pytest.raises(ValueError, match=r"tune episodes \[5, 6\) overlap the training episodes"):
        check_train_overlap(TaskSet.from_dict(spec), info, "m")
    check_train_overlap(TaskSet.from_dict({**spec, "allow_train_overlap": True}), info, "m")
    check_train_overlap(TaskSet.from_dict({**spec, "splits": SPLITS}), info, "m")


# ---------------------------------------------------------------- the runner in a simulator


def test_runner_open_loop_and_mpc_in_real_pusht(pusht_data, pusht_model):
    from grasplab.envs import make_sim
    from grasplab.eval.models import load_model

    protocol = pusht_protocol(pusht_data)
    model = load_model(str(pusht_model), protocol)
    with make_sim("pusht") as sim:
        calls = {"execute": 0, "step": 0}
        for name in calls:
            method = getattr(sim, name)

            def counted(*args, _method=method, _name=name):
                calls[_name] += 1
                return _method(*args)

            setattr(sim, name, counted)
        results = evaluate(protocol, make_planner("cem", CEM), model, "test", sim=sim)
        assert results.success.shape == (2,) and np.isfinite(results.final_distance).all()
        assert results.index.tolist() == [0, 1] and (results.model_steps > 0).all()
        mpc = EvalProtocol.from_dict({**protocol.to_dict(), "mode": "mpc", "mpc_execute": 2})
        mpc.tasks("tune", sim)  # built (goals replayed) and cached first
        calls.update(execute=0, step=0)
        results = evaluate(mpc, make_planner("cem", CEM), model, "tune", sim=sim)
        assert np.isfinite(results.min_distance).all()
        assert calls == {"execute": 1, "step": 2}  # one reset, then the live sims step on
        floor = random_floor(protocol, "test", repeats=2, sim=sim)
        assert floor.success.shape == (4,) and floor.index.tolist() == [0, 1, 0, 1]


def test_runner_in_real_pointmaze_with_state_and_pixel_models():
    protocol = EvalProtocol(env="sim:pointmaze-umaze", horizon=3, tune_episodes=2, test_episodes=2)
    open_loop = evaluate(protocol, make_planner("cem", CEM), maze_model(), "test")
    assert open_loop.success.shape == (2,) and np.isfinite(open_loop.final_distance).all()
    mpc = EvalProtocol.from_dict({**protocol.to_dict(), "mode": "mpc", "mpc_execute": 2})
    results = evaluate(mpc, make_planner("gd", {"n_steps": 3}), maze_model(), "tune")
    assert np.isfinite(results.final_distance).all()
    torch.manual_seed(0)
    pixels = PixelModel(PixelConfig(env_action_dim=2, width=16, depth=1, channels=4))
    seen = evaluate(protocol, make_planner("cem", CEM), pixels.eval(), "test")  # sim.render
    assert np.isfinite(seen.final_distance).all()
    floor = random_floor(protocol, "test")
    assert floor.success.dtype == bool and floor.final_distance.shape == (2,)


def test_pointmaze_sim_config_composes_and_runs(tmp_path):
    from grasplab.eval.models import load_model
    from grasplab.platform.config import load
    from grasplab.world_models.mlp import MLPConfig, MLPModel

    model = checkpoint.save(MLPModel(MLPConfig(state_dim=4, env_action_dim=2)), tmp_path / "m")
    spec = load(
        [
            "env=pointmaze_sim",
            "world_model=checkpoint",
            f"world_model.spec={model}",
            "protocol=tiny",
            "protocol.horizon=2",
            "protocol.tune_episodes=1",
        ]
    )
    assert spec.protocol.env == "sim:pointmaze-umaze" and spec.protocol.is_sim
    results = evaluate(
        spec.protocol, make_planner("cem", CEM), load_model(str(model), spec.protocol), "tune"
    )
    assert results.success.shape == (1,)


# ---------------------------------------------------------------- bad input on the driver


class NoResetSim:
    """A simulator adapter offering no way to reset to a given state."""

    name, state_dim, action_dim = "no-reset", 2, 2
    action_low, action_high = np.zeros(2), np.ones(2)

    def step(self, actions):
        return actions

    def close(self):
        pass


def no_reset_sim(**kwargs) -> NoResetSim:
    """Factory of the bad adapter (``sim:tests.test_sim_eval:no_reset_sim``)."""
    return NoResetSim()


def gym_without_set_state(**kwargs):
    """A GymSimulator over Push-T whose spec has no set_state."""
    from grasplab.envs import GymSimulator, GymSpec, sim_pusht

    spec = GymSpec(
        "pusht-no-set-state",
        sim_pusht.make_env,
        sim_pusht.get_state,
        None,
        sim_pusht.distance,
        sim_pusht.success,
    )
    return GymSimulator(spec)


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("no_reset_sim", "no reset_to(states): no way to reset to a given state"),
        ("gym_without_set_state", "offers no way to reset to a given state"),
    ],
)
def test_adapter_without_reset_to_state_is_refused_on_the_driver(
    factory, needle, pusht_model, tmp_path, monkeypatch, capsys
):

    monkeypatch.chdir(tmp_path)
    overrides = [
        f"env.name=sim:tests.test_sim_eval:{factory}",
        "world_model=checkpoint",
        f"world_model.spec={pusht_model}",
    ]
    assert cli_sweep.main(overrides) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("grasplab sweep: error")
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run existed


def test_split_overlapping_the_training_split_is_refused_on_the_driver(
    pusht_data, pusht_model, tmp_path, monkeypatch, capsys
):

    monkeypatch.chdir(tmp_path)
    overrides = [
        *sweep_overrides(pusht_data, pusht_model),
        "tasks.splits.tune=[4,7]",
    ]
    assert cli_sweep.main(overrides) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "tune episodes [4, 7) overlap the training episodes [0, 6)" in err
    assert not (tmp_path / "mlflow.db").exists()


# ---------------------------------------------------------------- the end-to-end sweep


def sweep_overrides(data: Path, model: Path) -> list[str]:
    return [
        "env=pusht",
        "world_model=checkpoint",
        f"world_model.spec={model}",
        "tasks=dataset",
        f"tasks.data={data}",
        "tasks.k=3",
        "tasks.splits.tune=[6,7]",
        "tasks.splits.test=[7,8]",
        "protocol=tiny",
        "protocol.horizon=3",
        "protocol.tune_episodes=2",
        "protocol.test_episodes=2",
        "~planners.gd",
        "sweep.num_samples=2",
        "sweep.chunk_size=2",
        "planners.grasp.config.n_steps=10",
        "planners.grasp.config.probe_every=5",
        "+planners.cem.fixed.n_iterations=2",
        "+planners.cem.fixed.n_samples=16",
        "+planners.cem.fixed.n_elites=4",
        "report.plots=false",
        "report.gif=true",
    ]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, namespace="grasplab", log_to_driver=False)
    yield
    ray.shutdown()


def test_tiny_pusht_sweep_executes_plans_in_the_simulator(
    pusht_data, pusht_model, tmp_path, local_ray
):
    from mlflow.tracking import MlflowClient

    from grasplab.platform import sweep

    from .support import trials_and_parents

    spec, state = sweep.prepare(sweep_overrides(pusht_data, pusht_model), tmp_path)
    result = sweep.run_sweep(spec, state, progress=False, num_workers=1)
    trials, parents = trials_and_parents(result.tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert parents[0].data.params["protocol.env"] == "sim:pusht"
    assert parents[0].data.params["protocol.fingerprint"] == spec.protocol.fingerprint()
    for outcome in result.outcomes:  # the best configs' plans, executed in Push-T
        assert len(outcome.test_records) == 2
        assert all(np.isfinite(r["final_distance"]) for r in outcome.test_records)
    client = MlflowClient(result.tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"test", "gifs"} <= artifacts
    gifs = {a.path for a in client.list_artifacts(result.parent_run_id, "gifs")}
    assert any(g.endswith(".gif") for g in gifs), gifs  # plans replayed in Push-T
    records = {a.path for a in client.list_artifacts(result.parent_run_id, "test")}
    assert {"test/grasp.json", "test/cem.json"} <= records


def test_a_worker_builds_its_simulator_once_and_closes_it(pusht_data, pusht_model, local_ray):
    from grasplab.platform.workers import WorldModelWorker

    worker = WorldModelWorker(1, "cpu")  # the actor's class, here in the driver process
    protocol = pusht_protocol(pusht_data).to_dict()
    for indices in ([0], [1]):
        out = worker.evaluate(str(pusht_model), protocol, "cem", CEM, "tune", indices)
        assert [r["index"] for r in out["records"]] == indices
    assert len(worker.sims) == 1 and worker.loads == 1
    sim = next(iter(worker.sims.values()))
    worker.close()
    assert worker.sims == {}
    with pytest.raises(ValueError, match="no live simulators"):
        sim.step(np.zeros((1, 2)))  # closed: its envs are gone


def test_tiny_pusht_long_horizon_bench_end_to_end(pusht_data, pusht_model, tmp_path, capsys):
    """``grasplab bench long-horizon --envs pusht``: dataset tasks judged in the real simulator."""

    out = tmp_path / "pusht.json"
    argv = ["--envs", "pusht", "--checkpoint", str(pusht_model), "--data", str(pusht_data)]
    argv += ["--splits", "6:7,7:8", "--horizons", "4", "--episodes", "2", "--floor-repeats", "1"]
    argv += ["--planners", "cem,grasp,grasp_reference", "--budget", "0.02", "--json", str(out)]
    assert bench_long_horizon.main(argv) == 0
    printed = capsys.readouterr().out
    assert "### pusht: success % [95% Wilson CI]" in printed
    assert "judged in the real simulator" in printed
    figures = json.loads(out.read_text())
    (row,) = figures["rows"]
    assert row["protocol"]["env"] == "sim:pusht" and row["protocol"]["task_set"]["k"] == 4
    assert row["protocol"]["task_set"]["splits"]["test"] == [7, 8]
    assert set(row["cells"]) == {"cem", "grasp", "grasp_reference"}
    assert all(c["summary"]["n"] == 2 for c in row["cells"].values())
    assert row["cells"]["grasp_reference"]["config"]["reset_optimizer"] is True
    assert row["random"]["n"] == 2
    with pytest.raises(ValueError, match="overlap the training episodes"):
        bench_long_horizon.main([*argv[:6], "--splits", "0:1,7:8", *argv[8:]])


def test_tiny_pusht_long_horizon_bench_under_mpc(pusht_data, pusht_model, tmp_path, capsys):
    """``--mpc E``: the row's protocol replans every E steps; each plan counts in model steps."""

    out = tmp_path / "mpc.json"
    argv = ["--envs", "pusht", "--checkpoint", str(pusht_model), "--data", str(pusht_data)]
    argv += ["--splits", "6:7,7:8", "--horizons", "4", "--episodes", "2", "--floor-repeats", "1"]
    argv += ["--planners", "gd", "--budget", "0.05", "--final-plan", "--json", str(out)]
    assert bench_long_horizon.main([*argv, "--mpc", "2"]) == 0
    assert "MPC (execute 2 model steps per replan" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    assert row["protocol"]["mode"] == "mpc" and row["protocol"]["mpc_execute"] == 2
    cell = row["cells"]["gd"]
    assert cell["summary"]["n"] == 2 and cell["gap"] is None
    # 2 plans per episode over the shrinking horizon (4, then 2 steps), 15 GD steps each
    steps_open_loop = 15 * 4 + 4
    assert cell["summary"]["model_steps"] > steps_open_loop
    with pytest.raises(SystemExit):
        bench_long_horizon.main([*argv, "--mpc", "5"])  # E longer than the horizon


def test_pusht_bench_without_data_draws_the_full_datasets_tasks_from_the_excerpt(
    pusht_data, pusht_model, tmp_path, monkeypatch
):
    """No ``--data``: the shipped excerpt's tasks, at the shifted ranges, are the dataset's own."""
    from grasplab.bench import long_horizon
    from grasplab.bench.quality_pusht import heldout_excerpt
    from grasplab.envs import make_sim

    heldout_excerpt(pusht_data, tmp_path / "excerpt", (4, 8))  # episodes 4-7, renumbered 0-3
    monkeypatch.setattr(long_horizon, "CHECKPOINTS", tmp_path)
    monkeypatch.setattr(long_horizon, "SIM_HELDOUT", {"pusht": "excerpt"})
    argv = ["--envs", "pusht", "--checkpoint", str(pusht_model), "--splits", "6:7,7:8"]
    argv += ["--horizons", "4", "--episodes", "3", "--floor-repeats", "1"]
    shipped = bench_long_horizon.parse(argv)
    full = bench_long_horizon.parse([*argv, "--data", str(pusht_data)])
    assert shipped.task_data["pusht"] == (
        str(tmp_path / "excerpt"),
        {"tune": (2, 3), "test": (3, 4)},
    )
    sim = make_sim("pusht")
    try:
        a, b = (
            long_horizon.row_protocol(x, "pusht", 4, 1).tasks("test", sim) for x in (shipped, full)
        )
    finally:
        sim.close()
    assert torch.equal(a.start, b.start) and torch.equal(a.goal, b.goal)
    assert a.start.shape == (3, 5) and not torch.equal(a.start, a.goal)
    # the training-episode guard still refuses, in the source's numbering (model: [0, 6) of 8)
    with pytest.raises(ValueError, match=r"\[0, 1\) \(episodes \[4, 5\) of its source\) overlap"):
        bench_long_horizon.main([*argv[:4], "--splits", "4:5,7:8", *argv[6:]])
    with pytest.raises(SystemExit):  # outside the excerpt: one line naming the collect command
        bench_long_horizon.main([*argv[:4], "--splits", "2:3,7:8", *argv[6:]])
    with pytest.raises(SystemExit):
        bench_long_horizon.main([*argv, "--data", str(tmp_path / "missing")])


def test_pusht_bench_on_a_fresh_clone_plans_on_the_shipped_excerpt(tmp_path, capsys):
    """``grasplab bench long-horizon --envs pusht`` with no dataset: shipped model and episodes."""
    out = tmp_path / "fresh.json"
    argv = ["--envs", "pusht", "--model", "mlp", "--horizons", "10", "--episodes", "2"]
    argv += ["--floor-repeats", "1", "--planners", "cem", "--budget", "0.05", "--json", str(out)]
    assert bench_long_horizon.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test episodes [950, 1000) of the shipped held-out episodes" in printed
    (row,) = json.loads(out.read_text())["rows"]
    task_set = row["protocol"]["task_set"]
    assert Path(task_set["data"]).name == "pusht-pusher-heldout"
    assert task_set["splits"] == {"tune": [0, 50], "test": [50, 100]} and task_set["k"] == 10
    assert row["cells"]["cem"]["summary"]["n"] == 2 and row["random"]["n"] == 2


def test_the_shipped_excerpt_is_numbered_in_the_shipped_models_dataset():
    """The guard maps the excerpt's episodes 0-99 to 900-999 of the Push-T models' data."""
    from grasplab.eval.tasks import source_shift, trained_episodes
    from grasplab.world_models.checkpoint import CHECKPOINTS

    excerpt = CHECKPOINTS / "pusht-pusher-heldout"
    spec = TaskSet.from_dict(
        {"source": "dataset", "data": str(excerpt), "splits": {"tune": [0, 50], "test": [50, 100]}}
    )
    for name in ("pusht-mlp-b1", "pusht-pixel-b1", "pusht-patch-b1"):
        identity, (first, stop) = trained_episodes(checkpoint.info(CHECKPOINTS / name))
        assert source_shift(spec, identity) == 900 and first == 0 and stop <= 900
        check_train_overlap(spec, checkpoint.info(CHECKPOINTS / name), name)
    assert source_shift(spec, "another dataset") is None


def test_the_shipped_excerpt_gives_the_recorded_full_dataset_tasks():
    """The quick bench's tasks without ``--data`` equal those recorded on the full dataset.

    ``results/long_horizon/pusht_2026-12-02/pusht-mlp.json`` was measured with ``--data`` on
    the full 1,000-episode dataset (test episodes 950-999, 50 tasks, seed 0); its per-row task
    statistics (medians over the replayed goals) fingerprint those tasks.
    """
    from grasplab.bench import long_horizon
    from grasplab.envs import make_sim

    recorded = Path(__file__).parents[1] / "results/long_horizon/pusht_2026-12-02/pusht-mlp.json"
    rows = {r["horizon"]: r for r in json.loads(recorded.read_text())["rows"]}
    assert rows[10]["protocol"]["task_set"]["data"].endswith("/pusht-pusher")
    args = bench_long_horizon.parse(["--envs", "pusht", "--model", "mlp", "--episodes", "50"])
    sim = make_sim("pusht")
    try:
        for horizon in (10, 50):  # the quick rows
            protocol = long_horizon.row_protocol(args, "pusht", horizon, 1)
            assert protocol.task_set["splits"]["test"] == [50, 100]
            assert long_horizon.sim_task_stats(protocol, sim) == rows[horizon]["tasks"]
    finally:
        sim.close()
