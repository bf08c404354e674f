"""Push-T from gym-pusht (pymunk) as a :class:`~grasplab.envs.sim.Simulator`.

``gym_pusht/PushT-v0`` (the ``sims`` extra). State ``(agent x, agent y, block x, block y, block
angle)`` in pixels of the 512x512 table and radians, the angle in ``[0, 2 pi)`` as gym-pusht
reports it; action: the agent's target position ``(A = 2)`` in ``[0, 512]``, tracked by a PD
controller for 0.1 s per env step.

Success is DINO-WM's rule (``PushTWrapper.eval_state``): the position error, the Euclidean norm
of ``(agent xy, block xy) - goal``, is below 20 and the wrapped angle error is below ``pi / 9``.
:meth:`distance` is that position error.

Reset to a state: gym-pusht's ``reset(options={"reset_to_state": ...})``, which sets the block's
position before its angle (rotating it about its centre of gravity, so the block would land
elsewhere than asked); the position handed to it is pre-compensated so that the block lands
exactly at the given pose. The env runs one 0.01 s physics step after placing the bodies, as
gym-pusht always does. Velocities are not part of the state (as in gym-pusht's state and in
DINO-WM's goals): a reset puts the agent at rest, while ``step`` keeps the live agent's
momentum, so continue an episode with ``step`` rather than resetting to its last state.

Images: 64x64 from gym-pusht's observation renderer (``obs_type="pixels"``), never from
``render()``, which crashes below 96 px after a step. They also show gym-pusht's fixed green
target zone, which is not the simulator's goal.
"""

from __future__ import annotations

import functools
import math
import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before gym_pusht imports pygame

import gym_pusht  # noqa: E402, F401  (registers gym_pusht/PushT-v0)
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from grasplab.envs.gym_sim import GymSimulator, GymSpec  # noqa: E402

ENV_ID = "gym_pusht/PushT-v0"
SUCCESS_POSITION = 20.0
"""DINO-WM's bound on the position error (pixels)."""
SUCCESS_ANGLE = math.pi / 9
"""DINO-WM's bound on the block's angle error (radians)."""


def make_env(image_size: int | None = None) -> gym.Env:
    """One unwrapped Push-T env: state observations, or ``image_size`` pixel ones."""
    if image_size:
        kwargs = {"obs_type": "pixels", "observation_width": image_size}
        kwargs["observation_height"] = image_size
    else:
        kwargs = {"obs_type": "state"}
    env = gym.make(ENV_ID, disable_env_checker=True, **kwargs).unwrapped
    env.reset(seed=0)
    return env


def get_state(env: gym.Env) -> np.ndarray:
    """``(agent x, agent y, block x, block y, block angle in [0, 2 pi))``."""
    agent, block = env.agent.position, env.block.position
    return np.array([agent[0], agent[1], block[0], block[1], env.block.angle % (2 * math.pi)])


def set_state(env: gym.Env, state: np.ndarray) -> None:
    """Put the agent and block at ``state (5,)``, at rest (see the module's docstring)."""
    angle = float(state[4])
    cog = np.array(env.block.center_of_gravity)
    c, s = math.cos(angle), math.sin(angle)
    turned = np.array([c * cog[0] - s * cog[1], s * cog[0] + c * cog[1]])
    position = np.asarray(state[2:4], np.float64) - cog + turned
    env.reset(options={"reset_to_state": np.array([state[0], state[1], *position, angle])})


def observe(env: gym.Env) -> np.ndarray:
    """The pixel env's current observation ``(H, W, 3)`` uint8."""
    return env.get_obs()


def distance(states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """DINO-WM's position error ``(...)``: ``||(agent xy, block xy) - goal||``, pixels."""
    return np.linalg.norm(states[..., :4] - goals[..., :4], axis=-1)


def angle_error(states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Block angle error wrapped into ``[0, pi]`` ``(...)``."""
    return np.abs((states[..., 4] - goals[..., 4] + math.pi) % (2 * math.pi) - math.pi)


def success(states: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """DINO-WM's rule: position error < 20 and angle error < pi / 9, bool ``(...)``."""
    return (distance(states, goals) < SUCCESS_POSITION) & (
        angle_error(states, goals) < SUCCESS_ANGLE
    )


def spec(*, action_block: int = 1, image_size: int = 64) -> GymSpec:
    """The Push-T :class:`GymSpec`."""
    return GymSpec(
        name="pusht",
        make_env=make_env,
        get_state=get_state,
        set_state=set_state,
        distance=distance,
        success=success,
        make_render_env=functools.partial(make_env, image_size),
        observe=observe,
        action_block=action_block,
        image_size=image_size,
        state_atol=1e-6,
    )


def make(*, workers: int = 1, action_block: int = 1, image_size: int = 64) -> GymSimulator:
    """A Push-T simulator; ``workers`` processes shard each batch."""
    return GymSimulator(spec(action_block=action_block, image_size=image_size), workers=workers)
