"""Geometry shared by the planar environments: collisions, geodesics, rasterising, task sampling.

Conventions: positions are ``(x, y)`` in the environment's units. Obstacles handed to the
collision functions are already *inflated* by the agent's radius, so the agent is a point in
configuration space. Occupancy grids index cells ``(row, col)`` with row along ``y`` and column
along ``x``: cell ``(r, c)`` has centre ``origin + ((c + 0.5) * cell, (r + 0.5) * cell)``. Images
use the same orientation: pixel row grows with ``y``, pixel column with ``x``.

The module also holds :class:`PlanarEnv`, the machinery the three planar environments share
(argument checks, distance, rendering, reset and geodesic task sampling); each environment adds
its physics, its layout and its lower bound on steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from torch import Tensor

from grasplab.envs.base import Tasks

FLOOR_RGB = (236, 236, 228)
"""Colour of free space in :meth:`PlanarEnv.render`."""
OBSTACLE_RGB = (64, 72, 96)
"""Colour of walls and obstacles."""
AGENT_RGB = (220, 40, 40)
"""Colour of the agent's disc."""

_ACTION_TOL = 1e-6


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


# --------------------------------------------------------------------------------------------
# Shared environment machinery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Layout:
    """Everything static an environment derives from its config (built once, cached).

    Attributes:
        arena_lo: Lower corner ``(2,)`` of the region the agent's centre may occupy.
        arena_hi: Upper corner ``(2,)``.
        view: ``(xmin, xmax, ymin, ymax)`` the rendered image spans.
        background: Rendered obstacles ``(size, size, 3)`` uint8.
        geo: Geodesics on the occupancy grid.
        region: Room id ``(N,)`` per node (-1: in no room), or ``None`` when rooms don't matter.
        boxes: Inflated obstacle boxes ``(lo (K, 2), hi (K, 2))`` (may be empty).
        discs: Inflated obstacle discs ``(C, 3)`` (may be empty).
        vertices: Free corners ``(V, 2)`` for :func:`project_discs`.
        eps: Contact tolerance, env units.
    """

    arena_lo: np.ndarray
    arena_hi: np.ndarray
    view: tuple[float, float, float, float]
    background: np.ndarray
    geo: Geodesics
    region: np.ndarray | None = None
    boxes: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 2)), np.zeros((0, 2)))
    discs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    eps: float = 1e-5


class PlanarEnv:
    """Base of the planar environments: positions are the first two state dims.

    Subclasses set ``name``, ``state_dim``, ``config`` and ``layout`` and implement
    :meth:`_advance` (one step of physics, no checks), :meth:`_settle` (move a free point by an
    offset under collisions) and :meth:`min_steps_for`.
    """

    name: str
    state_dim: int
    action_dim: int = 2
    config: Any
    layout: Layout

    def __init__(self, state_loc: list[float], state_scale: list[float]) -> None:
        self.action_low = torch.full((self.action_dim,), -1.0)
        self.action_high = torch.full((self.action_dim,), 1.0)
        self.state_loc = torch.tensor(state_loc, dtype=torch.float32)
        self.state_scale = torch.tensor(state_scale, dtype=torch.float32)
        self.success_radius = float(self.config.success_radius)
        self.image_size = int(self.config.image_size)
        self._arrays: dict[str, np.ndarray] = {}
        self._cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    # -- constants on the caller's device ------------------------------------------------------

    def const(self, key: str, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Layout array ``key`` as a tensor on ``like``'s device (cached per device and dtype).

        Args:
            key: ``"arena_lo"``, ``"arena_hi"``, ``"boxes_lo"``, ``"boxes_hi"``, ``"discs"``,
                ``"vertices"``, ``"background"``, ``"pixels"``, ``"centres"``, ``"dist"``,
                ``"next_hop"``, ``"node_of_cell"``, ``"region"``, ``"steps"`` (min steps per node
                pair) or ``"detour"`` (geodesic / euclidean ratio per node pair).
            like: Tensor whose device (and, for float arrays, dtype) to use.
            dtype: Explicit dtype, overriding ``like``'s for float arrays.
        """
        if key not in self._arrays:
            self._arrays[key] = self._array(key)
        array = self._arrays[key]
        if array.dtype.kind == "f":
            dtype = dtype or (like.dtype if like.is_floating_point() else torch.float32)
        else:
            dtype = torch.from_numpy(array[:0]).dtype
        slot = (key, like.device, dtype)
        if slot not in self._cache:
            self._cache[slot] = torch.as_tensor(array).to(device=like.device, dtype=dtype)
        return self._cache[slot]

    def _array(self, key: str) -> np.ndarray:
        """The numpy array behind :meth:`const`."""
        lay, geo = self.layout, self.layout.geo
        table = {
            "arena_lo": lambda: lay.arena_lo,
            "arena_hi": lambda: lay.arena_hi,
            "boxes_lo": lambda: lay.boxes[0],
            "boxes_hi": lambda: lay.boxes[1],
            "discs": lambda: lay.discs,
            "vertices": lambda: lay.vertices,
            "background": lambda: lay.background,
            "pixels": lambda: pixel_centres(lay.view, self.image_size),
            "origin": lambda: geo.origin,
            "centres": lambda: geo.centres,
            "dist": lambda: geo.dist,
            "next_hop": lambda: geo.next_hop,
            "node_of_cell": lambda: geo.node_of_cell,
            "region": lambda: lay.region,
        }
        if key == "steps":
            return self.min_steps_for(torch.from_numpy(geo.dist)).numpy()
        if key == "detour":
            euclid = np.linalg.norm(geo.centres[:, None] - geo.centres[None], axis=-1)
            return (geo.dist / np.maximum(euclid, 1e-9)).astype(np.float32)
        return np.asarray(table[key]())

    # -- protocol ------------------------------------------------------------------------------

    def step(self, state: Tensor, action: Tensor, *, check: bool = True) -> Tensor:
        """Next states ``(..., S)`` from states ``(..., S)`` and actions ``(..., 2)``.

        Args:
            state: States ``(..., S)``; never modified.
            action: Actions ``(..., 2)`` in ``[action_low, action_high]``.
            check: Validate shapes (and, off the meta device, the action bounds).

        Raises:
            ValueError: With ``check``, on a wrong last dim, mismatched leading dims or an action
                outside the bounds by more than 1e-6.
        """
        if check:
            self._check_step(state, action)
        return self._advance(state, action)

    def _check_step(self, state: Tensor, action: Tensor) -> None:
        """Raise ``ValueError`` naming what is wrong with ``step``'s arguments."""
        if state.dim() < 1 or state.shape[-1] != self.state_dim:
            raise ValueError(
                f"{self.name}.step: state shape {tuple(state.shape)} must be "
                f"(..., {self.state_dim})"
            )
        if action.dim() < 1 or action.shape[-1] != self.action_dim:
            raise ValueError(
                f"{self.name}.step: action shape {tuple(action.shape)} must be "
                f"(..., {self.action_dim})"
            )
        if state.shape[:-1] != action.shape[:-1]:
            raise ValueError(
                f"{self.name}.step: state leading dims {tuple(state.shape[:-1])} != action "
                f"leading dims {tuple(action.shape[:-1])}"
            )
        if "meta" in (state.device.type, action.device.type):
            return
        low, high = self.action_low.to(action), self.action_high.to(action)
        bad = (action < low - _ACTION_TOL) | (action > high + _ACTION_TOL) | action.isnan()
        if bool(bad.any()):
            worst = float(torch.maximum(action - high, low - action).nan_to_num(math.inf).max())
            raise ValueError(
                f"{self.name}.step: action outside [{self.action_low.tolist()}, "
                f"{self.action_high.tolist()}] (by up to {worst:.3g}); clamp or pass check=False"
            )

    def distance(self, state: Tensor, goal: Tensor) -> Tensor:
        """Euclidean distance ``(...)`` between the positions (first two dims), env units."""
        return torch.linalg.vector_norm(state[..., :2] - goal[..., :2], dim=-1)

    def success(self, state: Tensor, goal: Tensor) -> Tensor:
        """Boolean ``(...)``: :meth:`distance` below ``success_radius``."""
        return self.distance(state, goal) < self.success_radius

    def render(self, state: Tensor) -> Tensor:
        """RGB images ``(..., image_size, image_size, 3)`` uint8: obstacles and the agent's disc.

        Pixel row grows with y and column with x; the agent is drawn as a disc of radius
        ``max(agent_radius, 1.5 pixels)`` in :data:`AGENT_RGB`.
        """
        pos = state[..., :2].detach()
        pixels = self.const("pixels", pos)
        d2 = (pixels - pos[..., None, None, :]).square().sum(-1)
        xmin, xmax = self.layout.view[:2]
        radius = max(float(self.config.agent_radius), 1.5 * (xmax - xmin) / self.image_size)
        inside = (d2 <= radius**2).unsqueeze(-1)
        agent = torch.tensor(AGENT_RGB, dtype=torch.uint8, device=pos.device)
        return torch.where(inside, agent, self.const("background", pos))

    def reset(self, generator: torch.Generator, batch: int) -> Tensor:
        """Random free states ``(batch, S)`` (zero velocity where there is one).

        Positions are a uniformly drawn free grid cell's centre plus a uniform jitter within the
        cell, moved there under collisions so the result is free.
        """
        device = generator.device
        centres = self.const("centres", torch.empty(0, device=device))
        nodes = torch.randint(len(centres), (batch,), generator=generator, device=device)
        jitter = torch.rand((batch, 2), generator=generator, device=device) - 0.5
        pos = self._settle(centres[nodes], jitter * self.layout.geo.cell)
        return self.state_at(pos)

    def state_at(self, pos: Tensor) -> Tensor:
        """States ``(..., S)`` at positions ``(..., 2)`` with zero velocity."""
        pad = pos.new_zeros((*pos.shape[:-1], self.state_dim - 2))
        return torch.cat([pos, pad], dim=-1)

    def is_free(self, points: Tensor, tol: float = 0.0) -> Tensor:
        """Whether the agent's centre may be at ``points`` ``(..., 2)``: boolean ``(...)``.

        Args:
            points: Positions ``(..., 2)``.
            tol: Slack in favour of freeness (boundaries are free already).
        """
        lo, hi = self.const("arena_lo", points), self.const("arena_hi", points)
        free = ((points >= lo - tol) & (points <= hi + tol)).all(-1)
        p = points.unsqueeze(-2)
        if len(self.layout.boxes[0]):
            b_lo, b_hi = self.const("boxes_lo", points), self.const("boxes_hi", points)
            free &= ~((p > b_lo + tol) & (p < b_hi - tol)).all(-1).any(-1)
        if len(self.layout.discs):
            discs = self.const("discs", points)
            gap = (p - discs[:, :2]).square().sum(-1).sqrt() - discs[:, 2]
            free &= (gap >= -tol).all(-1)
        return free

    def node_of(self, pos: Tensor) -> Tensor:
        """Nearest occupancy-grid node ``(...)`` int64 of positions ``(..., 2)``."""
        geo = self.layout.geo
        origin = self.const("origin", pos)
        idx = ((pos.detach() - origin) / geo.cell).floor().long()
        col = idx[..., 0].clamp(0, geo.shape[1] - 1)
        row = idx[..., 1].clamp(0, geo.shape[0] - 1)
        return self.const("node_of_cell", pos)[row * geo.shape[1] + col]

    # -- tasks ---------------------------------------------------------------------------------

    def sample_tasks(
        self, generator: torch.Generator, n: int, horizon: int, action_block: int = 1
    ) -> Tasks:
        """``n`` start/goal pairs that need most of, and fit in, ``horizon * action_block`` steps.

        Start and goal are occupancy-grid cell centres whose geodesic (grid shortest path)
        gives a lower bound ``min_steps`` within ``config.task_band`` of the step budget; pairs are
        drawn uniformly among those (restricted, where at least 16 qualify, to pairs whose
        geodesic/euclidean ratio reaches ``config.min_detour``, and to the env's room rule).

        Args:
            generator: Source of randomness; its device is the tasks' device.
            n: Number of tasks.
            horizon: Planning horizon in model steps.
            action_block: Env steps per model step.

        Returns:
            :class:`Tasks` with goals at zero velocity.

        Raises:
            ValueError: When no pair fits the band; the message gives the longest horizon the
                layout supports.
        """
        if n < 1 or horizon < 1 or action_block < 1:
            raise ValueError(
                f"n, horizon and action_block must be >= 1, got {n}, {horizon}, {action_block}"
            )
        device = generator.device
        like = torch.empty(0, device=device)
        steps = self.const("steps", like)
        mask = self._pair_mask(steps, horizon * action_block, like)
        if not bool(mask.any()):
            raise ValueError(self._horizon_message(horizon, action_block))
        flat = torch.multinomial(mask.flatten().float(), n, replacement=True, generator=generator)
        start, goal = flat // mask.shape[1], flat % mask.shape[1]
        centres = self.const("centres", like)
        return Tasks(
            start=self.state_at(centres[start]),
            goal=self.state_at(centres[goal]),
            path_length=self.const("dist", like)[start, goal],
            min_steps=steps[start, goal].long(),
        )

    def _pair_mask(self, steps: Tensor, budget: int, like: Tensor) -> Tensor:
        """Boolean ``(N, N)``: node pairs eligible as (start, goal) for a step budget."""
        lo, hi = self.config.task_band
        mask = (steps >= max(lo * budget, 1.0)) & (steps <= hi * budget) & self._rooms_ok(like)
        if self.config.min_detour > 1.0:
            detour = mask & (self.const("detour", like) >= self.config.min_detour)
            if int(detour.sum()) >= 16:
                mask = detour
        return mask

    def _rooms_ok(self, like: Tensor) -> Tensor:
        """Boolean ``(N, N)`` (or scalar true): the env's room rule on (start, goal) nodes."""
        if self.layout.region is None:
            return torch.ones((), dtype=torch.bool, device=like.device)
        region = self.const("region", like)
        return (region[:, None] != region[None, :]) & (region[:, None] >= 0) & (region >= 0)

    def max_horizon(self, action_block: int = 1) -> int:
        """Longest horizon (model steps) :meth:`sample_tasks` supports at ``action_block``."""
        like = torch.empty(0)
        steps = self.const("steps", like)
        ok = torch.isfinite(self.const("dist", like)) & self._rooms_ok(like)
        longest = float(torch.where(ok, steps, torch.zeros_like(steps)).max())
        return int(math.floor(longest / (self.config.task_band[0] * action_block) + 1e-9))

    def _horizon_message(self, horizon: int, action_block: int) -> str:
        """Why no task fits ``horizon``: the supported horizons of this layout."""
        lo, hi = self.config.task_band
        longest = self.max_horizon(action_block)
        return (
            f"{self.name}: no start/goal pair needs between {lo:g} and {hi:g} of "
            f"horizon*action_block = {horizon}*{action_block} env steps on this layout; the "
            f"longest horizon it supports at action_block={action_block} is {longest} (geodesic "
            f"diameter {self.layout.geo.diameter:.3g} env units)"
            + (" and this horizon is too short" if horizon <= longest else "")
        )

    def move_among_boxes(self, pos: Tensor, offset: Tensor) -> tuple[Tensor, Tensor]:
        """Free ``pos`` ``(..., 2)`` moved by ``offset`` among the layout's boxes.

        Returns:
            New positions ``(..., 2)`` and the axes that hit a wall ``(..., 2)`` (boolean).
        """
        return resolve_boxes(
            pos,
            offset,
            self.const("boxes_lo", pos),
            self.const("boxes_hi", pos),
            self.const("arena_lo", pos),
            self.const("arena_hi", pos),
            self.layout.eps,
        )

    # -- subclass hooks ------------------------------------------------------------------------

    def _advance(self, state: Tensor, action: Tensor) -> Tensor:
        """One physics step ``(..., S), (..., 2) -> (..., S)`` without checks."""
        raise NotImplementedError

    def _settle(self, pos: Tensor, offset: Tensor) -> Tensor:
        """Free points ``(..., 2)``: free ``pos`` moved by ``offset`` under collisions."""
        raise NotImplementedError

    def min_steps_for(self, length: Tensor) -> Tensor:
        """Lower bound ``(...)`` on the env steps to bring a path ``length`` within the radius."""
        raise NotImplementedError


def capped(vec: Tensor, limit: float = 1.0) -> Tensor:
    """``vec`` ``(..., 2)`` with its Euclidean norm capped at ``limit`` (differentiable)."""
    norm = (vec.square().sum(-1, keepdim=True) + 1e-12).sqrt()
    return vec * (limit / norm).clamp(max=1.0)


# --------------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------------


def require(ok: bool, config: object, name: str, rule: str) -> None:
    """Raise ``ValueError`` naming ``config``'s field ``name`` unless ``ok``.

    Args:
        ok: Whether the field's value is valid.
        config: The config dataclass instance.
        name: Field name.
        rule: What the field must satisfy, e.g. ``"must be > 0"``.
    """
    if not ok:
        raise ValueError(f"{type(config).__name__}.{name} {rule}, got {getattr(config, name)!r}")


def require_positive(config: object, *names: str) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value is not ``> 0``."""
    for name in names:
        value = getattr(config, name)
        require(isinstance(value, int | float) and value > 0, config, name, "must be > 0")


def require_common(config: Any) -> None:
    """Validate (and normalise to a tuple) the fields every planar config shares.

    Checks ``success_radius``, ``image_size``, ``min_detour`` and ``task_band``
    (``0 < lo <= hi <= 1``).
    """
    require_positive(config, "success_radius", "agent_radius")
    require(
        isinstance(config.image_size, int) and config.image_size >= 8,
        config,
        "image_size",
        "must be an int >= 8",
    )
    require(config.min_detour >= 1.0, config, "min_detour", "must be >= 1")
    band = tuple(float(v) for v in config.task_band)
    object.__setattr__(config, "task_band", band)
    require(
        len(band) == 2 and 0 < band[0] <= band[1] <= 1,
        config,
        "task_band",
        "must be (lo, hi) with 0 < lo <= hi <= 1",
    )
