"""``wall``: DINO-WM's Wall-Single geometry, two rooms joined by one door.

A ``size x size`` world in pixel units (64 by default) with a vertical wall ``wall_lo <= x <=
wall_hi`` in the middle and one door (a gap of ``door_width`` centred on ``door_y``). State
``(x, y)``; action a displacement in ``[-1, 1]^2`` times ``max_step`` px, its norm capped at
``max_step``. Tasks always start in one room and end in the other.
"""

from __future__ import annotations

import functools

import numpy as np
from torch import Tensor

from grasplab.envs.configs import WallConfig
from grasplab.envs.geometry import capped, grid_geodesics, paint, pixel_centres, points_free
from grasplab.envs.planar import Layout, PlanarEnv


def default_config() -> WallConfig:
    """The default :class:`WallConfig`."""
    return WallConfig()


def wall_boxes(config: WallConfig, inflate: float) -> tuple[np.ndarray, np.ndarray]:
    """The wall's two pieces (below and above the door) as ``(lo (2, 2), hi (2, 2))``."""
    s, half = config.size, config.door_width / 2
    lo = np.array([[config.wall_lo, -s], [config.wall_lo, config.door_y + half]]) - inflate
    hi = np.array([[config.wall_hi, config.door_y - half], [config.wall_hi, 2 * s]]) + inflate
    return lo, hi


@functools.lru_cache(maxsize=8)
def build_layout(config: WallConfig) -> Layout:
    """The static geometry, geodesics, rooms and background of ``config`` (cached)."""
    s, r = config.size, config.agent_radius
    lo, hi = np.full(2, r), np.full(2, s - r)
    boxes = wall_boxes(config, r)
    eps = 2e-5 * s

    def free(points: np.ndarray) -> np.ndarray:
        return points_free(points, lo=lo, hi=hi, boxes=boxes, tol=eps)

    geo = grid_geodesics(free, np.zeros(2), np.full(2, s), config.grid_cell)
    x = geo.centres[:, 0]
    region = np.where(x < config.wall_lo, 0, np.where(x > config.wall_hi, 1, -1))
    view = (0.0, s, 0.0, s)
    raw = wall_boxes(config, 0.0)
    pixels = pixel_centres(view, config.image_size)
    background = paint(~points_free(pixels, lo=np.zeros(2), hi=np.full(2, s), boxes=raw))
    return Layout(
        arena_lo=lo,
        arena_hi=hi,
        view=view,
        background=background,
        geo=geo,
        region=region,
        boxes=boxes,
        eps=eps,
    )


class WallEnv(PlanarEnv):
    """Two rooms and a door (see the module docstring); walls stop and slide the agent.

    Args:
        config: A validated :class:`WallConfig`.
    """

    name = "wall"
    state_dim = 2

    def __init__(self, config: WallConfig) -> None:
        self.config = config
        self.layout = build_layout(config)
        half = config.size / 2
        super().__init__([half, half], [half, half])

    def _advance(self, state: Tensor, action: Tensor) -> Tensor:
        """Move by ``max_step * capped(action)``: x then y, stopping at walls."""
        return self._settle(state, capped(action) * self.config.max_step)

    def _settle(self, pos: Tensor, offset: Tensor) -> Tensor:
        """Free ``pos`` moved by ``offset`` under collisions."""
        return self.move_among_boxes(pos, offset)[0]

    def min_steps_for(self, length: Tensor) -> Tensor:
        """``ceil((length - success_radius) / max_step)``, at least 0."""
        reach = (length - self.config.success_radius).clamp(min=0.0)
        return (reach / self.config.max_step).ceil()
