"""Torch-native planar environments: registry, physics, collisions, tasks, rendering, devices."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from grasplab.envs import Env, default_config, make, names
from grasplab.envs.geometry import AGENT_RGB, OBSTACLE_RGB, path_waypoints
from grasplab.envs.pointmaze import LAYOUTS
from grasplab.envs.policies import waypoint_policy
from grasplab.world_models.oracle import OracleModel

ENVS = [
    ("ballnav", {}),
    ("wall", {}),
    ("pointmaze", {"layout": "umaze"}),
    ("pointmaze", {}),
    ("pointmaze", {"layout": "large"}),
]
IDS = ["ballnav", "wall", "umaze", "medium", "large"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (and thrash on shared CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inside_obstacle(env, pos: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """Independent of the env's code: whether the agent's disc overlaps an obstacle or leaves."""
    c, r = env.config, env.config.agent_radius
    x, y = pos[..., 0], pos[..., 1]
    if env.name == "ballnav":
        bad = (pos.abs() > c.arena_half - r + tol).any(-1)
        for cx, cy, rad in c.obstacles:
            bad |= torch.hypot(x - cx, y - cy) < rad + r - tol
        return bad
    if env.name == "wall":
        bad = ((pos < r - tol) | (pos > c.size - r + tol)).any(-1)
        in_x = (x > c.wall_lo - r + tol) & (x < c.wall_hi + r - tol)
        door_lo, door_hi = c.door_y - c.door_width / 2, c.door_y + c.door_width / 2
        return bad | (in_x & ((y < door_lo + r - tol) | (y > door_hi - r + tol)))
    bad = torch.zeros(pos.shape[:-1], dtype=torch.bool)
    for i, row in enumerate(LAYOUTS[c.layout]):
        for j, ch in enumerate(row):
            if ch == "#":
                bad |= ((x - j).abs() < 0.5 + r - tol) & ((y - i).abs() < 0.5 + r - tol)
    return bad


# ------------------------------------------------------------------------------------------
# Registry and configs
# ------------------------------------------------------------------------------------------


def test_registry_lists_and_builds_every_env():
    assert names() == ["ballnav", "pointmaze", "wall"]
    for name in names():
        cfg = default_config(name)
        assert dataclasses.is_dataclass(cfg)
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.success_radius = 1.0
        env = make(name)
        assert isinstance(env, Env)
        assert env.name == name and env.config == cfg


@pytest.mark.parametrize(
    ("name", "overrides", "needle"),
    [
        ("nope", {}, "'nope'"),
        ("ballnav", {"max_stepp": 1.0}, "max_stepp"),
        ("ballnav", {"max_step": -0.1}, "max_step"),
        ("ballnav", {"obstacles": ((0.0, 0.0, -1.0),)}, "obstacles"),
        ("wall", {"door_width": 1.0}, "door_width"),
        ("wall", {"task_band": (0.9, 0.5)}, "task_band"),
        ("pointmaze", {"layout": "huge"}, "layout"),
        ("pointmaze", {"image_size": 0}, "image_size"),
        ("pointmaze", {"accel": 0.0}, "accel"),
    ],
)
def test_make_errors_name_the_problem(name, overrides, needle):
    with pytest.raises(ValueError, match=needle) as err:
        make(name, **overrides)
    if name == "nope":
        assert "ballnav" in str(err.value) and "pointmaze" in str(err.value)


def test_overrides_apply_and_lists_become_tuples():
    env = make("ballnav", obstacles=[[0.0, 0.0, 1.0]], task_band=[0.4, 0.8], max_step=0.5)
    assert env.config.obstacles == ((0.0, 0.0, 1.0),) and env.config.task_band == (0.4, 0.8)
    hash(env.config)


# ------------------------------------------------------------------------------------------
# Reset and step
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_reset_and_step_shapes(name, kw, lead):
    env = make(name, **kw)
    n = math.prod(lead)
    state = env.reset(gen(), n)
    assert state.shape == (n, env.state_dim) and state.dtype == torch.float32
    assert not inside_obstacle(env, state[:, :2]).any()
    state = state.reshape(*lead, env.state_dim)
    action = torch.rand((*lead, env.action_dim), generator=gen(1)) * 2 - 1
    before = (state.clone(), action.clone())
    nxt = env.step(state, action)
    assert nxt.shape == (*lead, env.state_dim)
    assert torch.equal(state, before[0]) and torch.equal(action, before[1])
    assert env.distance(nxt, state).shape == lead and env.success(nxt, state).dtype == torch.bool
    assert torch.equal(env.reset(gen(), n), env.reset(gen(), n))


@pytest.mark.parametrize(("name", "kw"), ENVS, ids=IDS)
def test_collisions_keep_agents_out_of_obstacles(name, kw):
    env = make(name, **kw)
    g = gen(2)
    state = env.reset(g, 256)
    angle = torch.rand(256, generator=g) * 2 * math.pi
    for t in range(80):
        if t % 20 == 0:
            angle = angle + torch.rand(256, generator=g) * 2.0
        action = torch.stack([angle.cos(), angle.sin()], -1)
        action = action / action.abs().amax(-1, keepdim=True)  # box corners / max actions
        state = env.step(state, action)
        assert not inside_obstacle(env, state[:, :2]).any(), f"step {t}"
    if name == "pointmaze":
        assert state[:, 2:].norm(dim=-1).max() <= env.config.max_speed + 1e-5


@pytest.mark.parametrize(
    ("name", "kw", "start", "push"),
    [
        ("wall", {"max_step": 9.0}, (24.0, 10.0), (1.0, 0.0)),
        ("ballnav", {"max_step": 2.0}, (-3.0, 0.4), (1.0, 0.0)),
        ("pointmaze", {"max_speed": 12.0, "accel": 80.0}, (1.0, 1.0), (1.0, 0.0)),
    ],
)
def test_fast_agents_do_not_tunnel(name, kw, start, push):
    env = make(name, **kw)
    state = env.state_at(torch.tensor([start]))
    for _ in range(20):
        state = env.step(state, torch.tensor([push]))
    assert not inside_obstacle(env, state[:, :2]).any()
    x = float(state[0, 0])
    limit = {"wall": 30.0, "ballnav": -1.5, "pointmaze": 2.5}[name]
    assert x < limit


def test_pointmaze_wall_contact_zeroes_normal_velocity():
    env = make("pointmaze", layout="umaze")
    state = torch.tensor([[3.0, 1.0, 2.0, 0.5]])  # moving right into the east wall
    for _ in range(5):
        state = env.step(state, torch.tensor([[1.0, 0.0]]))
    assert float(state[0, 0]) == pytest.approx(3.4, abs=1e-4)
    assert float(state[0, 2]) == 0.0


def test_step_rejects_bad_inputs():
    env = make("pointmaze")
    state, action = env.reset(gen(), 3), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="state shape"):
        env.step(state[:, :2], action)
    with pytest.raises(ValueError, match="action shape"):
        env.step(state, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="leading dims"):
        env.step(state, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="outside"):
        env.step(state, torch.full((3, 2), 1.01))
    with pytest.raises(ValueError, match="outside"):
        env.step(state, torch.full((3, 2), float("nan")))
    env.step(state, torch.full((3, 2), 1.0 + 5e-7))
    env.step(state, torch.full((3, 2), 3.0), check=False)


# ------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kw"), ENVS, ids=IDS)
def test_sample_tasks_deterministic_banded_and_valid(name, kw):
    env = make(name, **kw)
    horizon = max(4, env.max_horizon() // 2)
    tasks = env.sample_tasks(gen(7), 128, horizon)
    again = env.sample_tasks(gen(7), 128, horizon)
    for a, b in zip(dataclasses.astuple(tasks), dataclasses.astuple(again), strict=True):
        assert torch.equal(a, b)
    assert len(tasks) == 128 and tasks.start.shape == tasks.goal.shape == (128, env.state_dim)
    lo, hi = env.config.task_band
    assert (tasks.min_steps >= lo * horizon).all() and (tasks.min_steps <= hi * horizon).all()
    assert torch.equal(tasks.min_steps, env.min_steps_for(tasks.path_length).long())
    euclid = env.distance(tasks.start, tasks.goal)
    assert (tasks.path_length >= euclid - 1e-4).all()
    assert not inside_obstacle(env, tasks.start[:, :2]).any()
    assert not inside_obstacle(env, tasks.goal[:, :2]).any()
    assert (tasks.goal[:, 2:] == 0).all() and (tasks.start[:, 2:] == 0).all()
    if name == "wall":
        assert ((tasks.start[:, 0] < 32) != (tasks.goal[:, 0] < 32)).all()
    if name == "ballnav":
        detour = tasks.path_length / euclid
        assert (detour >= env.config.min_detour).float().mean() > 0.95


def _rollout_success(env, tasks, steps: int) -> torch.Tensor:
    state, ever = tasks.start, torch.zeros(len(tasks), dtype=torch.bool)
    for _ in range(steps):
        state = env.step(state, waypoint_policy(env, state, tasks.goal))
        ever |= env.success(state, tasks.goal)
    return ever


@pytest.mark.parametrize("length", ["short", "long"])
@pytest.mark.parametrize(("name", "kw"), ENVS, ids=IDS)
def test_tasks_are_reachable_by_the_waypoint_policy(name, kw, length):
    env = make(name, **kw)
    block = 2 if length == "long" else 1
    horizon = 6 if length == "short" else env.max_horizon(block)
    tasks = env.sample_tasks(gen(11), 64, horizon, action_block=block)
    ever = _rollout_success(env, tasks, horizon * block)
    assert ever.float().mean() >= 0.95


@pytest.mark.parametrize(("name", "kw"), ENVS[:3], ids=IDS[:3])
def test_too_long_horizon_names_the_longest_supported(name, kw):
    env = make(name, **kw)
    longest = env.max_horizon(2)
    env.sample_tasks(gen(), 4, longest, action_block=2)
    with pytest.raises(
        ValueError, match=f"longest horizon it supports at action_block=2 is {longest}"
    ):
        env.sample_tasks(gen(), 4, longest + 3, action_block=2)
    with pytest.raises(ValueError, match="too short"):
        env.sample_tasks(gen(), 4, 1)


@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_path_waypoints_follow_free_segments_of_geodesic_length(name, kw):
    env = make(name, **kw)
    tasks = env.sample_tasks(gen(3), 4, env.max_horizon())
    for start, goal, length in zip(tasks.start, tasks.goal, tasks.path_length, strict=True):
        s, g = (int(env.node_of(p[:2])) for p in (start, goal))
        path = torch.as_tensor(path_waypoints(env.layout.geo, s, g), dtype=torch.float32)
        assert len(path) > 2
        assert torch.allclose(path[0], start[:2]) and torch.allclose(path[-1], goal[:2])
        assert float((path[1:] - path[:-1]).norm(dim=-1).sum()) == pytest.approx(float(length))
        t = torch.linspace(0, 1, 50)[:, None, None]
        along = path[:-1] + t * (path[1:] - path[:-1])
        assert not inside_obstacle(env, along).any()


def test_sampling_is_fast_after_the_first_call():
    env = make("ballnav")
    env.sample_tasks(gen(), 8, 40)
    start = time.perf_counter()
    tasks = env.sample_tasks(gen(1), 500, 40)
    assert len(tasks) == 500 and time.perf_counter() - start < 1.0


def test_waypoint_policy_bounds_and_noise():
    env = make("wall")
    tasks = env.sample_tasks(gen(), 32, 20)
    with pytest.raises(ValueError, match="Generator"):
        waypoint_policy(env, tasks.start, tasks.goal, noise=0.5)
    a = waypoint_policy(env, tasks.start, tasks.goal, generator=gen(3), noise=2.0)
    b = waypoint_policy(env, tasks.start, tasks.goal, generator=gen(3), noise=2.0)
    assert torch.equal(a, b) and a.abs().max() <= 1.0 and (a.abs() == 1.0).any()


# ------------------------------------------------------------------------------------------
# Rendering, devices, gradients, oracle
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_render_draws_obstacles_and_agent_where_expected(name, kw):
    env = make(name, **kw)
    state = env.reset(gen(5), 6).reshape(2, 3, env.state_dim)
    img = env.render(state)
    size = env.image_size
    assert img.shape == (2, 3, size, size, 3) and img.dtype == torch.uint8
    xmin, xmax, ymin, ymax = env.layout.view
    for pos, im in zip(state.reshape(6, -1), img.reshape(6, size, size, 3), strict=True):
        col = int((pos[0] - xmin) / (xmax - xmin) * size)
        row = int((pos[1] - ymin) / (ymax - ymin) * size)
        assert im[row, col].tolist() == list(AGENT_RGB)
        agent = (im == torch.tensor(AGENT_RGB, dtype=torch.uint8)).all(-1)
        assert 4 <= int(agent.sum()) <= 60
        assert (im == torch.tensor(OBSTACLE_RGB, dtype=torch.uint8)).all(-1).any()


@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_meta_device(name, kw):
    env = make(name, **kw)
    state = torch.empty(4, 5, env.state_dim, device="meta")
    action = torch.empty(4, 5, env.action_dim, device="meta")
    nxt = env.step(state, action)
    assert nxt.device.type == "meta" and nxt.shape == state.shape
    assert env.success(nxt, state).shape == (4, 5)
    assert env.render(nxt).shape == (4, 5, env.image_size, env.image_size, 3)
    with pytest.raises(ValueError):
        env.step(state, action[..., :1])


@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_gradients_flow_to_action_and_state_in_free_space(name, kw):
    env = make(name, **kw)
    tasks = env.sample_tasks(gen(), 8, 10)
    state = tasks.start.clone().requires_grad_()
    action = torch.full((8, 2), 0.05, requires_grad=True)
    out = env.step(env.step(state, action), action)
    (out[:, :2].square().sum() + env.distance(out, tasks.goal).sum()).backward()
    assert torch.isfinite(action.grad).all() and (action.grad.abs().sum(-1) > 0).all()
    assert torch.isfinite(state.grad).all() and (state.grad.abs().sum(-1) > 0).all()


@pytest.mark.parametrize(("name", "kw"), ENVS[:4], ids=IDS[:4])
def test_oracle_model_unit_scale(name, kw):
    env = make(name, **kw)
    model = OracleModel(env, action_block=3)
    state = env.reset(gen(), 64)
    z = model.encode(state)
    assert z[:, :2].abs().max() <= 1.05
    z1 = model.step(z, torch.rand(64, 6, generator=gen(1)) * 2 - 1)
    assert z1.shape == z.shape
    assert not inside_obstacle(env, model.decode(z1)[:, :2]).any()


def test_names_moved_out_of_geometry_name_their_new_home():
    from grasplab.envs import planar

    with pytest.raises(ImportError, match="moved to grasplab.envs.planar.PlanarEnv"):
        from grasplab.envs.geometry import PlanarEnv  # noqa: F401
    assert planar.PlanarEnv.__module__ == "grasplab.envs.planar"
