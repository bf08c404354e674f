"""PointMaze from gymnasium-robotics (MuJoCo) as a :class:`~grasplab.envs.sim.Simulator`.

``PointMaze_UMaze-v3`` / ``PointMaze_Medium-v3`` (the ``sims`` extra). State ``(x, y, vx, vy)``:
MuJoCo's ``qpos`` and ``qvel`` (maze centred at the origin, unit cells, ``y`` up); action: force
``(A = 2)`` in ``[-1, 1]``; one env step is 0.01 s (the env clips speeds to 5 units/s).
Success is D4RL's rule, ``||xy - goal_xy|| < 0.5`` (the goal's velocity is ignored).

Reset to a state: ``mj_resetData`` (clears MuJoCo's solver warm start, so an episode does not
depend on what its env ran before), ``qpos`` / ``qvel``, ``mj_forward``. Images: 64x64 top-down
views of the whole maze, rendered headless (``MUJOCO_GL=egl`` unless already set; needs the apt
packages libegl1 libegl-mesa0 libgl1-mesa-dri), the env's goal marker hidden so an image
depends on the state alone.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

with contextlib.redirect_stderr(io.StringIO()):  # its import prints an unrelated Adroit notice
    import gymnasium_robotics  # noqa: E402

from grasplab.envs.gym_sim import GymSimulator, GymSpec  # noqa: E402

gym.register_envs(gymnasium_robotics)

ENV_IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3"}
"""Layouts and their Gymnasium ids."""
SUCCESS_RADIUS = 0.5
"""D4RL's success radius on the position, maze units."""


def make_env(layout: str, image_size: int | None = None) -> gym.Env:
    """One unwrapped PointMaze env whose goal never moves; top-down rendering if ``image_size``."""
    kwargs = {"continuing_task": True, "reset_target": False}
    if image_size:
        kwargs.update(render_mode="rgb_array", width=image_size, height=image_size)
    env = gym.make(ENV_IDS[layout], disable_env_checker=True, **kwargs).unwrapped
    env.reset(seed=0)
    if image_size:
        maze = env.maze
        fovy = math.radians(env.model.vis.global_.fovy)
        side = max(maze.map_length, maze.map_width) * maze.maze_size_scaling
        env.point_env.mujoco_renderer.default_cam_config = {
            "distance": side / (2 * math.tan(fovy / 2)) + maze.maze_height,
            "elevation": -90.0,
            "azimuth": 90.0,
            "lookat": np.zeros(3),
        }
        env.model.site_rgba[env.target_site_id, 3] = 0.0
    return env


def get_state(env: gym.Env) -> np.ndarray:
    """``(x, y, vx, vy)`` of the point mass."""
    return np.concatenate([env.data.qpos, env.data.qvel])


def set_state(env: gym.Env, state: np.ndarray) -> None:
    """Put the point mass at ``state (4,)`` with a fresh MuJoCo solver state."""
    model, data = env.model, env.data
    mujoco.mj_resetData(model, data)
    data.qpos[:] = state[:2]
    data.qvel[:] = state[2:4]
    mujoco.mj_forward(model, data)


def observe(env: gym.Env) -> np.ndarray:
    """The render env's current image ``(H, W, 3)`` uint8."""
    return env.render()


def distance(states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Position distance ``(...)`` of ``(..., 4)`` states and goals."""
    return np.linalg.norm(states[..., :2] - goals[..., :2], axis=-1)


def success(states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """D4RL's rule: ``distance < 0.5``, bool ``(...)``."""
    return distance(states, goals) < SUCCESS_RADIUS


def spec(layout: str = "umaze", *, action_block: int = 1, image_size: int = 64) -> GymSpec:
    """The :class:`GymSpec` of a layout (``umaze`` or ``medium``)."""
    if layout not in ENV_IDS:
        raise ValueError(f"pointmaze: layout must be one of {sorted(ENV_IDS)}, got {layout!r}")
    return GymSpec(
        name=f"pointmaze-{layout}",
        make_env=functools.partial(make_env, layout),
        get_state=get_state,
        set_state=set_state,
        distance=distance,
        success=success,
        make_render_env=functools.partial(make_env, layout, image_size),
        observe=observe,
        action_block=action_block,
        image_size=image_size,
    )


def make(
    layout: str = "umaze", *, workers: int = 1, action_block: int = 1, image_size: int = 64
) -> GymSimulator:
    """A PointMaze simulator (see :func:`spec`); ``workers`` processes shard each batch."""
    return GymSimulator(
        spec(layout, action_block=action_block, image_size=image_size), workers=workers
    )
