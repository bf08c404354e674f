"""Real simulators (the `sims` extra): PointMaze (MuJoCo) and Push-T (pymunk) through Gymnasium.

Each adapter: reset to given states (read back equal), a few steps that move the way the
actions push, rendering, the success rule on both sides of its thresholds, batched execution
equal to one episode at a time (and to 2 worker processes), and bad input refused.
"""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest
import torch

from grasplab.envs import (
    Execution,
    GymSimulator,
    GymSpec,
    Simulator,
    episode_success,
    make_sim,
    sim_names,
)

REASON = 'needs the `sims` extra: pip install -e ".[sims]"'


def adapter(module: str, *packages: str):
    """The adapter module, or a skip naming the missing extra."""
    for package in packages:
        pytest.importorskip(package, reason=REASON)
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def maze_mod():
    return adapter("grasplab.envs.sim_pointmaze", "gymnasium", "gymnasium_robotics", "mujoco")


@pytest.fixture(scope="module")
def pusht_mod():
    return adapter("grasplab.envs.sim_pusht", "gymnasium", "gym_pusht", "pymunk")


@pytest.fixture(scope="module")
def umaze(maze_mod):
    with maze_mod.make("umaze") as sim:
        yield sim


@pytest.fixture(scope="module")
def pusht(pusht_mod):
    with pusht_mod.make() as sim:
        yield sim


# UMaze free cells: y = +1 and y = -1 for x in {-1, 0, 1}, and (1, 0).
MAZE_STATES = np.array([[-1.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.5, -0.3], [0.1, -0.9, -1.0, 2.0]])
# Agent well clear of the block; the last angle is outside [0, 2 pi).
PUSHT_STATES = np.array(
    [[100.0, 100.0, 300.0, 300.0, 1.0], [60.0, 450.0, 256.0, 256.0, math.pi / 4]]
    + [[420.0, 80.0, 200.0, 250.0, -2.5]]
)


def random_plans(sim: Simulator, n: int, horizon: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random((n, horizon, sim.action_block * sim.action_dim))
    low, high = (
        np.tile(sim.action_low, sim.action_block),
        np.tile(sim.action_high, sim.action_block),
    )
    return low + u * (high - low)


def test_registry_names_and_unknown_name():
    assert sim_names() == ["pointmaze-medium", "pointmaze-umaze", "pusht"]
    with pytest.raises(ValueError, match="unknown simulator 'nope'"):
        make_sim("nope")


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # import gym_pusht now fails
    monkeypatch.delitem(sys.modules, "grasplab.envs.sim_pusht", raising=False)
    with pytest.raises(ImportError, match=r"sims.*gym_pusht.*pip install -e \"\.\[sims\]\""):
        make_sim("pusht")


def test_episode_success_rules():
    per_step = np.array([[False, True, False], [False, False, True]])
    assert episode_success(per_step, "ever").tolist() == [True, True]
    assert episode_success(per_step, "final").tolist() == [False, True]
    assert episode_success(torch.from_numpy(per_step), "final").tolist() == [False, True]
    with pytest.raises(ValueError, match="rule"):
        episode_success(per_step, "sometimes")


# ---------------------------------------------------------------- PointMaze


def test_pointmaze_declares_its_contract(umaze):
    assert isinstance(umaze, Simulator)
    assert (umaze.state_dim, umaze.action_dim, umaze.action_block) == (4, 2, 1)
    assert umaze.action_low.tolist() == [-1, -1] and umaze.action_high.tolist() == [1, 1]


def test_pointmaze_reset_to_reads_back_the_states(umaze):
    frames = umaze.reset_to(MAZE_STATES)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    out = umaze.execute(MAZE_STATES, MAZE_STATES, np.zeros((3, 1, 2)))
    np.testing.assert_array_equal(out.states[:, 0], MAZE_STATES)


def test_pointmaze_steps_move_along_the_force(umaze):
    start = np.array([[-1.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]])
    umaze.reset_to(start)
    for _ in range(10):
        states = umaze.step(np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert states[0, 0] > start[0, 0] + 0.01 and states[0, 2] > 0.1  # pushed +x
    assert abs(states[0, 1] - start[0, 1]) < 1e-6
    assert states[1, 1] < start[1, 1] - 0.01 and states[1, 3] < -0.1  # pushed -y
    assert abs(states[1, 0] - start[1, 0]) < 1e-6


def test_pointmaze_render_shows_the_state_and_leaves_live_sims_alone(umaze):
    images = umaze.render(MAZE_STATES)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert images.std() > 10  # not blank
    assert not np.array_equal(images[0], images[1])  # the point mass moved in the picture
    np.testing.assert_array_equal(umaze.render(MAZE_STATES[:1]), images[:1])  # deterministic
    plans = random_plans(umaze, 3, 8, seed=1)
    whole = umaze.execute(MAZE_STATES, MAZE_STATES, plans).states
    half = umaze.execute(MAZE_STATES, MAZE_STATES, plans[:, :4]).states
    umaze.render(MAZE_STATES[::-1])  # between the halves: must not disturb the live sims
    for t in range(4, 8):
        np.testing.assert_array_equal(umaze.step(plans[:, t]), whole[:, t + 1])
    np.testing.assert_array_equal(half, whole[:, :5])


def test_pointmaze_success_is_d4rl_radius(umaze):
    goal = np.array([[0.0, -1.0, 0.0, 0.0]])
    near = goal + [[0.49, 0.0, 3.0, -3.0]]  # velocity ignored
    assert umaze.success(goal, goal).item() and umaze.success(near, goal).item()
    assert not umaze.success(goal + [[0.0, 0.51, 0.0, 0.0]], goal).item()
    assert not umaze.success(np.array([[1.0, 1.0, 0.0, 0.0]]), goal).item()
    assert umaze.distance(near, goal).item() == pytest.approx(0.49)


def test_pointmaze_batched_execute_equals_one_at_a_time(umaze):
    plans = random_plans(umaze, 3, 12, seed=0)
    goal = np.array([[1.0, 1.0, 0.0, 0.0]]).repeat(3, 0)
    batch = umaze.execute(MAZE_STATES, goal, plans)
    assert isinstance(batch, Execution)
    assert batch.states.shape == (3, 13, 4) and batch.distances.shape == (3, 12)
    assert batch.success.shape == (3, 12) and batch.success.dtype == bool
    for i in reversed(range(3)):  # other envs, other histories
        alone = umaze.execute(MAZE_STATES[i : i + 1], goal[i : i + 1], plans[i : i + 1])
        np.testing.assert_array_equal(alone.states[0], batch.states[i])
        np.testing.assert_array_equal(alone.distances[0], batch.distances[i])


def test_pointmaze_torch_in_torch_out(umaze):
    start = torch.tensor(MAZE_STATES, dtype=torch.float32)
    plans = torch.zeros(3, 2, 2)
    out = umaze.execute(start, start, plans)
    assert out.states.dtype == torch.float32 and out.success.dtype == torch.bool
    assert out.states.shape == (3, 3, 4) and bool(out.success.all())
    assert umaze.render(start[:1]).dtype == torch.uint8


def test_pointmaze_refuses_bad_input(umaze):
    with pytest.raises(ValueError, match=r"reset_to: expected shape \(N, 4\)"):
        umaze.reset_to(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        umaze.reset_to(np.full((1, 4), np.nan))
    umaze.reset_to(MAZE_STATES)
    with pytest.raises(ValueError, match=r"step: expected actions \(3, 2\)"):
        umaze.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="outside the bounds"):
        umaze.step(np.array([[0.0, 0.0], [0.0, 1.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="action_block"):
        umaze.execute(MAZE_STATES, MAZE_STATES, np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="goal must have the start's shape"):
        umaze.execute(MAZE_STATES, MAZE_STATES[:2], np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="outside the bounds"):
        umaze.execute(MAZE_STATES, MAZE_STATES, np.full((3, 4, 2), -1.01))


def test_pointmaze_medium_and_action_block(maze_mod):
    with maze_mod.make("medium", action_block=5) as sim:
        assert sim.name == "pointmaze-medium" and sim.action_block == 5
        start = np.array([[-2.5, -2.5, 0.0, 0.0]])  # a free cell of the medium maze
        out = sim.execute(start, start, np.tile([1.0, 1.0], (1, 3, 5)))
        assert out.states.shape == (1, 16, 4) and out.distances.shape == (1, 15)
        assert sim.render(start).shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="layout"):
        maze_mod.make("large")


# ---------------------------------------------------------------- Push-T


def test_pusht_declares_its_contract(pusht):
    assert isinstance(pusht, Simulator)
    assert (pusht.state_dim, pusht.action_dim, pusht.action_block) == (5, 2, 1)
    assert pusht.action_low.tolist() == [0, 0] and pusht.action_high.tolist() == [512, 512]


def test_pusht_reset_to_reads_back_the_states(pusht):
    frames = pusht.reset_to(PUSHT_STATES)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    out = pusht.execute(PUSHT_STATES, PUSHT_STATES, np.full((3, 1, 2), 256.0))
    expected = PUSHT_STATES.copy()
    expected[:, 4] %= 2 * math.pi  # angles read back in [0, 2 pi)
    np.testing.assert_allclose(out.states[:, 0], expected, rtol=0, atol=1e-9)


def test_pusht_agent_tracks_its_target_and_pushes_the_block(pusht):
    start = np.array([[100.0, 100.0, 300.0, 300.0, 1.0], [256.0, 150.0, 256.0, 256.0, 0.0]])
    pusht.reset_to(start)
    for _ in range(10):
        states = pusht.step(np.array([[200.0, 100.0], [256.0, 420.0]]))
    assert states[0, 0] == pytest.approx(200.0, abs=5.0) and states[0, 1] == 100.0
    np.testing.assert_array_equal(states[0, 2:], start[0, 2:])  # block untouched
    assert states[1, 3] > start[1, 3] + 20  # the block was pushed +y


def test_pusht_render_shows_the_state(pusht):
    images = pusht.render(PUSHT_STATES)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert images.std() > 10 and not np.array_equal(images[0], images[1])
    np.testing.assert_array_equal(pusht.reset_to(PUSHT_STATES), images)


def test_pusht_success_is_dino_wm_rule(pusht):
    goal = np.array([[200.0, 200.0, 300.0, 300.0, 0.05]])

    def moved(dx: float = 0.0, dangle: float = 0.0):
        return goal + [[dx, 0.0, 0.0, 0.0, dangle]]

    assert pusht.success(goal, goal).item()
    assert pusht.success(moved(dx=19.0), goal).item()
    assert not pusht.success(moved(dx=21.0), goal).item()
    block_and_agent = goal + [[12.0, 0.0, 0.0, 12.0, 0.0]]  # joint norm 17.0 < 20
    assert pusht.success(block_and_agent, goal).item()
    assert pusht.distance(block_and_agent, goal).item() == pytest.approx(math.hypot(12, 12))
    assert pusht.success(moved(dangle=math.pi / 9 - 0.01), goal).item()
    assert not pusht.success(moved(dangle=math.pi / 9 + 0.01), goal).item()
    wrapped = goal.copy()
    wrapped[0, 4] = 2 * math.pi - 0.05  # 0.1 rad from the goal across 0
    assert pusht.success(wrapped, goal).item()
    assert not pusht.success(np.array([[50.0, 50.0, 400.0, 100.0, 2.0]]), goal).item()


def test_pusht_batched_execute_equals_one_at_a_time(pusht):
    plans = random_plans(pusht, 3, 10, seed=0)
    batch = pusht.execute(PUSHT_STATES, PUSHT_STATES[::-1].copy(), plans)
    assert batch.states.shape == (3, 11, 5)
    for i in reversed(range(3)):
        alone = pusht.execute(
            PUSHT_STATES[i : i + 1], PUSHT_STATES[2 - i : 3 - i], plans[i : i + 1]
        )
        np.testing.assert_array_equal(alone.states[0], batch.states[i])
        np.testing.assert_array_equal(alone.success[0], batch.success[i])


def test_pusht_two_workers_equal_one(pusht):
    plans = random_plans(pusht, 3, 6, seed=2)
    one = pusht.execute(PUSHT_STATES, PUSHT_STATES, plans)
    with make_sim("pusht", workers=2) as sim:
        two = sim.execute(PUSHT_STATES, PUSHT_STATES, plans)
        np.testing.assert_array_equal(two.states, one.states)
        np.testing.assert_array_equal(sim.render(PUSHT_STATES), pusht.render(PUSHT_STATES))
        np.testing.assert_array_equal(  # step continues from the final states in the workers
            sim.step(plans[:, -1]), pusht.step(plans[:, -1])
        )
        with pytest.raises(ValueError, match="outside the bounds"):
            sim.step(np.full((3, 2), 600.0))


def test_pusht_step_before_any_reset_is_refused(pusht_mod):
    with pusht_mod.make() as sim:
        with pytest.raises(ValueError, match="no live simulators"):
            sim.step(np.zeros((1, 2)))


# ---------------------------------------------------------------- the generic adapter


def test_gym_adapter_refuses_an_env_without_a_way_to_reset_to_a_state(pusht_mod):
    fields = dict(
        name="pusht-broken",
        make_env=pusht_mod.make_env,
        get_state=pusht_mod.get_state,
        distance=pusht_mod.distance,
        success=pusht_mod.success,
    )
    with pytest.raises(ValueError, match="no way to reset to a given state"):
        GymSpec(set_state=None, **fields)

    def ignores_state(env, state):
        env.reset()

    with pytest.raises(ValueError, match="set_state does not reset the env to a given state"):
        GymSimulator(GymSpec(set_state=ignores_state, **fields))


def test_gym_adapter_wraps_a_plain_gymnasium_env():
    gym = pytest.importorskip("gymnasium", reason=REASON)

    def make_env():
        return gym.make("Pendulum-v1")

    def get_state(env):
        return np.array(env.unwrapped.state, dtype=np.float64)

    def set_state(env, state):
        env.unwrapped.state = np.array(state, dtype=np.float64)

    def distance(states, goals):
        return np.abs(states[..., 0] - goals[..., 0])

    def success(states, goals):
        return distance(states, goals) < 0.1

    spec = GymSpec("pendulum", make_env, get_state, set_state, distance, success)
    with GymSimulator(spec) as sim:
        start = np.array([[0.5, 0.0], [-1.0, 1.0]])
        plans = np.array([[[2.0], [2.0], [-2.0]], [[0.0], [1.0], [-1.0]]])
        out = sim.execute(start, np.zeros((2, 2)), plans)
        reference = make_env()
        reference.reset(seed=0)
        for i in range(2):
            set_state(reference, start[i])
            for t in range(3):
                reference.step(plans[i, t].astype(np.float32))
                np.testing.assert_allclose(out.states[i, t + 1], get_state(reference))
        with pytest.raises(ValueError, match="outside the bounds"):
            sim.execute(start, start, np.full((2, 1, 1), 2.5))

    def make_discrete():
        return gym.make("CartPole-v1")

    with pytest.raises(ValueError, match="1-D Box"):
        GymSimulator(GymSpec("cartpole", make_discrete, get_state, set_state, distance, distance))
