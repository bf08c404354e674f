"""Scripted goal-reaching behaviour for the planar environments.

:func:`waypoint_policy` follows the occupancy grid's shortest path toward the goal, aiming at the
node a few hops ahead (the goal itself once it is that close). Tests use it to show that sampled
tasks are reachable; with ``noise`` it is a data-collection behaviour policy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grasplab.envs.geometry import capped
from grasplab.envs.planar import PlanarEnv
from grasplab.envs.pointmaze import PointMazeEnv


def waypoint_target(
    env: PlanarEnv, pos: Tensor, goal_pos: Tensor, lookahead: int = 3
) -> tuple[Tensor, Tensor]:
    """The point to steer at: the farthest visible of the next path waypoints.

    Waypoints are the grid nodes 1..``lookahead`` hops along the shortest path from the agent's
    node (the goal position itself in place of the goal's node); the farthest one the agent sees
    along a straight, free segment wins, else the agent's own node centre.

    Args:
        env: A planar environment (``ballnav``, ``wall``, ``pointmaze``).
        pos: Agent positions ``(..., 2)``.
        goal_pos: Goal positions ``(..., 2)``.
        lookahead: Most grid hops ahead (>= 1).

    Returns:
        Targets ``(..., 2)`` and a boolean ``(...)`` that is true where the target is the goal.
    """
    node, goal_node = env.node_of(pos), env.node_of(goal_pos)
    next_hop, centres = env.const("next_hop", pos), env.const("centres", pos)
    hops, way = [node], node
    for _ in range(lookahead):
        way = next_hop[goal_node, way]
        hops.append(way)
    hops_t = torch.stack(hops, dim=-1)
    is_goal = hops_t == goal_node.unsqueeze(-1)
    points = torch.where(is_goal.unsqueeze(-1), goal_pos.unsqueeze(-2), centres[hops_t])
    seen = _visible(env, pos.unsqueeze(-2), points)
    seen[..., 0] = True
    best = (torch.arange(lookahead + 1, device=pos.device) * seen).argmax(-1, keepdim=True)
    target = points.gather(-2, best.unsqueeze(-1).expand(*pos.shape[:-1], 1, 2)).squeeze(-2)
    return target, is_goal.gather(-1, best).squeeze(-1)


def _visible(env: PlanarEnv, start: Tensor, end: Tensor, samples: int = 9) -> Tensor:
    """Whether the segments ``start -> end`` ``(..., K, 2)`` stay free: boolean ``(..., K)``."""
    t = torch.linspace(0.0, 1.0, samples, device=start.device, dtype=start.dtype)
    points = start.unsqueeze(-2) + (end - start).unsqueeze(-2) * t.unsqueeze(-1)
    return env.is_free(points, tol=env.layout.eps * 10).all(-1)


def waypoint_policy(
    env: PlanarEnv,
    state: Tensor,
    goal: Tensor,
    generator: torch.Generator | None = None,
    noise: float = 0.0,
    lookahead: int = 3,
) -> Tensor:
    """Actions ``(..., A_env)`` that drive ``state`` toward ``goal`` along the grid geodesic.

    Displacement envs move straight at the target (:func:`waypoint_target`) at full speed, exactly
    onto it when closer. ``pointmaze`` tracks a desired velocity with a saturated PD law on
    position and velocity: full speed toward an intermediate waypoint (walls absorb the normal
    velocity at corners), ``kp * (goal - p)`` capped at the top speed toward the goal itself.
    Gaussian noise is added, then actions are clamped to the bounds.

    Args:
        env: A planar environment from :func:`grasplab.envs.make`.
        state: States ``(..., S)``.
        goal: Goal states ``(..., S)`` (positions used).
        generator: Source of the noise; required when ``noise > 0``.
        noise: Standard deviation of the noise on each action component.
        lookahead: Most grid hops ahead to aim at.

    Returns:
        Actions ``(..., A_env)`` within ``[env.action_low, env.action_high]``.
    """
    if noise > 0 and generator is None:
        raise ValueError("waypoint_policy: noise > 0 needs a torch.Generator")
    state, goal = state.detach(), goal.detach()
    pos = state[..., :2]
    target, is_goal = waypoint_target(env, pos, goal[..., :2], lookahead)
    if isinstance(env, PointMazeEnv):
        action = _track(env, state, target, is_goal)
    else:
        action = capped((target - pos) / env.config.max_step)
    if noise > 0:
        action = action + noise * torch.randn(
            action.shape, generator=generator, device=action.device, dtype=action.dtype
        )
    low, high = env.action_low.to(action), env.action_high.to(action)
    return torch.maximum(torch.minimum(action, high), low)


def _track(
    env: PointMazeEnv, state: Tensor, target: Tensor, is_goal: Tensor, kp: float = 4.0
) -> Tensor:
    """Thrust ``(..., 2)`` toward the desired velocity for ``target`` (see the policy)."""
    c = env.config
    offset = target - state[..., :2]
    cruise = capped(offset * 1e6, c.max_speed)
    desired = torch.where(is_goal.unsqueeze(-1), capped(kp * offset, c.max_speed), cruise)
    coast = state[..., 2:] * (1.0 - c.damping * c.dt)
    return capped((desired - coast) / (c.accel * c.dt))
