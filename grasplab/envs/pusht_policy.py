"""A scripted, noisy Push-T pusher: go around the T to a contact point, push toward a sub-goal.

No public scripted Push-T expert exists, and DINO-WM's dataset (noised replays of human
demonstrations) cannot be downloaded here, so grasplab collects Push-T data with this policy.
Pure numpy, batched over ``N`` episodes, driven by states ``(N, 5)`` = (agent x, agent y, block
x, block y, block angle) in gym-pusht's units (pixels of the 512x512 table, radians); actions are
the agent's target positions ``(N, 2)`` (gym-pusht's action space), one per env step.

Per episode the policy repeats:

1. **Sub-goal.** Draw a target for the block's centre of gravity, uniform in the table's centre
   region, and a lateral offset of the contact point (so that pushes also turn the block).
2. **Approach.** Walk to a stand-off point behind the block (opposite the push direction). When
   the straight line would cross the block, walk around it on a circle about its centre.
3. **Push.** Move through the contact point along the push direction for a random number of
   steps, or until the block's centre has passed the sub-goal; then draw a new sub-goal.

Gaussian noise is added to every target, and steps are capped, so the data covers more than the
policy's own paths. The T's outline is gym-pusht's (``add_tee``: a 120x30 bar over a 30x90 stem,
centre of gravity at (0, 45) in the block's frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TABLE = 512.0
MARGIN = 20.0
"""Targets stay this far inside the table: the agent is kinematic and would leave it."""
AGENT_RADIUS = 15.0
COG = np.array([0.0, 45.0])
"""The T's centre of gravity in the block's frame (gym-pusht's ``add_tee`` at scale 30)."""
VERTICES = np.array(
    [[-60, 0], [60, 0], [60, 30], [15, 30], [15, 120], [-15, 120], [-15, 30], [-60, 30]],
    dtype=np.float64,
)
"""The T's outline in the block's frame."""


@dataclass(frozen=True)
class PusherConfig:
    """Parameters of the scripted pusher (recorded with the data it collects)."""

    noise: float = 6.0
    """Std (pixels) of the Gaussian noise on every target position."""
    max_step: float = 40.0
    """Largest move of the target from the agent per env step (pixels)."""
    push_speed: float = 18.0
    """How far ahead of the agent the target lies while pushing (pixels per step)."""
    push_steps: tuple[int, int] = (6, 24)
    """Range of env steps per push (inclusive)."""
    lateral: float = 25.0
    """Largest lateral offset of the contact point from the line through the centre (pixels)."""
    standoff: float = 30.0
    """Distance of the approach point behind the contact point (pixels)."""
    clearance: float = 22.0
    """Margin around the block's bounding circle when walking around it (pixels)."""
    goal_region: tuple[float, float] = (140.0, 372.0)
    """Sub-goals for the block's centre are drawn uniformly in this square (pixels)."""
    patience: int = 40
    """Env steps an approach may take before a new sub-goal is drawn (a stand-off point the
    agent cannot reach, e.g. behind a block against the wall)."""

    def __post_init__(self) -> None:
        for name in ("noise", "standoff", "clearance", "lateral"):
            if getattr(self, name) < 0:
                raise ValueError(f"PusherConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_step", "push_speed"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PusherConfig.{name} must be > 0, got {getattr(self, name)}")
        low, high = self.push_steps
        if not 1 <= low <= high:
            raise ValueError(f"PusherConfig.push_steps must be 1 <= low <= high, got {low, high}")


def rotate(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate ``vectors (N, ..., 2)`` by ``angle (N,)``."""
    c, s = np.cos(angle), np.sin(angle)
    shape = (-1,) + (1,) * (vectors.ndim - 2)
    c, s = c.reshape(shape), s.reshape(shape)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def block_geometry(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of gravity ``(N, 2)`` and outlines ``(N, 8, 2)`` of the blocks, world frame."""
    angle = states[:, 4]
    position = states[:, 2:4]
    cog = position + rotate(np.broadcast_to(COG, (len(states), 2)), angle)
    outline = position[:, None] + rotate(np.broadcast_to(VERTICES, (len(states), 8, 2)), angle)
    return cog, outline


def support(outline: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """How far the outline reaches from ``centre`` along unit ``direction``: ``(N,)``."""
    return ((outline - centre[:, None]) * direction[:, None]).sum(-1).max(axis=1)


def random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """Start states ``(n, 5)`` drawn as gym-pusht's ``reset`` draws them."""
    return np.column_stack(
        [
            rng.uniform(50, 450, n),
            rng.uniform(50, 450, n),
            rng.uniform(100, 400, n),
            rng.uniform(100, 400, n),
            rng.uniform(-np.pi, np.pi, n) % (2 * np.pi),
        ]
    )


class ScriptedPusher:
    """The batched scripted pusher (stateful: one phase per episode).

    Args:
        n: Episodes ``N`` driven in lockstep.
        rng: Random generator (sub-goals, offsets, push lengths, noise).
        config: Parameters.
    """

    APPROACH, PUSH = 0, 1

    def __init__(
        self, n: int, rng: np.random.Generator, config: PusherConfig | None = None
    ) -> None:
        if n < 1:
            raise ValueError(f"ScriptedPusher needs n >= 1 episodes, got {n}")
        self.n, self.rng, self.config = n, rng, config or PusherConfig()
        self.phase = np.full(n, self.APPROACH)
        self.direction = np.zeros((n, 2))
        self.offset = np.zeros(n)
        self.subgoal = np.zeros((n, 2))
        self.left = np.zeros(n, dtype=np.int64)
        self.waited = np.zeros(n, dtype=np.int64)
        self._new_subgoals(np.ones(n, dtype=bool), None)

    def _new_subgoals(self, mask: np.ndarray, cog: np.ndarray | None) -> None:
        k = int(mask.sum())
        if not k:
            return
        low, high = self.config.goal_region
        self.subgoal[mask] = self.rng.uniform(low, high, (k, 2))
        self.offset[mask] = self.rng.uniform(-self.config.lateral, self.config.lateral, k)
        self.phase[mask] = self.APPROACH
        self.waited[mask] = 0
        if cog is not None:
            self._aim(mask, cog)

    def _aim(self, mask: np.ndarray, cog: np.ndarray) -> None:
        delta = self.subgoal[mask] - cog[mask]
        norm = np.linalg.norm(delta, axis=-1, keepdims=True)
        self.direction[mask] = np.where(norm > 1e-6, delta / np.maximum(norm, 1e-6), [1.0, 0.0])

    def act(self, states: np.ndarray) -> np.ndarray:
        """Target positions ``(N, 2)`` for the current ``states (N, 5)``."""
        states = np.asarray(states, dtype=np.float64)
        if states.shape != (self.n, 5):
            raise ValueError(f"states must be ({self.n}, 5), got {states.shape}")
        cfg = self.config
        agent = states[:, :2]
        cog, outline = block_geometry(states)
        approaching = self.phase == self.APPROACH
        self._aim(approaching, cog)  # the block may have drifted since the sub-goal was drawn
        d = self.direction
        perp = np.stack([-d[:, 1], d[:, 0]], axis=-1)
        reach = support(outline, cog, -d)
        contact = cog - d * (reach + AGENT_RADIUS + 2.0)[:, None] + perp * self.offset[:, None]
        standoff = np.clip(contact - d * cfg.standoff, MARGIN, TABLE - MARGIN)
        target = np.where(approaching[:, None], standoff, agent + d * cfg.push_speed)

        # approach: walk around the block when the straight line to the stand-off point crosses it
        radius = np.linalg.norm(outline - cog[:, None], axis=-1).max(axis=1)
        ring = radius + AGENT_RADIUS + cfg.clearance
        blocked = approaching & self._crosses(agent, standoff, cog, ring)
        if blocked.any():
            around = self._around(agent[blocked], standoff[blocked], cog[blocked], ring[blocked])
            target[blocked] = around
        arrived = approaching & (np.linalg.norm(agent - standoff, axis=-1) < 12.0)
        low, high = cfg.push_steps
        self.left[arrived] = self.rng.integers(low, high + 1, int(arrived.sum()))
        self.phase[arrived] = self.PUSH

        # push: count down; stop early once the block's centre is past the sub-goal
        pushing = (self.phase == self.PUSH) & ~arrived
        self.left[pushing] -= 1
        passed = ((self.subgoal - cog) * d).sum(-1) < 0
        done = pushing & ((self.left <= 0) | passed)
        self.waited[approaching & ~arrived] += 1
        done |= approaching & ~arrived & (self.waited > cfg.patience)
        self._new_subgoals(done, cog)

        step = target - agent
        norm = np.linalg.norm(step, axis=-1, keepdims=True)
        step = step * np.minimum(1.0, cfg.max_step / np.maximum(norm, 1e-9))
        action = agent + step + self.rng.normal(0.0, cfg.noise, (self.n, 2))
        return np.clip(action, MARGIN, TABLE - MARGIN)

    @staticmethod
    def _crosses(a: np.ndarray, b: np.ndarray, centre: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Whether segments ``a -> b`` pass within ``r`` of ``centre`` (all ``(N, 2)``)."""
        ab = b - a
        t = ((centre - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9)
        closest = a + np.clip(t, 0.0, 1.0)[:, None] * ab
        return np.linalg.norm(closest - centre, axis=-1) < r

    @staticmethod
    def _around(
        agent: np.ndarray, goal: np.ndarray, centre: np.ndarray, ring: np.ndarray
    ) -> np.ndarray:
        """A waypoint on the ring about ``centre``, up to 0.6 rad toward ``goal``'s bearing."""
        here = np.arctan2(*(agent - centre).T[::-1])
        there = np.arctan2(*(goal - centre).T[::-1])
        turn = (there - here + np.pi) % (2 * np.pi) - np.pi
        angle = here + np.clip(turn, -0.6, 0.6)
        return centre + ring[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def moved(states: np.ndarray, position: float = 0.5, angle: float = 0.005) -> np.ndarray:
    """Which env steps moved the block: ``(N, T)`` bool from states ``(N, T+1, 5)``.

    A step moves the block when its position changes by more than ``position`` pixels or its
    angle by more than ``angle`` radians.
    """
    shift = np.linalg.norm(np.diff(states[..., 2:4], axis=1), axis=-1)
    turn = np.abs((np.diff(states[..., 4], axis=1) + np.pi) % (2 * np.pi) - np.pi)
    return (shift > position) | (turn > angle)
