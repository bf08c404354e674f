"""The evaluation protocol: a versioned, frozen object that decides tasks and success."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

import torch

from grasplab.envs import Env, Tasks, make

Split = Literal["tune", "test"]
_SPLIT_OFFSET = {"tune": 1, "test": 2}


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that decides which tasks are solved and what counts as success.

    Tuning and held-out test goals come from disjoint random streams of the same seed. Success
    is judged in the TRUE environment, never under the model.
    """

    VERSION: ClassVar[str] = "1"
    """Bumped whenever the meaning of a field or of the runner's scoring changes."""

    env: str = "pointmaze"
    """Torch-native environment name (``grasplab.envs.make``)."""
    env_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Environment config overrides, e.g. ``{"layout": "medium"}``."""
    horizon: int = 25
    """Plan length in model steps."""
    action_block: int = 1
    """Environment actions per model step (frame-skip)."""
    seed: int = 0
    """Seed of the task streams (tuning and test)."""
    tune_episodes: int = 50
    """Tasks in the tuning split."""
    test_episodes: int = 100
    """Tasks in the held-out test split."""
    mode: Literal["open_loop", "mpc"] = "open_loop"
    """``open_loop``: plan once, execute all ``horizon`` steps. ``mpc``: receding horizon."""
    mpc_execute: int = 1
    """MPC: model steps executed per replan."""
    mpc_replans: int = 0
    """MPC: replans per episode (0: ``ceil(horizon / mpc_execute)``, the open-loop budget)."""
    mpc_shrink: bool = True
    """MPC: replan over the remaining budget (the horizon shrinks, so plans must arrive within
    it). False: a fixed receding horizon of ``horizon`` steps at every replan; with a terminal
    cost it keeps postponing arrival, so pair it with a larger ``mpc_replans``."""
    success_rule: Literal["ever", "final"] = "ever"
    """``ever``: within radius at any step of the horizon (the paper). ``final``: at the end."""
    stop_on_success: bool = True
    """Open loop: a problem the probe sees solved keeps that plan and stops (the paper's
    time-to-success). False: probes only time, the final plan alone is scored."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_overrides", dict(self.env_overrides))
        for name in (
            "horizon",
            "action_block",
            "seed",
            "tune_episodes",
            "test_episodes",
            "mpc_execute",
            "mpc_replans",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"EvalProtocol.{name} must be an int, got {value!r}")
        checks = {
            "horizon": self.horizon >= 1,
            "action_block": self.action_block >= 1,
            "tune_episodes": self.tune_episodes >= 0,
            "test_episodes": self.test_episodes >= 0,
            "mpc_execute": 1 <= self.mpc_execute <= self.horizon,
            "mpc_replans": self.mpc_replans >= 0,
            "mode": self.mode in ("open_loop", "mpc"),
            "success_rule": self.success_rule in ("ever", "final"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"EvalProtocol.{name} is invalid: {getattr(self, name)!r}")
        if (
            self.mode == "mpc"
            and self.mpc_shrink
            and self.mpc_replans > math.ceil(self.horizon / self.mpc_execute)
        ):
            raise ValueError(
                "EvalProtocol.mpc_replans exceeds the shrinking budget ceil(horizon/mpc_execute)"
            )
        self.make_env()  # unknown env / override names fail here, naming the problem

    def check_splits(self) -> None:
        """Raise ``ValueError`` naming the field unless both splits hold at least one task.

        A protocol may leave a split empty (the benchmarks score only the test goals and set
        ``tune_episodes=0``); a sweep tunes on one split and reports the other, so its config
        validation calls this.
        """
        for name in ("tune_episodes", "test_episodes"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(
                    f"EvalProtocol.{name} must be >= 1 to tune and then test, got {value}"
                )

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalProtocol:
        """Build from a plain dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - {"version"})
        if unknown:
            raise ValueError(f"EvalProtocol: unknown field(s) {unknown}; known: {sorted(names)}")
        version = values.get("version", cls.VERSION)
        if str(version) != cls.VERSION:
            raise ValueError(f"EvalProtocol.version {version!r} != this code's {cls.VERSION!r}")
        return cls(**{k: v for k, v in values.items() if k != "version"})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict including ``version``."""
        out = dataclasses.asdict(self)
        out["version"] = self.VERSION
        return out

    def fingerprint(self) -> str:
        """Short stable hash of the protocol (version included)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def make_env(self) -> Env:
        """The environment this protocol evaluates in."""
        return make(self.env, **self.env_overrides)

    def episodes(self, split: Split) -> int:
        """Number of tasks in ``split``."""
        return self.tune_episodes if split == "tune" else self.test_episodes

    def tasks(self, split: Split) -> Tasks:
        """The (cached, deterministic) tasks of ``split`` on the CPU."""
        if split not in _SPLIT_OFFSET:
            raise ValueError(f"split must be 'tune' or 'test', got {split!r}")
        return _tasks(self, split)

    @property
    def env_steps(self) -> int:
        """Environment steps per episode: ``horizon * action_block`` (open loop)."""
        return self.horizon * self.action_block


@lru_cache(maxsize=64)
def _tasks(protocol: EvalProtocol, split: Split) -> Tasks:
    generator = torch.Generator().manual_seed(1000 * protocol.seed + _SPLIT_OFFSET[split])
    env = protocol.make_env()
    return env.sample_tasks(
        generator, protocol.episodes(split), protocol.horizon, protocol.action_block
    )
