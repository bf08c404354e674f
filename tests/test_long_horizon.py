"""``grasplab bench long-horizon``: tiny end-to-end runs and the model-vs-true bookkeeping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grasplab.bench import long_horizon, wall_crossing
from grasplab.cli import bench_long_horizon, bench_wall_crossing
from grasplab.envs import make
from grasplab.eval import EvalProtocol
from grasplab.world_models import OracleModel, rollout
from grasplab.world_models.checkpoint import CHECKPOINTS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gap_counts_false_and_missed_successes():
    true = np.array([1, 1, 0, 0, 0], dtype=bool)
    model = np.array([1, 0, 1, 1, 0], dtype=bool)
    g = long_horizon.gap(true, model)
    assert g["model_success"] == pytest.approx(0.6) and g["true_success"] == pytest.approx(0.4)
    assert g["false_success"] == pytest.approx(0.4) and g["missed_success"] == pytest.approx(0.2)
    assert g["false_given_model"] == pytest.approx(2 / 3) and g["gap"] == pytest.approx(0.2)


def test_plan_error_is_zero_for_exact_dynamics_and_sees_a_wrong_model():
    protocol = EvalProtocol(
        env="wall", horizon=10, tune_episodes=0, test_episodes=4, action_block=2
    )
    env = protocol.make_env()
    model = OracleModel(env, 2)
    tasks = protocol.tasks("test")
    actions = torch.rand(4, 10, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    states = rollout(model, model.encode(tasks.start), actions)
    success, predicted = long_horizon.model_judgement(model, None, env, states, tasks.goal)
    assert success.shape == (4,) and predicted.shape == (4, 10, 2)
    assert np.allclose(long_horizon.plan_error(protocol, env, actions, predicted), 0, atol=1e-4)
    shifted = long_horizon.plan_error(protocol, env, actions, predicted + torch.tensor([3.0, 4.0]))
    assert np.allclose(shifted, 5.0, atol=1e-4)
    summary = long_horizon.error_summary(shifted, np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))
    assert summary == pytest.approx({"median": 5.0, "false_success": 5.0, "other": 5.0})


def test_quick_defaults_and_reduced_budgets():
    args = bench_long_horizon.parse(["--quick"])
    assert (args.horizons, args.episodes) == ("10,50", 16)
    assert bench_long_horizon.parse([]).episodes == 100
    assert long_horizon.planner_config("grasp", 1.0) == {}
    assert long_horizon.planner_config("grasp", 0.1) == {"n_steps": 75}
    assert long_horizon.planner_config("cem", 0.01) == {"n_iterations": 1}
    args = bench_long_horizon.parse(["--planners", "grasp", "--set", "grasp.goal_weight=0.1"])
    assert long_horizon.planner_config("grasp", 0.1, args.overrides) == {
        "n_steps": 75,
        "goal_weight": 0.1,
    }


@pytest.mark.parametrize(
    "item", ["grasp.no_such_field=1", "grasp.goal_weight=-1", "goal_weight=1", "cem.n_samples=8"]
)
def test_bad_set_is_a_usage_error(item, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_long_horizon.parse(["--planners", "grasp", "--set", item])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_oracle_model_has_no_model_vs_true_gap(tmp_path, capsys):
    out = tmp_path / "oracle.json"
    argv = ["--model", "oracle", "--envs", "wall", "--horizons", "10,80", "--episodes", "4"]
    argv += ["--budget", "0.05", "--planners", "cem,gd,grasp", "--json", str(out)]
    assert bench_long_horizon.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert "skipped" in rows[1] and rows[1]["horizon"] == 80  # wall supports H <= 68 at block 1
    for name, cell in rows[0]["cells"].items():
        g = cell["gap"]
        assert cell["plan_error"]["median"] < 1e-3, name  # exact dynamics: predicted = true
        assert 0 < cell["diagnostics"]["action_norm"] <= 1.0, name
        assert 0 <= cell["diagnostics"]["action_jerk"] <= 2.0, name
        assert g["model_success"] == g["true_success"], name  # exact dynamics: no gap
        assert g["false_success"] == 0.0 and cell["summary"]["n"] == 4
    assert "skipped" in capsys.readouterr().out


def test_final_plan_scores_without_freezing_probed_iterates(tmp_path, capsys):
    out = tmp_path / "final.json"
    argv = ["--model", "oracle", "--envs", "wall", "--horizons", "10", "--episodes", "3"]
    argv += ["--budget", "0.05", "--planners", "gd", "--final-plan", "--json", str(out)]
    assert bench_long_horizon.main(argv) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["protocol"]["stop_on_success"] is False
    assert "scoring the final plan only" in capsys.readouterr().out
    assert bench_long_horizon.parse([]).final_plan is False


@pytest.mark.skipif(
    not (CHECKPOINTS / "pointmaze-pixel-b1").is_dir(), reason="long-horizon models not shipped"
)
def test_tiny_run_on_the_shipped_pixel_models(tmp_path, capsys):
    out = tmp_path / "pixel.json"
    argv = ["--envs", "pointmaze,wall", "--horizons", "10", "--episodes", "3"]
    argv += ["--budget", "0.02", "--json", str(out)]
    assert bench_long_horizon.main(argv) == 0
    figures = json.loads(out.read_text())
    assert [r["env"] for r in figures["rows"]] == ["pointmaze", "wall"]
    for row in figures["rows"]:
        assert list(row["cells"]) == long_horizon.ORDER and row["random"]["n"] == 15
        for cell in row["cells"].values():
            assert cell["summary"]["n"] == 3 and 0 <= cell["gap"]["model_success"] <= 1
    for env, record in figures["models"].items():
        assert record["action_block"] == 1 and record["name"] == f"{env}-pixel-b1"
        assert record["probe"]["r2"] > 0.9  # the probe reads positions off the latent
    text = capsys.readouterr().out
    assert "REDUCED" in text and "model-vs-true" in text and "| 10 |" in text


def test_wall_crossing_counts_paths_through_solid_wall_only():
    env = make("wall")
    x = torch.arange(20.0, 45.0, 2.0)
    pos = torch.stack([torch.stack([x, torch.full_like(x, y)], -1) for y in (10.0, 32.0, 40.0)])
    changes, solid = wall_crossing.through_wall(env, pos, margin=0.0)
    assert changes.tolist() == [True, True, True] and solid.tolist() == [True, False, True]
    _, solid = wall_crossing.through_wall(env, pos, margin=6.0)  # y=40 is 3 px past the opening
    assert solid.tolist() == [True, False, False]
    same_room = torch.stack([x / 4, torch.full_like(x, 10.0)], -1).unsqueeze(0)
    assert wall_crossing.through_wall(env, same_room, 0.0)[0].tolist() == [False]


def test_wall_crossing_cli_on_the_oracle(capsys):
    argv = ["--model", "oracle", "--horizon", "20", "--episodes", "3", "--planners", "gd"]
    assert bench_wall_crossing.main(argv + ["--set", "gd.n_steps=5"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| gd |")]
    assert len(lines) == 1
    cells = [c.strip() for c in lines[0].split("|")]
    assert cells[4] == "0%"  # predicted through the wall: exact dynamics never are
    assert cells[5].startswith("0% /")  # and the model (the env itself) has no false success


def test_grasp_reference_column_is_grasp_with_the_reference_preset():
    from grasplab.bench import long_horizon as lh
    from grasplab.planners.grasp import GRASPConfig

    overrides = lh.checked_overrides(["grasp", "grasp_reference"], ["grasp_reference.n_steps=5"])
    config = lh.planner_config("grasp_reference", 1.0, overrides)
    built = GRASPConfig.from_dict(config)
    reference = GRASPConfig.reference(n_steps=5)
    assert built == reference and lh.registry_name("grasp_reference") == "grasp"
    assert lh.planner_config("grasp", 1.0, overrides) == {}
    assert "grasp_reference" in lh.ORDER
