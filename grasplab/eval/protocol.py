"""The evaluation protocol: a versioned, frozen object that decides tasks and success.

``env`` names a torch-native env (``pointmaze``) or a real simulator (``sim:pusht``,
``sim:pointmaze-umaze``, ``sim:my_pkg.module:factory``; see :func:`grasplab.envs.make_sim`),
in which plans are executed and judged. ``task_set`` says where the tasks come from (the env's
seeded samples, or the episodes of a recorded dataset: :mod:`grasplab.eval.tasks`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from grasplab.envs import check_sim_name, env_config, is_sim, make, make_sim, sim_name
from grasplab.eval.tasks import TaskSet, dataset_tasks, env_tasks

if TYPE_CHECKING:
    import torch

    from grasplab.envs import Env, Simulator, Tasks

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
    """Torch-native environment name (``grasplab.envs.make``), or ``sim:<simulator>``: a real
    simulator (``grasplab.envs.make_sim``) that executes and judges the plans."""
    env_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Environment config overrides, e.g. ``{"layout": "medium"}``; for a simulator, the
    keyword arguments of ``make_sim`` (e.g. ``{"workers": 2}``)."""
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
    task_set: Mapping[str, Any] = field(default_factory=dict)
    """Where the tasks come from (:class:`grasplab.eval.tasks.TaskSet` as a dict; ``{}``: the
    env samples them). Left out of :meth:`to_dict` when empty, so older fingerprints hold."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_overrides", dict(self.env_overrides))
        object.__setattr__(self, "task_set", TaskSet.from_dict(self.task_set).to_dict())
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
        if self.is_sim:  # building a simulator is the driver's job (config validation)
            check_sim_name(sim_name(self.env))
            if self.tasks_spec.source == "dataset" and self.tasks_spec.k % self.action_block:
                raise ValueError(
                    f"EvalProtocol.task_set: k={self.tasks_spec.k} must be a multiple of "
                    f"action_block={self.action_block}"
                )
        else:  # unknown env / override names and bad values fail here, naming the problem
            env_config(self.env, **self.env_overrides)

    @property
    def is_sim(self) -> bool:
        """Whether plans are executed in a real simulator (``env: sim:...``)."""
        return is_sim(self.env)

    @property
    def tasks_spec(self) -> TaskSet:
        """The task set as a :class:`~grasplab.eval.tasks.TaskSet`."""
        return TaskSet.from_dict(self.task_set)

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
        if not out["task_set"]:
            del out["task_set"]
        return out

    def fingerprint(self) -> str:
        """Short stable hash of the protocol (version included).

        With a dataset task set it also covers the dataset's identity (its shards' hashes), so
        the same spec over a changed dataset has another fingerprint.
        """
        values = self.to_dict()
        if self.task_set:
            from grasplab.world_models.manifest import require_dataset

            require_dataset(self.tasks_spec.data, self.env)  # one line: how to make it
            values["dataset_identity"] = self.tasks_spec.identity()
        blob = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def make_env(self) -> Env:
        """The torch environment this protocol evaluates in.

        Raises:
            ValueError: When the protocol names a real simulator (see :meth:`make_sim`).
        """
        if self.is_sim:
            raise ValueError(
                f"env {self.env!r} is a real simulator, not a torch env (no differentiable "
                "dynamics, e.g. no oracle world model); use make_sim()"
            )
        return make(self.env, **self.env_overrides)

    def make_sim(self) -> Simulator:
        """A new simulator of ``env: sim:...`` at this protocol's ``action_block`` (close it)."""
        return make_sim(sim_name(self.env), action_block=self.action_block, **self.env_overrides)

    def episodes(self, split: Split) -> int:
        """Number of tasks in ``split``."""
        return self.tune_episodes if split == "tune" else self.test_episodes

    def tasks(self, split: Split, sim: Simulator | None = None) -> Tasks:
        """The (cached, deterministic) tasks of ``split`` on the CPU.

        Args:
            split: ``tune`` or ``test``.
            sim: For a simulator protocol, a simulator of it to build the tasks with (default:
                a temporary one). The tasks do not depend on which.
        """
        if split not in _SPLIT_OFFSET:
            raise ValueError(f"split must be 'tune' or 'test', got {split!r}")
        if not self.is_sim:
            return _tasks(self, split)
        key = (self.fingerprint(), split)
        if key not in _SIM_TASKS:
            if sim is not None:
                _SIM_TASKS[key] = _build_tasks(self, split, sim)
            else:
                temporary = self.make_sim()
                try:
                    _SIM_TASKS[key] = _build_tasks(self, split, temporary)
                finally:
                    temporary.close()
        return _SIM_TASKS[key]

    @property
    def env_steps(self) -> int:
        """Environment steps per episode: ``horizon * action_block`` (open loop)."""
        return self.horizon * self.action_block


def env_action_size(protocol: EvalProtocol) -> int:
    """``A_env`` of the protocol's env (a simulator's is read once per process and cached)."""
    if not protocol.is_sim:
        return protocol.make_env().action_dim
    overrides = {k: v for k, v in protocol.env_overrides.items() if k != "workers"}
    return _sim_sizes(protocol.env, json.dumps(overrides, sort_keys=True, default=str))[0]


@lru_cache(maxsize=16)
def _sim_sizes(env: str, overrides: str) -> tuple[int, int]:
    """``(A_env, S)`` of simulator ``env`` built with ``overrides`` (JSON)."""
    sim = make_sim(sim_name(env), **json.loads(overrides))
    try:
        return int(sim.action_dim), int(sim.state_dim)
    finally:
        sim.close()


def fresh_tuning_goals(
    protocol: EvalProtocol, extra: int, sim: Simulator | None = None
) -> tuple[EvalProtocol, list[int]] | str:
    """``(extended protocol, indices of the fresh goals)``, or why there are none.

    The extended protocol's tuning split holds ``tune_episodes + extra`` goals whose first
    ``tune_episodes`` must be the search's own (checked), so the rest are new tuning goals: a
    search's top configs are re-scored on them before the pick.

    Args:
        protocol: The protocol the search tuned on.
        extra: Fresh goals wanted.
        sim: For a simulator protocol, a simulator of it (default: a temporary one).
    """
    import torch

    n = protocol.tune_episodes
    try:
        extended = dataclasses.replace(protocol, tune_episodes=n + extra)
        seen, more = protocol.tasks("tune", sim), extended.tasks("tune", sim)
    except ValueError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"no fresh tuning goals ({lines[0] if lines else type(error).__name__})"
    same = all(
        torch.equal(torch.as_tensor(getattr(seen, f)), torch.as_tensor(getattr(more, f))[:n])
        for f in ("start", "goal")
    )
    if not same or len(more.start) != n + extra:
        return "no fresh tuning goals (the tuning split's goals change when it is extended)"
    return extended, list(range(n, n + extra))


_SIM_TASKS: dict[tuple[str, str], Tasks] = {}
"""Tasks of simulator protocols, by fingerprint and split (the simulator is not hashable)."""


@lru_cache(maxsize=64)
def _tasks(protocol: EvalProtocol, split: Split) -> Tasks:
    return _build_tasks(protocol, split, protocol.make_env())


def _build_tasks(protocol: EvalProtocol, split: Split, env: Any) -> Tasks:
    """The tasks of ``split`` in ``env`` (a torch env or a simulator)."""
    import torch

    seed = 1000 * protocol.seed + _SPLIT_OFFSET[split]
    n, spec = protocol.episodes(split), protocol.tasks_spec
    if spec.source == "dataset":
        replay = _sim_replay(env) if protocol.is_sim else _env_replay(env, protocol.action_block)
        return dataset_tasks(
            spec, replay, protocol.env, split, n, protocol.env_steps, protocol.action_block, seed
        )
    if protocol.is_sim:
        return env_tasks(env, n, 1_000_003 * seed)
    generator = torch.Generator().manual_seed(seed)
    return env.sample_tasks(generator, n, protocol.horizon, protocol.action_block)


def _sim_replay(sim: Simulator) -> Any:
    def replay(start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return sim.execute(start, start, actions).states[:, -1]

    return replay


def _env_replay(env: Env, action_block: int) -> Any:
    import torch

    def replay(start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        state = start
        with torch.no_grad():
            for a in actions.reshape(start.shape[0], -1, env.action_dim).unbind(1):
                state = env.step(state, a)
        return state

    return replay
