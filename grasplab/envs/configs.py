"""The torch envs' config dataclasses (frozen, validated), importable without torch.

A protocol's ``env`` and ``env_overrides`` are validated against these configs where the env
is named (:func:`grasplab.envs.env_config`), so a process that only coordinates (a sweep's
driver) checks them without the envs' tensor code; building the env (:func:`grasplab.envs.make`)
adds what only the geometry can tell (e.g. a layout without free cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TASK_FIELDS = frozenset({"success_radius", "min_detour", "task_band", "grid_subdiv", "grid_cell"})
"""Config fields that shape the tasks, the success test and the scripted policies' occupancy
grid, not the dynamics or the observations: a world model trained on the env stays valid when
only these change (:func:`grasplab.eval.models.env_changes`)."""


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


def _barrier(x: float, ys: tuple[float, ...], radius: float = 0.6) -> tuple[tuple[float, ...], ...]:
    """Discs ``(x, y, radius)`` at ``x`` and each of ``ys``."""
    return tuple((x, y, radius) for y in ys)


DEFAULT_OBSTACLES = _barrier(-1.5, (-5.0, -4.1, -1.8, -0.9, 0.0, 0.9, 1.8, 4.1, 5.0)) + _barrier(
    1.5, (-5.0, -4.1, -3.2, -2.3, -1.4, 1.4, 2.3, 3.2, 4.1, 5.0)
)
"""Two staggered barriers of overlapping discs ``(x, y, radius)``."""


@dataclass(frozen=True)
class BallNavConfig:
    """Configuration of :class:`BallNavEnv` (frozen, validated)."""

    arena_half: float = 5.0
    """Half side of the square arena ``[-arena_half, arena_half]^2``, env units."""
    obstacles: tuple[tuple[float, float, float], ...] = DEFAULT_OBSTACLES
    """Disc obstacles ``(x, y, radius)``; they may overlap and cross the arena's edge."""
    agent_radius: float = 0.1
    """Radius of the agent's disc (obstacles are inflated by it)."""
    max_step: float = 0.25
    """Largest distance travelled per env step (action norm 1)."""
    success_radius: float = 0.5
    """Success when the positions are closer than this."""
    image_size: int = 64
    """Side of rendered images, pixels."""
    grid_cell: float = 0.25
    """Occupancy-grid cell side for geodesics, task sampling and the waypoint policy."""
    min_detour: float = 1.05
    """Tasks prefer pairs whose geodesic / straight-line ratio reaches this (blocked lines)."""
    task_band: tuple[float, float] = (0.5, 0.85)
    """Tasks' ``min_steps`` as fractions ``(lo, hi)`` of the env-step budget."""

    def __post_init__(self) -> None:
        obstacles = tuple(tuple(float(v) for v in disc) for disc in self.obstacles)
        object.__setattr__(self, "obstacles", obstacles)
        require(
            all(len(d) == 3 and d[2] > 0 for d in obstacles),
            self,
            "obstacles",
            "must be (x, y, radius) triples with radius > 0",
        )
        require_positive(self, "arena_half", "max_step", "grid_cell")
        require_common(self)
        require(self.agent_radius < self.arena_half, self, "agent_radius", "must be < arena_half")
        require(self.grid_cell <= self.arena_half, self, "grid_cell", "must be <= arena_half")


LAYOUTS: dict[str, tuple[str, ...]] = {
    "umaze": ("#####", "#GOO#", "###O#", "#OOO#", "#####"),
    "medium": (
        "########",
        "#OO##OO#",
        "#OO#OOO#",
        "##OOO###",
        "#OO#OOO#",
        "#O#OO#O#",
        "#OOO#OG#",
        "########",
    ),
    "large": (
        "############",
        "#OOOO#OOOOO#",
        "#O##O#O#O#O#",
        "#OOOOOO#OOO#",
        "#O####O###O#",
        "#OO#O#OOOOO#",
        "##O#O#O#O###",
        "#OO#OOO#OGO#",
        "############",
    ),
}
"""D4RL maze2d layouts (``U_MAZE``, ``MEDIUM_MAZE``, ``LARGE_MAZE``), one string per row."""


@dataclass(frozen=True)
class PointMazeConfig:
    """Configuration of :class:`PointMazeEnv` (frozen, validated); lengths in maze cells."""

    layout: str = "medium"
    """Maze name, a key of :data:`LAYOUTS`."""
    agent_radius: float = 0.1
    """Radius of the point mass (walls are inflated by it), D4RL's 0.1."""
    dt: float = 0.1
    """Seconds per env step."""
    accel: float = 8.0
    """Acceleration at full action, units/s^2 (the action's norm is capped at 1)."""
    damping: float = 1.0
    """Linear velocity damping, 1/s."""
    max_speed: float = 2.0
    """Speed cap, units/s (``max_speed * dt`` units per step)."""
    success_radius: float = 0.5
    """Success when the positions are closer than this (D4RL's 0.5)."""
    image_size: int = 64
    """Side of rendered images, pixels."""
    grid_subdiv: int = 4
    """Occupancy-grid cells per maze cell side, for geodesics, tasks and the waypoint policy."""
    min_detour: float = 1.0
    """Tasks prefer pairs whose geodesic / straight-line ratio reaches this (1: no preference)."""
    task_band: tuple[float, float] = (0.5, 0.85)
    """Tasks' ``min_steps`` as fractions ``(lo, hi)`` of the env-step budget."""

    def __post_init__(self) -> None:
        require(self.layout in LAYOUTS, self, "layout", f"must be one of {sorted(LAYOUTS)}")
        require_positive(self, "dt", "accel", "max_speed")
        require(
            self.damping >= 0 and self.damping * self.dt < 1,
            self,
            "damping",
            "must satisfy 0 <= damping * dt < 1",
        )
        require_common(self)
        require(self.agent_radius < 0.5, self, "agent_radius", "must be < 0.5 (half a cell)")
        require(
            isinstance(self.grid_subdiv, int) and self.grid_subdiv >= 1,
            self,
            "grid_subdiv",
            "must be an int >= 1",
        )


@dataclass(frozen=True)
class WallConfig:
    """Configuration of :class:`WallEnv` (frozen, validated); lengths in pixels."""

    size: float = 64.0
    """Side of the square world ``[0, size]^2``."""
    wall_lo: float = 30.0
    """Left face of the wall."""
    wall_hi: float = 34.0
    """Right face of the wall."""
    door_y: float = 32.0
    """Centre of the door along y."""
    door_width: float = 12.0
    """Width of the door (must exceed the agent's diameter)."""
    agent_radius: float = 1.0
    """Radius of the agent's disc (walls are inflated by it)."""
    max_step: float = 2.5
    """Largest distance travelled per env step (action norm 1)."""
    success_radius: float = 4.5
    """Success when the positions are closer than this."""
    image_size: int = 64
    """Side of rendered images, pixels."""
    grid_cell: float = 2.0
    """Occupancy-grid cell side for geodesics, task sampling and the waypoint policy."""
    min_detour: float = 1.0
    """Tasks prefer pairs whose geodesic / straight-line ratio reaches this (1: no preference)."""
    task_band: tuple[float, float] = (0.5, 0.85)
    """Tasks' ``min_steps`` as fractions ``(lo, hi)`` of the env-step budget."""

    def __post_init__(self) -> None:
        require_positive(self, "size", "door_width", "max_step", "grid_cell")
        require_common(self)
        require(
            0 < self.wall_lo < self.wall_hi < self.size,
            self,
            "wall_hi",
            "must satisfy 0 < wall_lo < wall_hi < size",
        )
        half = self.door_width / 2
        require(
            half < self.door_y < self.size - half,
            self,
            "door_y",
            "must keep the whole door inside (door_width/2, size - door_width/2)",
        )
        require(
            self.door_width > 2 * self.agent_radius,
            self,
            "door_width",
            "must exceed the agent's diameter",
        )
        require(
            self.wall_lo > 2 * self.agent_radius
            and self.size - self.wall_hi > 2 * self.agent_radius,
            self,
            "agent_radius",
            "must leave room beside the wall",
        )
