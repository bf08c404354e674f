"""``ballnav``: a point in a square arena among disc obstacles that form two staggered barriers.

The default layout puts a barrier of overlapping discs at ``x = -1.5`` with two gaps (near
``y = +-2.9``) and one at ``x = +1.5`` with a single gap (near ``y = 0``): straight lines between
the left and right halves are blocked, and the bumpy, concave barrier faces are greedy local
minima. State ``(x, y)``; action a displacement ``(dx, dy)`` in ``[-1, 1]^2``, times
``max_step`` and with its norm capped at ``max_step`` (a speed limit).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from torch import Tensor

from grasplab.envs.configs import BallNavConfig
from grasplab.envs.geometry import (
    capped,
    disc_vertices,
    grid_geodesics,
    paint,
    pixel_centres,
    points_free,
    project_discs,
)
from grasplab.envs.planar import Layout, PlanarEnv


def default_config() -> BallNavConfig:
    """The default :class:`BallNavConfig`."""
    return BallNavConfig()


@functools.lru_cache(maxsize=8)
def build_layout(config: BallNavConfig) -> Layout:
    """The static geometry, geodesics and background of ``config`` (cached)."""
    half, r = config.arena_half, config.agent_radius
    lo, hi = np.full(2, -half + r), np.full(2, half - r)
    raw = np.asarray(config.obstacles, dtype=np.float64).reshape(-1, 3)
    discs = raw + np.array([0.0, 0.0, r])
    eps = 2e-6 * 2 * half
    vertices = disc_vertices(discs, lo, hi, tol=eps)

    def free(points: np.ndarray) -> np.ndarray:
        return points_free(points, lo=lo, hi=hi, discs=discs, tol=eps)

    view = (-half, half, -half, half)
    pixels = pixel_centres(view, config.image_size)
    background = paint(~points_free(pixels, lo=np.full(2, -half), hi=np.full(2, half), discs=raw))
    return Layout(
        arena_lo=lo,
        arena_hi=hi,
        view=view,
        background=background,
        geo=grid_geodesics(free, np.full(2, -half), np.full(2, half), config.grid_cell),
        discs=discs,
        vertices=vertices,
        eps=eps,
    )


def _substeps(config: BallNavConfig, discs: np.ndarray) -> int:
    """Sub-steps per step so that no sub-step can cross half of the thinnest obstacle part."""
    thin = [float(d[2]) for d in discs]
    for i in range(len(discs)):
        for j in range(i + 1, len(discs)):
            gap = math.dist(discs[i, :2], discs[j, :2])
            ri, rj = discs[i, 2], discs[j, 2]
            if abs(ri - rj) < gap < ri + rj:
                along = (ri**2 - rj**2 + gap**2) / (2 * gap)
                thin.append(math.sqrt(max(ri**2 - along**2, 1e-12)))
    return max(1, math.ceil(config.max_step / (0.5 * min(thin, default=math.inf))))


class BallNavEnv(PlanarEnv):
    """A point among disc obstacles, moved by bounded displacements (see the module docstring).

    Collisions push the point radially out of the (agent-inflated) discs, to the nearest free
    corner where discs overlap, and clamp it into the arena; steps are sub-divided when one could
    cross half of the thinnest obstacle part.

    Args:
        config: A validated :class:`BallNavConfig`.
    """

    name = "ballnav"
    state_dim = 2

    def __init__(self, config: BallNavConfig) -> None:
        self.config = config
        self.layout = build_layout(config)
        self.substeps = _substeps(config, self.layout.discs)
        half = config.arena_half
        super().__init__([0.0, 0.0], [half, half])

    def _advance(self, state: Tensor, action: Tensor) -> Tensor:
        """``substeps`` moves of ``max_step * capped(action) / substeps``, each projected free."""
        delta = capped(action) * (self.config.max_step / self.substeps)
        pos = state
        for _ in range(self.substeps):
            pos = self._project(pos + delta)
        return pos

    def _project(self, pos: Tensor) -> Tensor:
        """Nearest free points ``(..., 2)``."""
        return project_discs(
            pos,
            self.const("discs", pos),
            self.const("vertices", pos),
            self.const("arena_lo", pos),
            self.const("arena_hi", pos),
            self.layout.eps,
        )

    def _settle(self, pos: Tensor, offset: Tensor) -> Tensor:
        """Free points near ``pos + offset``."""
        return self._project(pos + offset)

    def min_steps_for(self, length: Tensor) -> Tensor:
        """``ceil((length - success_radius) / max_step)``, at least 0."""
        reach = (length - self.config.success_radius).clamp(min=0.0)
        return (reach / self.config.max_step).ceil()
