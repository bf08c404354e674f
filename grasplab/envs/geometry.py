"""Geometry shared by the planar environments: collisions, geodesics, rasterising, task sampling.

Conventions: positions are ``(x, y)`` in the environment's units. Obstacles handed to the
collision functions are already *inflated* by the agent's radius, so the agent is a point in
configuration space. Occupancy grids index cells ``(row, col)`` with row along ``y`` and column
along ``x``: cell ``(r, c)`` has centre ``origin + ((c + 0.5) * cell, (r + 0.5) * cell)``. Images
use the same orientation: pixel row grows with ``y``, pixel column with ``x``.

The environments built on this maths (:class:`~grasplab.envs.planar.PlanarEnv`, their layouts
and config checks) live in :mod:`grasplab.envs.planar`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from torch import Tensor

from grasplab.moved import moved_names

FLOOR_RGB = (236, 236, 228)
"""Colour of free space in :meth:`grasplab.envs.planar.PlanarEnv.render`."""
OBSTACLE_RGB = (64, 72, 96)
"""Colour of walls and obstacles."""
AGENT_RGB = (220, 40, 40)
"""Colour of the agent's disc."""


# --------------------------------------------------------------------------------------------
# Collisions (torch, differentiable almost everywhere, batched over any leading dims)
# --------------------------------------------------------------------------------------------


def _sweep_axis(
    a0: Tensor, a1: Tensor, b: Tensor, box: tuple[Tensor, Tensor, Tensor, Tensor], eps: float
) -> tuple[Tensor, Tensor]:
    """Move along one axis from ``a0`` to ``a1`` at cross coordinate ``b``, stopping at boxes.

    Args:
        a0: Start coordinates ``(...)`` on the moving axis.
        a1: Proposed end coordinates ``(...)``.
        b: Coordinates ``(...)`` on the other axis (fixed during this sweep).
        box: ``(a_lo, a_hi, b_lo, b_hi)``, each ``(K,)``: box extents on both axes.
        eps: Tolerance for points lying on a face (float round-off).

    Returns:
        The end coordinates ``(...)`` (the free side of the first face crossed) and a boolean
        ``(...)`` that is true where a face (or the arena, see :func:`resolve_boxes`) stopped it.
    """
    a_lo, a_hi, b_lo, b_hi = box
    a0k, a1k, bk = a0.unsqueeze(-1), a1.unsqueeze(-1), b.unsqueeze(-1)
    across = (bk > b_lo + eps) & (bk < b_hi - eps)
    from_low = across & (a0k <= a_lo + eps) & (a1k > a_lo)
    from_high = across & (a0k >= a_hi - eps) & (a1k < a_hi)
    inf = a1.new_tensor(math.inf)
    upper = torch.where(from_low, a_lo, inf).amin(-1)
    lower = torch.where(from_high, a_hi, -inf).amax(-1)
    out = torch.minimum(torch.maximum(a1, lower), upper)
    return out, (a1 > upper) | (a1 < lower)


def resolve_boxes(
    pos: Tensor,
    delta: Tensor,
    lo: Tensor,
    hi: Tensor,
    arena_lo: Tensor,
    arena_hi: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Move points by ``delta`` among axis-aligned boxes: the x motion first, then the y motion.

    Each axis is swept as a segment, so no step can tunnel through a box however thin; a point
    stops on the free side of the first face it would cross and slides along it on the other axis.
    The result is differentiable in ``pos`` and ``delta`` except on the measure-zero contact set
    (a blocked axis has zero gradient).

    Args:
        pos: Free start points ``(..., 2)``.
        delta: Displacements ``(..., 2)``.
        lo: Inflated box lower corners ``(K, 2)``, ``K >= 1``.
        hi: Inflated box upper corners ``(K, 2)``.
        arena_lo: Lower corner ``(2,)`` of the region the point must stay in.
        arena_hi: Upper corner ``(2,)`` of that region.
        eps: Contact tolerance (absorbs float round-off of points lying on a face).

    Returns:
        New points ``(..., 2)`` and a boolean ``(..., 2)`` marking the axes that hit something.
    """
    x1 = pos[..., 0] + delta[..., 0]
    box_x = (lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1])
    x, hit_x = _sweep_axis(pos[..., 0], x1, pos[..., 1], box_x, eps)
    x_c = x.clamp(arena_lo[0], arena_hi[0])
    y1 = pos[..., 1] + delta[..., 1]
    y, hit_y = _sweep_axis(pos[..., 1], y1, x_c, (lo[:, 1], hi[:, 1], lo[:, 0], hi[:, 0]), eps)
    y_c = y.clamp(arena_lo[1], arena_hi[1])
    hit = torch.stack([hit_x | (x_c != x), hit_y | (y_c != y)], dim=-1)
    return torch.stack([x_c, y_c], dim=-1), hit


def project_discs(
    pos: Tensor, discs: Tensor, vertices: Tensor, arena_lo: Tensor, arena_hi: Tensor, tol: float
) -> Tensor:
    """The nearest free point to ``pos`` outside (possibly overlapping) discs, inside the arena.

    Candidates are the point clamped into the arena, its radial projection onto every disc and
    the free corners of the free set (disc/disc and disc/arena intersections, precomputed by
    :func:`disc_vertices`); the nearest free candidate wins. Where ``pos`` is free this is the
    identity. Differentiable: radial push-out almost everywhere, constant at corners.

    Args:
        pos: Points ``(..., 2)``.
        discs: Inflated discs ``(C, 3)`` as ``(cx, cy, radius)``, ``C >= 1``.
        vertices: Free corners ``(V, 2)``.
        arena_lo: Lower corner ``(2,)`` of the arena.
        arena_hi: Upper corner ``(2,)``.
        tol: Tolerance of the freeness test (points on a boundary are free).

    Returns:
        Free points ``(..., 2)``.
    """
    centres, radii = discs[:, :2], discs[:, 2]
    if pos.device.type == "meta":
        return _project_all(pos, centres, radii, vertices, arena_lo, arena_hi, tol)
    # Fast path: only points inside a disc or outside the arena move; gather just those.
    gap = (pos.unsqueeze(-2) - centres).square().sum(-1).sqrt() - radii
    outside = ((pos < arena_lo - tol) | (pos > arena_hi + tol)).any(-1)
    needs = ((gap < -tol).any(-1) | outside).reshape(-1)
    rows = needs.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return pos
    flat = pos.reshape(-1, 2)
    moved = _project_all(flat[rows], centres, radii, vertices, arena_lo, arena_hi, tol)
    return flat.index_put((rows,), moved).reshape(pos.shape)


def _project_all(
    pos: Tensor,
    centres: Tensor,
    radii: Tensor,
    vertices: Tensor,
    arena_lo: Tensor,
    arena_hi: Tensor,
    tol: float,
) -> Tensor:
    """:func:`project_discs` for every point, without the fast path (shape-static)."""
    offset = pos.unsqueeze(-2) - centres
    norm = (offset.square().sum(-1) + 1e-12).sqrt()
    radial = centres + offset * (radii / norm).unsqueeze(-1)
    clamped = torch.maximum(torch.minimum(pos, arena_hi), arena_lo).unsqueeze(-2)
    cand = torch.cat([clamped, radial], dim=-2)  # (..., 1 + C, 2): freeness to be checked
    gap = (cand.unsqueeze(-2) - centres).square().sum(-1).sqrt() - radii
    inside_arena = ((cand >= arena_lo - tol) & (cand <= arena_hi + tol)).all(-1)
    free = (gap >= -tol).all(-1) & inside_arena
    cost = torch.where(free, (cand - pos.unsqueeze(-2)).square().sum(-1), pos.new_tensor(math.inf))
    # The corners are free by construction (precomputed): only their distance matters.
    corners = vertices.expand(*pos.shape[:-1], *vertices.shape)
    cand = torch.cat([cand, corners], dim=-2)
    cost = torch.cat([cost, (corners - pos.unsqueeze(-2)).square().sum(-1)], dim=-1)
    best = cost.argmin(-1, keepdim=True).unsqueeze(-1).expand(*pos.shape[:-1], 1, 2)
    return cand.gather(-2, best).squeeze(-2)


def disc_vertices(discs: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float) -> np.ndarray:
    """Corners of the free set ``arena minus discs``: the candidates :func:`project_discs` needs.

    Args:
        discs: Inflated discs ``(C, 3)``.
        lo: Arena lower corner ``(2,)``.
        hi: Arena upper corner ``(2,)``.
        tol: Freeness tolerance.

    Returns:
        Free corner points ``(V, 2)`` (disc/disc, disc/arena-edge and arena corners).
    """
    pts = [np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])]
    for i in range(len(discs)):
        for j in range(i + 1, len(discs)):
            pts.append(_circle_intersections(discs[i], discs[j]))
        for axis in (0, 1):
            for value in (lo[axis], hi[axis]):
                pts.append(_circle_line(discs[i], axis, value))
    cand = np.concatenate([p.reshape(-1, 2) for p in pts])
    return cand[points_free(cand, discs=discs, lo=lo, hi=hi, tol=tol)]


def _circle_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection points ``(0..2, 2)`` of the circles ``a``, ``b`` given as ``(cx, cy, r)``."""
    d = math.hypot(b[0] - a[0], b[1] - a[1])
    if d == 0 or d >= a[2] + b[2] or d <= abs(a[2] - b[2]):
        return np.zeros((0, 2))
    along = (a[2] ** 2 - b[2] ** 2 + d**2) / (2 * d)
    half = math.sqrt(max(a[2] ** 2 - along**2, 0.0))
    u = (b[:2] - a[:2]) / d
    mid = a[:2] + along * u
    perp = np.array([-u[1], u[0]])
    return np.stack([mid + half * perp, mid - half * perp])


def _circle_line(c: np.ndarray, axis: int, value: float) -> np.ndarray:
    """Intersections ``(0..2, 2)`` of circle ``c`` with the line ``coord[axis] == value``."""
    off = value - c[axis]
    if abs(off) >= c[2]:
        return np.zeros((0, 2))
    half = math.sqrt(c[2] ** 2 - off**2)
    other = c[1 - axis]
    pts = np.zeros((2, 2))
    pts[:, axis] = value
    pts[:, 1 - axis] = [other - half, other + half]
    return pts


def points_free(
    points: np.ndarray,
    *,
    lo: np.ndarray,
    hi: np.ndarray,
    boxes: tuple[np.ndarray, np.ndarray] | None = None,
    discs: np.ndarray | None = None,
    tol: float = 0.0,
) -> np.ndarray:
    """Whether points are free, numpy (obstacles are open sets, so boundaries are free).

    Args:
        points: Points ``(..., 2)``.
        lo: Arena lower corner ``(2,)``.
        hi: Arena upper corner ``(2,)``.
        boxes: Optional ``(lo (K, 2), hi (K, 2))`` obstacle boxes.
        discs: Optional ``(C, 3)`` obstacle discs.
        tol: Tolerance added in favour of freeness.

    Returns:
        Boolean ``(...)``.
    """
    free = np.all((points >= lo - tol) & (points <= hi + tol), axis=-1)
    p = points[..., None, :]
    if boxes is not None and len(boxes[0]):
        inside = np.all((p > boxes[0] + tol) & (p < boxes[1] - tol), axis=-1)
        free &= ~inside.any(-1)
    if discs is not None and len(discs):
        dist = np.linalg.norm(p - discs[:, :2], axis=-1)
        free &= ~(dist < discs[:, 2] - tol).any(-1)
    return free


# --------------------------------------------------------------------------------------------
# Occupancy grid and geodesics
# --------------------------------------------------------------------------------------------

# (drow, dcol) of the grid moves, one per undirected pair: king and knight moves (16-connected),
# so grid paths overestimate free-space distances by at most ~2.7 %.
_MOVES = ((0, 1), (1, 0), (1, 1), (1, -1), (1, 2), (2, 1), (1, -2), (2, -1))
_EDGE_SAMPLES = 17


@dataclass(frozen=True, eq=False)
class Geodesics:
    """All-pairs shortest paths on an occupancy grid's free cells (the graph's nodes).

    Attributes:
        origin: World position ``(2,)`` of the grid's lower corner.
        cell: Cell side, env units.
        shape: ``(rows, cols)``.
        centres: Node (free cell) centres ``(N, 2)``.
        node_of_cell: Nearest node of every grid cell, row-major ``(rows * cols,)``.
        dist: Shortest-path lengths ``(N, N)`` float32, env units (``inf`` when disconnected).
        next_hop: ``next_hop[g, c]`` is the node after ``c`` on a shortest path to ``g``
            ``(N, N)`` int64 (``c`` itself when ``c == g`` or ``g`` is unreachable).
    """

    origin: np.ndarray
    cell: float
    shape: tuple[int, int]
    centres: np.ndarray
    node_of_cell: np.ndarray
    dist: np.ndarray
    next_hop: np.ndarray

    @property
    def diameter(self) -> float:
        """Longest finite shortest path, env units."""
        return float(self.dist[np.isfinite(self.dist)].max())


def grid_geodesics(
    free_fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, cell: float
) -> Geodesics:
    """Shortest paths between all free cells of a grid over ``[lo, hi]`` (``scipy.csgraph``).

    Nodes are the cells whose centre is free; edges join king- and knight-move neighbours whose
    connecting segment is free (checked at :data:`_EDGE_SAMPLES` points), so every grid path is
    a feasible polyline and its length an upper bound on the free-space geodesic.

    Args:
        free_fn: Freeness test ``points (..., 2) -> bool (...)`` (closed free set).
        lo: Lower corner ``(2,)`` of the gridded region.
        hi: Upper corner ``(2,)``.
        cell: Cell side, env units.

    Returns:
        The :class:`Geodesics` of the grid graph.
    """
    cols = max(int(round((hi[0] - lo[0]) / cell)), 1)
    rows = max(int(round((hi[1] - lo[1]) / cell)), 1)
    origin = np.asarray(lo, dtype=np.float64)
    c, r = np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy")
    free = free_fn(origin + (np.stack([c, r], axis=-1) + 0.5) * cell)
    node_id = np.full(free.shape, -1, dtype=np.int64)
    node_id[free] = np.arange(int(free.sum()))
    r, c = np.nonzero(free)
    centres = origin + (np.stack([c, r], axis=1) + 0.5) * cell
    graph = _grid_graph(free, node_id, centres, free_fn, cell)
    dist, pred = csgraph.shortest_path(graph, method="D", directed=False, return_predecessors=True)
    next_hop = np.where(pred >= 0, pred, np.arange(len(centres))[None, :]).astype(np.int64)
    _, (nr, nc) = ndimage.distance_transform_edt(~free, return_indices=True)
    return Geodesics(
        origin=origin,
        cell=float(cell),
        shape=(rows, cols),
        centres=centres,
        node_of_cell=node_id[nr, nc].reshape(-1),
        dist=dist.astype(np.float32),
        next_hop=next_hop,
    )


def _grid_graph(
    free: np.ndarray,
    node_id: np.ndarray,
    centres: np.ndarray,
    free_fn: Callable[[np.ndarray], np.ndarray],
    cell: float,
) -> sparse.csr_matrix:
    """Sparse adjacency ``(N, N)``: :data:`_MOVES` between free cells along free segments."""
    rows, cols = free.shape
    r, c = np.nonzero(free)
    src, dst = [], []
    for dr, dc in _MOVES:
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        ok[ok] = free[rr[ok], cc[ok]]
        src.append(node_id[r[ok], c[ok]])
        dst.append(node_id[rr[ok], cc[ok]])
    src, dst = np.concatenate(src), np.concatenate(dst)
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)[:, None, None]
    along = centres[src] + t * (centres[dst] - centres[src])
    keep = free_fn(along).all(0)
    src, dst = src[keep], dst[keep]
    weight = np.linalg.norm(centres[dst] - centres[src], axis=-1)
    n = len(centres)
    return sparse.csr_matrix((weight, (src, dst)), shape=(n, n))


def path_waypoints(geo: Geodesics, start: int, goal: int) -> np.ndarray:
    """The node centres ``(L, 2)`` of a shortest grid path from node ``start`` to ``goal``."""
    path = [start]
    while path[-1] != goal and len(path) <= len(geo.centres):
        nxt = int(geo.next_hop[goal, path[-1]])
        if nxt == path[-1]:
            break
        path.append(nxt)
    return geo.centres[np.asarray(path)]


# --------------------------------------------------------------------------------------------
# Rasterising
# --------------------------------------------------------------------------------------------


def pixel_centres(view: tuple[float, float, float, float], size: int) -> np.ndarray:
    """World positions ``(size, size, 2)`` of the pixel centres of a square image.

    Args:
        view: ``(xmin, xmax, ymin, ymax)`` the image spans (row grows with y, column with x).
        size: Image side in pixels.
    """
    xmin, xmax, ymin, ymax = view
    xs = xmin + (np.arange(size) + 0.5) * (xmax - xmin) / size
    ys = ymin + (np.arange(size) + 0.5) * (ymax - ymin) / size
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([gx, gy], axis=-1)


def paint(mask: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8: obstacle colour where ``mask`` ``(H, W)`` is true, else floor."""
    img = np.empty((*mask.shape, 3), dtype=np.uint8)
    img[...] = FLOOR_RGB
    img[mask] = OBSTACLE_RGB
    return img


def capped(vec: Tensor, limit: float = 1.0) -> Tensor:
    """``vec`` ``(..., 2)`` with its Euclidean norm capped at ``limit`` (differentiable)."""
    norm = (vec.square().sum(-1, keepdim=True) + 1e-12).sqrt()
    return vec * (limit / norm).clamp(max=1.0)


__getattr__ = moved_names(
    __name__,
    {
        **{name: f"grasplab.envs.planar.{name}" for name in ("Layout", "PlanarEnv")},
        **{
            name: f"grasplab.envs.configs.{name}"
            for name in ("require", "require_positive", "require_common")
        },
    },
)
