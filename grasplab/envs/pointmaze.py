"""``pointmaze``: a damped point mass in D4RL's maze2d layouts.

Layouts are D4RL's character grids (``#`` wall, ``O``/``G`` free) with unit cells. Convention:
the character in row ``i``, column ``j`` is the cell centred at ``(x, y) = (j, i)``, covering
``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` (D4RL's ``qpos`` is ``(i, j)``: ours is transposed so
images show the grid as printed). State ``(x, y, vx, vy)`` with velocities in units/s.

Dynamics per step (semi-implicit Euler, ``dt`` seconds): ``v <- v * (1 - damping * dt) + accel
* capped(a) * dt``; ``v`` is capped at ``max_speed`` in norm; ``p <- p + v * dt`` with the x then y
motion stopped at walls (agent inflated by ``agent_radius``), zeroing the velocity component
into a wall. Defaults: ``dt = 0.1``, ``accel = 8``, ``damping = 1``, ``max_speed = 2``, so
the top speed is 0.2 units per env step, reached from rest in 3 steps (holding it takes a quarter
of full thrust). The medium maze's longest grid geodesic is ~8.8 units (~43 steps), so it supports
horizons up to ~86 env steps; umaze ~54 and large ~152.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from grasplab.envs.configs import LAYOUTS, PointMazeConfig
from grasplab.envs.geometry import capped, grid_geodesics, paint, pixel_centres, points_free
from grasplab.envs.planar import Layout, PlanarEnv


def default_config() -> PointMazeConfig:
    """The default :class:`PointMazeConfig` (medium maze)."""
    return PointMazeConfig()


def maze_boxes(rows: tuple[str, ...], inflate: float) -> tuple[np.ndarray, np.ndarray]:
    """Wall cells merged into horizontal runs: boxes ``(lo (K, 2), hi (K, 2))``."""
    lo, hi = [], []
    for i, row in enumerate(rows):
        j = 0
        while j < len(row):
            if row[j] != "#":
                j += 1
                continue
            start = j
            while j < len(row) and row[j] == "#":
                j += 1
            lo.append([start - 0.5, i - 0.5])
            hi.append([j - 0.5, i + 0.5])
    return np.array(lo) - inflate, np.array(hi) + inflate


@functools.lru_cache(maxsize=8)
def build_layout(config: PointMazeConfig) -> Layout:
    """The static geometry, geodesics and background of ``config`` (cached)."""
    rows = LAYOUTS[config.layout]
    n_rows, n_cols = len(rows), len(rows[0])
    r = config.agent_radius
    lo, hi = np.array([-0.5 + r, -0.5 + r]), np.array([n_cols - 0.5 - r, n_rows - 0.5 - r])
    boxes = maze_boxes(rows, r)
    eps = 2e-5 * max(n_rows, n_cols)

    def free(points: np.ndarray) -> np.ndarray:
        return points_free(points, lo=lo, hi=hi, boxes=boxes, tol=eps)

    cell = 1.0 / config.grid_subdiv
    corner = np.array([n_cols - 0.5, n_rows - 0.5])
    side = max(n_rows, n_cols)
    cx, cy = (n_cols - 1) / 2, (n_rows - 1) / 2
    view = (cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2)
    pixels = pixel_centres(view, config.image_size)
    raw_free = points_free(pixels, lo=np.full(2, -0.5), hi=corner, boxes=maze_boxes(rows, 0.0))
    return Layout(
        arena_lo=lo,
        arena_hi=hi,
        view=view,
        background=paint(~raw_free),
        geo=grid_geodesics(free, np.full(2, -0.5), corner, cell),
        boxes=boxes,
        eps=eps,
    )


class PointMazeEnv(PlanarEnv):
    """A damped, speed-capped point mass in a maze (see the module docstring).

    Args:
        config: A validated :class:`PointMazeConfig`.
    """

    name = "pointmaze"
    state_dim = 4

    def __init__(self, config: PointMazeConfig) -> None:
        self.config = config
        self.layout = build_layout(config)
        rows = LAYOUTS[config.layout]
        n_rows, n_cols = len(rows), len(rows[0])
        self._ramp = _ramp_table(config)
        super().__init__(
            [(n_cols - 1) / 2, (n_rows - 1) / 2, 0.0, 0.0],
            [(n_cols - 2) / 2, (n_rows - 2) / 2, config.max_speed, config.max_speed],
        )

    @property
    def max_step(self) -> float:
        """Top speed per env step, units."""
        return self.config.max_speed * self.config.dt

    def _advance(self, state: Tensor, action: Tensor) -> Tensor:
        """One damped, capped Euler step with wall contacts zeroing the normal velocity."""
        c = self.config
        pos, vel = state[..., :2], state[..., 2:]
        vel = vel * (1.0 - c.damping * c.dt) + capped(action) * (c.accel * c.dt)
        vel = capped(vel, c.max_speed)
        pos, hit = self.move_among_boxes(pos, vel * c.dt)
        vel = torch.where(hit, torch.zeros_like(vel), vel)
        return torch.cat([pos, vel], dim=-1)

    def _settle(self, pos: Tensor, offset: Tensor) -> Tensor:
        """Free ``pos`` moved by ``offset`` under collisions."""
        return self.move_among_boxes(pos, offset)[0]

    def min_steps_for(self, length: Tensor) -> Tensor:
        """Steps to cover ``length - success_radius`` in a straight line at full thrust from rest.

        A lower bound on the steps along a path of that length (turns only slow the mass down).
        """
        reach = (length - self.config.success_radius).clamp(min=0.0)
        table, v_end = self._ramp
        ramp = reach.new_tensor(table)
        within = torch.searchsorted(ramp, reach.contiguous()).to(reach.dtype) + 1.0
        beyond = len(table) + ((reach - float(table[-1])) / (v_end * self.config.dt)).ceil()
        steps = torch.where(reach > float(table[-1]), beyond, within)
        return torch.where(reach > 0, steps, torch.zeros_like(steps))


def _ramp_table(config: PointMazeConfig) -> tuple[np.ndarray, float]:
    """Distances after 1, 2, ... full-thrust steps from rest until the speed settles.

    Returns:
        The cumulative distances ``(K,)`` and the (settled) speed after the last of them.
    """
    decay = 1.0 - config.damping * config.dt
    limit = config.max_speed
    if config.damping > 0:
        limit = min(limit, config.accel / config.damping)
    v, x, table = 0.0, 0.0, []
    while len(table) < 100_000:
        v = min(v * decay + config.accel * config.dt, config.max_speed)
        x += v * config.dt
        table.append(x)
        if v >= limit * (1 - 1e-6):
            break
    return np.asarray(table), max(v, 1e-9)
