"""The evaluation protocol, the batched runner and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grasplab.envs.policies import waypoint_policy
from grasplab.eval import (
    EpisodeResults,
    EvalProtocol,
    evaluate,
    execute,
    random_floor,
    wilson_interval,
)
from grasplab.eval.models import load_model
from grasplab.planners import PLANNERS, PlanResult, make_planner
from grasplab.world_models import OracleModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_wilson_interval_contains_the_rate_exactly():
    """Rounding once put the bound of k = 0 at 3e-18 > 0 for 862 of n < 2000 (n = 3, 6, 7, ...):
    a negative error bar, which matplotlib refuses (a finished sweep's report crashed on it)."""
    for n in range(1, 400):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert low <= k / n <= high, (k, n)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("horizon", 0),
        ("action_block", 0),
        ("mode", "closed"),
        ("success_rule", "once"),
        ("mpc_execute", 99),
        ("tune_episodes", -1),
        ("horizon", 2.5),
    ],
)
def test_protocol_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EvalProtocol(**{"env": "wall", "horizon": 10, field: value})


def test_protocol_rejects_unknown_env_fields_and_versions():
    with pytest.raises(ValueError, match="unknown env"):
        EvalProtocol(env="nowhere")
    with pytest.raises(ValueError, match="door"):
        EvalProtocol(env="wall", env_overrides={"doors": 2})
    with pytest.raises(ValueError, match="horizons"):
        EvalProtocol.from_dict({"env": "wall", "horizons": 3})
    with pytest.raises(ValueError, match="version"):
        EvalProtocol.from_dict({"env": "wall", "version": "0"})
    p = EvalProtocol(env="wall", horizon=12)
    assert EvalProtocol.from_dict(p.to_dict()) == p
    assert p.fingerprint() == EvalProtocol.from_dict(p.to_dict()).fingerprint()
    assert p.fingerprint() != EvalProtocol(env="wall", horizon=13).fingerprint()


def test_tuning_and_test_goals_are_disjoint_and_deterministic():
    p = EvalProtocol(
        env="pointmaze",
        env_overrides={"layout": "medium"},
        horizon=20,
        tune_episodes=30,
        test_episodes=30,
    )
    tune, test = p.tasks("tune"), p.tasks("test")
    again = EvalProtocol.from_dict(p.to_dict()).tasks("test")
    torch.testing.assert_close(test.goal, again.goal)
    pairs_tune = {tuple(x) for x in torch.cat([tune.start, tune.goal], 1).tolist()}
    pairs_test = {tuple(x) for x in torch.cat([test.start, test.goal], 1).tolist()}
    assert len(pairs_tune & pairs_test) < 3  # a few coincidences possible on a cell grid
    assert not torch.equal(tune.goal, test.goal)


class ScriptedPlanner:
    """Returns fixed actions (B, H, A): lets the runner's scoring be checked exactly."""

    def __init__(self, actions):
        self.actions = actions
        self.config = None

    def plan(self, problem, init=None, *, generator=None, probe=None):
        a = self.actions.to(problem.z0)
        if probe is not None:
            probe(0, a)
        return PlanResult(
            a,
            torch.zeros(problem.batch),
            torch.zeros(*a.shape[:2], 2),
            {},
            model_steps=0,
            iterations=1,
        )


def _expert_actions(protocol, split="test"):
    env = protocol.make_env()
    tasks = protocol.tasks(split)
    state, acts = tasks.start, []
    for _ in range(protocol.env_steps):
        a = waypoint_policy(env, state, tasks.goal)
        acts.append(a)
        state = env.step(state, a)
    return torch.stack(acts, 1).reshape(len(tasks), protocol.horizon, -1)


def test_runner_scores_in_the_true_env():
    p = EvalProtocol(env="wall", horizon=20, test_episodes=12, tune_episodes=0)
    model = OracleModel(p.make_env(), 1)
    expert = evaluate(p, ScriptedPlanner(_expert_actions(p)), model, "test")
    idle = evaluate(p, ScriptedPlanner(torch.zeros(12, 20, 2)), model, "test")
    assert expert.success.mean() >= 0.9
    assert not idle.success.any()
    assert np.isnan(idle.time_to_success).all()
    assert (expert.time_to_success[expert.success] >= 0).all()
    assert (expert.min_distance <= expert.final_distance + 1e-9).all()
    # the final rule is stricter than "ever"
    final = evaluate(
        EvalProtocol.from_dict({**p.to_dict(), "success_rule": "final"}),
        ScriptedPlanner(_expert_actions(p)),
        model,
        "test",
    )
    assert final.success.sum() <= expert.success.sum()


def test_runner_action_block_and_indices():
    p = EvalProtocol(env="wall", horizon=10, action_block=2, test_episodes=6, tune_episodes=0)
    model = OracleModel(p.make_env(), 2)
    res = evaluate(p, ScriptedPlanner(_expert_actions(p)[[1, 4]]), model, "test", [1, 4])
    assert list(res.index) == [1, 4] and res.success.all()
    with pytest.raises(ValueError, match="action_dim"):
        evaluate(p, make_planner("cem"), OracleModel(p.make_env(), 1), "test", [0])
    with pytest.raises(ValueError, match="indices"):
        evaluate(p, make_planner("cem"), model, "test", [6])


def test_execute_matches_stepwise_env():
    p = EvalProtocol(
        env="pointmaze",
        env_overrides={"layout": "umaze"},
        horizon=6,
        test_episodes=4,
        tune_episodes=0,
    )
    env, tasks = p.make_env(), p.tasks("test")
    actions = torch.rand(4, 6, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    distances, states = execute(env, tasks.start, tasks.goal, actions, 1)
    s = tasks.start
    for t in range(6):
        s = env.step(s, actions[:, t])
    torch.testing.assert_close(states[:, -1], s)
    torch.testing.assert_close(distances[:, -1], env.distance(s, tasks.goal))


def test_random_floor_and_results_round_trip():
    p = EvalProtocol(env="ballnav", horizon=10, test_episodes=20, tune_episodes=0)
    floor = random_floor(p, "test", repeats=2)
    assert len(floor) == 40 and floor.summary()["n"] == 40
    again = EpisodeResults.from_records(floor.to_records())
    np.testing.assert_array_equal(again.success, floor.success)
    both = EpisodeResults.concat([floor, floor])
    assert len(both) == 80


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_planner_reaches_goals_on_oracle_ballnav(name):
    # Short horizon, default (field / authors') settings, held-out test goals; measured 40/40
    # for every planner on this machine (see BENCHMARKS.md).
    p = EvalProtocol(env="ballnav", horizon=8, test_episodes=40, tune_episodes=0)
    res = evaluate(p, make_planner(name), load_model("oracle", p), "test")
    summary = res.summary()
    assert summary["n"] == 40
    assert summary["success_rate"] >= 0.9
    assert random_floor(p, "test").summary()["success_rate"] < 0.2


def test_mpc_mode_replans_with_warm_start():
    p = EvalProtocol(
        env="wall", horizon=12, test_episodes=16, tune_episodes=0, mode="mpc", mpc_execute=4
    )
    res = evaluate(p, make_planner("cem", {"n_iterations": 10}), load_model("oracle", p), "test")
    # three replans over the shrinking budget 12, 8, 4: each a full CEM solve
    assert res.model_steps[0] == 10 * 300 * (12 + 8 + 4) + (12 + 8 + 4)
    assert res.success.mean() >= 0.8  # measured 16/16
    assert not math.isnan(res.summary()["median_time_to_success"])


def test_load_model_rejects_unknown_specs():
    p = EvalProtocol(env="wall", horizon=10)
    with pytest.raises(ValueError, match="unknown world model"):
        load_model("models-that-do-not-exist", p)


def test_planners_see_actions_in_unit_bounds_whatever_the_env():
    """Push-T's actions are pixel targets in [0, 512]: planners get [-1, 1] and the env and the
    model get the env's units back; an env already in [-1, 1] is left alone."""
    from grasplab.eval.runner import Rollout, TrueEnv, normalized_actions

    seen: dict[str, torch.Tensor] = {}

    class PixelTargets(TrueEnv):
        action_low = torch.tensor([0.0, 100.0])
        action_high = torch.tensor([512.0, 300.0])
        action_dim = 2

        def execute(self, start, goal, actions, action_block):
            seen["env"] = actions
            return Rollout(torch.zeros(1, 1), start[:, None], torch.zeros(1, 1, dtype=torch.bool))

    class Model:
        action_dim, latent_spread = 4, torch.ones(3)

        def step(self, z, a):
            seen["model"] = a
            return z

    env, model = normalized_actions(PixelTargets(), Model())
    assert env.action_low.tolist() == [-1, -1] and env.action_high.tolist() == [1, 1]
    low, high = env.bounds(2, torch.zeros(1))
    assert low.tolist() == [-1] * 4 and high.tolist() == [1] * 4
    model.step(torch.zeros(1, 3), torch.tensor([[-1.0, 0.0, 1.0, 0.5]]))
    assert seen["model"].tolist() == [[0.0, 200.0, 512.0, 250.0]]  # action block 2: repeated
    env.execute(torch.zeros(1, 5), torch.zeros(1, 5), torch.ones(1, 3, 4), 2)
    assert seen["env"][0, 0].tolist() == [512.0, 300.0, 512.0, 300.0]
    assert model.action_dim == 4 and model.latent_spread.shape == (3,)  # the rest is the model's

    class Unit(PixelTargets):
        action_low, action_high = -torch.ones(2), torch.ones(2)

    unit, inner = Unit(), Model()
    assert normalized_actions(unit, inner) == (unit, inner)
