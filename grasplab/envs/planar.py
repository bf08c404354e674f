"""The machinery the planar environments share: :class:`PlanarEnv`, :class:`Layout`, config checks.

:class:`PlanarEnv` holds what the three planar environments (point maze, wall, ball navigation)
have in common: argument checks, distance, rendering, reset and geodesic task sampling; each
environment adds its physics, its layout and its lower bound on steps. The collision, geodesic
and rasterising maths it builds on is in :mod:`grasplab.envs.geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grasplab.envs.base import Tasks
from grasplab.envs.geometry import (
    AGENT_RGB,
    Geodesics,
    pixel_centres,
    resolve_boxes,
)
from grasplab.moved import moved_names

_ACTION_TOL = 1e-6


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


__getattr__ = moved_names(
    __name__,
    {
        name: f"grasplab.envs.configs.{name}"
        for name in ("require", "require_positive", "require_common")
    },
)
"""Names that moved: importing one from its old home fails with one line naming the new one."""
