"""The functional, batched environment protocol shared by grasplab's torch-native environments.

States are plain tensors ``(..., S)``; ``step`` returns a new tensor and never mutates its input.
Positions are in the environment's own units; ``state_loc``/``state_scale`` give the affine map
that :class:`grasplab.world_models.OracleModel` uses to present states at unit scale to planners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Tasks:
    """Start/goal pairs for planning.

    Attributes:
        start: Start states ``(N, S)``.
        goal: Goal states ``(N, S)`` (what the planner's goal encodes: position, zero velocity).
        path_length: Shortest-path length start -> goal on the layout, env units ``(N,)``
            (the planar envs: the occupancy grid's geodesic, within ~3 % of the true one).
        min_steps: Lower bound on the env steps needed to reach the goal region ``(N,)``
            int64 (straight-line travel at top speed; from rest for point masses).
    """

    start: Tensor
    goal: Tensor
    path_length: Tensor
    min_steps: Tensor

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def select(self, index: slice | Tensor | list[int]) -> Tasks:
        """The tasks at ``index`` (a slice, index list or boolean mask)."""
        return Tasks(
            self.start[index], self.goal[index], self.path_length[index], self.min_steps[index]
        )

    def to(self, device: torch.device | str) -> Tasks:
        """A copy on ``device``."""
        return Tasks(
            *(t.to(device) for t in (self.start, self.goal, self.path_length, self.min_steps))
        )


@runtime_checkable
class Env(Protocol):
    """A functional, batched environment.

    Attributes:
        name: Registry name.
        state_dim: ``S``.
        action_dim: ``A_env`` (one environment step).
        action_low: Lower action bounds ``(A_env,)``.
        action_high: Upper action bounds ``(A_env,)``.
        state_loc: Offset ``(S,)`` of the unit-scale map ``(s - loc) / scale``.
        state_scale: Scale ``(S,)`` of that map.
        success_radius: Success threshold on :meth:`distance`, env units.
        image_size: Side of the square RGB images :meth:`render` returns.
    """

    name: str
    state_dim: int
    action_dim: int
    action_low: Tensor
    action_high: Tensor
    state_loc: Tensor
    state_scale: Tensor
    success_radius: float
    image_size: int

    def reset(self, generator: torch.Generator, batch: int) -> Tensor:
        """Random valid states ``(batch, S)`` drawn with ``generator``."""
        ...

    def step(self, state: Tensor, action: Tensor, *, check: bool = True) -> Tensor:
        """Next states ``(..., S)`` from ``(..., S)`` and ``(..., A_env)``; differentiable.

        With ``check`` true, bad shapes or actions outside the bounds raise ``ValueError``.
        """
        ...

    def distance(self, state: Tensor, goal: Tensor) -> Tensor:
        """Goal distance ``(...)`` that success is judged by (positions, env units)."""
        ...

    def success(self, state: Tensor, goal: Tensor) -> Tensor:
        """Boolean ``(...)``: ``distance < success_radius``."""
        ...

    def render(self, state: Tensor) -> Tensor:
        """RGB images ``(..., image_size, image_size, 3)`` uint8."""
        ...

    def sample_tasks(
        self, generator: torch.Generator, n: int, horizon: int, action_block: int = 1
    ) -> Tasks:
        """``n`` start/goal pairs reachable in, and needing most of, ``horizon`` model steps."""
        ...
