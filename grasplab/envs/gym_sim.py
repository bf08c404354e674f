"""``GymSimulator``: a :class:`~grasplab.envs.sim.Simulator` over N copies of a Gymnasium env.

An env meets the adapter when small callables, collected in a :class:`GymSpec`, can read its
state as a flat vector, put it in a given state, and judge states against goals; its
``action_space`` is a 1-D ``Box``. The adapter steps the env through its own ``step`` (one env
per episode) and ignores ``terminated`` / ``truncated``: a plan runs its full length.

Why not ``gymnasium.vector.SyncVectorEnv``: it auto-resets a sub-env after ``terminated``
(Push-T terminates at 95 % coverage), which would restart an episode in the middle of a plan,
and its number of envs is fixed. The adapter keeps a list of envs that grows to the batch size
instead; with ``workers > 1`` it splits every batch into contiguous shards, one per worker
process, each owning its own envs, so one :meth:`GymSimulator.execute` of a chunk of episodes
costs one round trip per worker, not one per step. Workers start from a ``forkserver`` (a clean
process: no threads, no rendering context), so a spec must be picklable: module-level callables
or ``functools.partial`` of them.

This module imports no Gymnasium itself; the adapters that build envs do.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from grasplab.envs.sim import (
    Array,
    Execution,
    check_actions,
    check_states,
    like,
    numpy,
)


@dataclass(frozen=True)
class GymSpec:
    """How :class:`GymSimulator` drives one kind of Gymnasium env (frozen, validated)."""

    name: str
    """Registry name of the simulator."""
    make_env: Callable[[], Any]
    """Builds one env to execute plans in (no rendering needed); ``action_space`` a 1-D Box."""
    get_state: Callable[[Any], np.ndarray]
    """The env's current state ``(S,)``."""
    set_state: Callable[[Any, np.ndarray], None] | None
    """Puts the env in state ``(S,)`` at rest; ``None`` for an env offering no way (refused)."""
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """Goal distance ``(...)`` of states and goals ``(..., S)``, env units."""
    success: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """Success ``(...)`` bool of states and goals ``(..., S)``."""
    make_render_env: Callable[[], Any] | None = None
    """Builds the env that draws observations (default: ``make_env``)."""
    observe: Callable[[Any], np.ndarray] | None = None
    """RGB image ``(H, W, 3)`` uint8 of a render env's current state (default ``env.render()``)."""
    action_block: int = 1
    """Env steps per model step (frame-skip)."""
    image_size: int = 64
    """Side of the square images ``observe`` returns."""
    state_atol: float = 1e-6
    """Largest read-back error of ``set_state`` accepted when the adapter probes it."""

    def __post_init__(self) -> None:
        if self.set_state is None:
            raise ValueError(
                f"GymSpec {self.name!r}: set_state is None, so the env offers no way to reset "
                "to a given state and plans cannot be executed from given starts; pass "
                "set_state (e.g. reset_option('reset_to_state') for an env whose reset takes "
                "that option)"
            )
        for field, ok in (
            ("action_block", isinstance(self.action_block, int) and self.action_block >= 1),
            ("image_size", isinstance(self.image_size, int) and self.image_size >= 1),
            ("state_atol", self.state_atol >= 0),
        ):
            if not ok:
                raise ValueError(f"GymSpec {self.name!r}: {field}={getattr(self, field)!r} invalid")


def _reset_with_option(env: Any, state: np.ndarray, *, key: str) -> None:
    env.reset(options={key: np.asarray(state)})


def reset_option(key: str) -> Callable[[Any, np.ndarray], None]:
    """A ``set_state`` for envs whose ``reset`` takes ``options={key: state}`` (picklable)."""
    return functools.partial(_reset_with_option, key=key)


def _fresh(make: Callable[[], Any]) -> Any:
    """A new env, reset once (Gymnasium's order: reset before step)."""
    env = make()
    env.reset(seed=0)
    return env


class _Local:
    """The envs of one process: ``live`` simulators (a growing pool) and one render env."""

    def __init__(self, spec: GymSpec) -> None:
        self.spec = spec
        self.envs: list[Any] = []
        self.live = 0
        self.render_env: Any = None
        self.dtype: Any = None

    def _read(self) -> np.ndarray:
        return np.stack([self.spec.get_state(env) for env in self.envs[: self.live]]).astype(
            np.float64
        )

    def set_states(self, states: np.ndarray) -> np.ndarray:
        """Live simulators in ``states (N, S)``; their read-back states ``(N, S)``."""
        while len(self.envs) < len(states):
            self.envs.append(_fresh(self.spec.make_env))
        self.dtype = self.envs[0].action_space.dtype
        self.live = len(states)
        for env, state in zip(self.envs, states, strict=False):
            self.spec.set_state(env, state)
        return self._read()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """One env step of every live simulator with ``actions (N, A)``; states ``(N, S)``."""
        for env, action in zip(self.envs[: self.live], actions.astype(self.dtype), strict=True):
            env.step(action)
        return self._read()

    def execute(self, start: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """States ``(N, T + 1, S)`` visited from ``start (N, S)`` under ``actions (N, T, A)``."""
        out = np.empty((len(start), actions.shape[1] + 1, start.shape[1]))
        out[:, 0] = self.set_states(start)
        for t in range(actions.shape[1]):
            out[:, t + 1] = self.step(actions[:, t])
        return out

    def frames(self, states: np.ndarray) -> np.ndarray:
        """Images ``(N, H, W, 3)`` uint8 of ``states (N, S)`` from the render env."""
        spec = self.spec
        if self.render_env is None:
            self.render_env = _fresh(spec.make_render_env or spec.make_env)
        images = []
        for state in states:
            spec.set_state(self.render_env, state)
            image = spec.observe(self.render_env) if spec.observe else self.render_env.render()
            images.append(np.asarray(image))
        out = np.stack(images)
        size = spec.image_size
        if out.shape[1:] != (size, size, 3) or out.dtype != np.uint8:
            raise ValueError(
                f"{spec.name}: observe returned {out.dtype} {out.shape[1:]}, expected uint8 "
                f"({size}, {size}, 3)"
            )
        return out

    def ready(self, shard: np.ndarray) -> np.ndarray:
        """``shard`` back (a worker's answer once it is up)."""
        return shard

    def close(self) -> None:
        for env in [*self.envs, self.render_env]:
            if env is not None:
                env.close()
        self.envs, self.render_env, self.live = [], None, 0


def _serve(conn: Connection, spec: GymSpec) -> None:
    """A worker process: run ``_Local`` methods sent as ``(name, args)`` until ``None``.

    A closed pipe (the parent dropped the simulator without closing it) also ends it.
    """
    local = _Local(spec)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            method, args = message
            try:
                conn.send((True, getattr(local, method)(*args)))
            except Exception as err:  # noqa: BLE001 - reported to the parent
                conn.send((False, f"{type(err).__name__}: {err}"))
    finally:
        local.close()
        conn.close()


def _bounds(space: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float64 ``(A,)`` of a 1-D Box action space; ``ValueError`` otherwise."""
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None or np.ndim(low) != 1 or np.shape(low) != np.shape(high):
        raise ValueError(f"{name}: the env's action_space must be a 1-D Box, got {space}")
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
        raise ValueError(f"{name}: action bounds must be finite with low < high, got {space}")
    return low, high


def _probe_set_state(spec: GymSpec, env: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Check that ``set_state`` returns a moved env to a state; the state ``(S,)``."""
    state = np.asarray(spec.get_state(env), np.float64)
    if state.ndim != 1 or state.size == 0 or not np.isfinite(state).all():
        raise ValueError(f"{spec.name}: get_state must return a finite (S,) vector, got {state}")
    action = (low + 0.75 * (high - low)).astype(env.action_space.dtype)
    for _ in range(3):
        env.step(action)
    spec.set_state(env, state)
    error = float(np.abs(np.asarray(spec.get_state(env), np.float64) - state).max())
    if not error <= spec.state_atol:
        raise ValueError(
            f"{spec.name}: set_state does not reset the env to a given state (read-back error "
            f"{error:.3g} > state_atol {spec.state_atol:g} after stepping away and back), so "
            "plans cannot be executed from given starts"
        )
    return state


class GymSimulator:
    """A :class:`~grasplab.envs.sim.Simulator` over copies of a Gymnasium env.

    Args:
        spec: How to build, read, set and judge the env.
        workers: Processes to shard batches over (1: everything in this process).

    Raises:
        ValueError: On a bad ``workers``, an action space that is not a 1-D Box, or a
            ``set_state`` that does not reach the state it is given (probed once here).
    """

    def __init__(self, spec: GymSpec, *, workers: int = 1) -> None:
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError(f"{spec.name}: workers must be an int >= 1, got {workers!r}")
        self.spec, self.workers = spec, workers
        self.name, self.action_block = spec.name, spec.action_block
        self.image_size = spec.image_size
        self._scratch = _fresh(spec.make_env)
        self.action_low, self.action_high = _bounds(self._scratch.action_space, spec.name)
        self.action_dim = int(self.action_low.shape[0])
        self.state_dim = int(_probe_set_state(spec, self._scratch, *self.action_bounds).size)
        self._live = 0
        self._local = _Local(spec) if workers == 1 else None
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        if workers > 1:
            self._start_workers()

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(action_low, action_high)``, each ``(A,)``."""
        return self.action_low, self.action_high

    def _start_workers(self) -> None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        for _ in range(self.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.spec), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:  # wait until every worker is up
            self._run("ready", np.zeros(self.workers))
        except RuntimeError as err:
            self.close()
            raise RuntimeError(
                f"{err}; a script that starts workers > 1 must guard its entry point with "
                "`if __name__ == '__main__':` (the forkserver re-imports the main module)"
            ) from err

    def _run(self, method: str, *arrays: np.ndarray) -> np.ndarray:
        """``_Local.method`` over batched ``arrays``: here, or sharded over the workers."""
        if self._local is not None:
            return getattr(self._local, method)(*arrays)
        if not self._conns:
            raise ValueError(f"{self.name}: the simulator is closed")
        shards = np.array_split(np.arange(len(arrays[0])), self.workers)
        busy, errors = [], []
        for conn, index in zip(self._conns, shards, strict=True):
            if not len(index):
                continue
            try:
                conn.send((method, tuple(a[index[0] : index[-1] + 1] for a in arrays)))
                busy.append(conn)
            except OSError as err:
                errors.append(f"the worker process died ({type(err).__name__})")
        replies = [self._receive(conn) for conn in busy]
        errors += [reply for ok, reply in replies if not ok]
        if errors:
            raise RuntimeError(f"{self.name}: a worker failed in {method}: {errors[0]}")
        return np.concatenate([reply for _, reply in replies])

    def _receive(self, conn: Connection) -> tuple[bool, Any]:
        """A worker's ``(ok, result or error message)``; a dead worker is an error."""
        try:
            return conn.recv()
        except (EOFError, OSError) as err:
            return False, f"the worker process died ({type(err).__name__})"

    def _states(self, states: Array, name: str) -> np.ndarray:
        array = numpy(states, name)
        check_states(array, self.state_dim, name)
        return array

    def _pair(self, states: Array, goals: Array, name: str) -> tuple[np.ndarray, np.ndarray]:
        s, g = numpy(states, name), numpy(goals, name)
        if s.shape[-1:] != (self.state_dim,) or g.shape[-1:] != (self.state_dim,):
            raise ValueError(
                f"{name}: states and goals must be (..., {self.state_dim}), got {s.shape} and "
                f"{g.shape}"
            )
        return s, g

    def reset_to(self, states: Array) -> Array:
        """Live simulators in ``states (N, S)``; their images ``(N, H, W, 3)`` uint8."""
        array = self._states(states, "reset_to")
        self._run("set_states", array)
        self._live = len(array)
        return like(self._run("frames", array), states)

    def render(self, states: Array) -> Array:
        """Images ``(N, H, W, 3)`` uint8 of ``states (N, S)``; live simulators untouched."""
        return like(self._run("frames", self._states(states, "render")), states)

    def step(self, actions: Array) -> Array:
        """One env step of the ``N`` live simulators with ``actions (N, A)``; states ``(N, S)``."""
        array = numpy(actions, "step")
        if self._live == 0:
            raise ValueError("step: no live simulators; call reset_to or execute first")
        if array.shape != (self._live, self.action_dim):
            raise ValueError(
                f"step: expected actions ({self._live}, {self.action_dim}) for the "
                f"{self._live} live simulators, got {array.shape}"
            )
        array = check_actions(array, self.action_low, self.action_high, "step")
        return like(self._run("step", array), actions)

    def distance(self, states: Array, goals: Array) -> Array:
        """Goal distance ``(...)`` of states and goals ``(..., S)``."""
        s, g = self._pair(states, goals, "distance")
        return like(np.asarray(self.spec.distance(s, g), np.float64), states)

    def success(self, states: Array, goals: Array) -> Array:
        """Success ``(...)`` bool of states and goals ``(..., S)``."""
        s, g = self._pair(states, goals, "success")
        return like(np.asarray(self.spec.success(s, g), bool), states)

    def execute(self, start: Array, goal: Array, actions: Array) -> Execution:
        """Run plans ``actions (N, T, k * A)`` from ``start (N, S)``; judged against ``goal``."""
        s = self._states(start, "execute: start")
        g = numpy(goal, "execute: goal")
        if g.shape != s.shape:
            raise ValueError(f"execute: goal must have the start's shape {s.shape}, got {g.shape}")
        a = numpy(actions, "execute: actions")
        (N, _), width = s.shape, self.action_block * self.action_dim
        if a.ndim != 3 or a.shape[0] != N or a.shape[1] < 1 or a.shape[2] != width:
            raise ValueError(
                f"execute: expected actions (N={N}, T>=1, action_block * action_dim = {width}), "
                f"got {a.shape}"
            )
        flat = check_actions(
            a.reshape(N, -1, self.action_dim), self.action_low, self.action_high, "execute"
        )
        states = self._run("execute", s, flat)
        self._live = N
        reached, goals = states[:, 1:], g[:, None]
        return Execution(
            like(np.asarray(self.spec.distance(reached, goals), np.float64), start),
            like(states, start),
            like(np.asarray(self.spec.success(reached, goals), bool), start),
        )

    def random_states(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` states ``(n, S)`` from the env's own resets with seeds ``seed, seed + 1, ...``.

        Live simulators are left as they are.
        """
        states = []
        for i in range(n):
            self._scratch.reset(seed=seed + i)
            states.append(np.asarray(self.spec.get_state(self._scratch), np.float64))
        return np.stack(states)

    def close(self) -> None:
        """Stop the workers and close every env (idempotent)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs, self._live = [], [], 0
        if self._local is not None:
            self._local.close()
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None

    def __enter__(self) -> GymSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GymSimulator({self.name!r}, workers={self.workers})"
