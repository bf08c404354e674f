"""The runner: plan a batch of episodes in one call, execute in the TRUE env, score.

A pure function of (protocol, planner, model, episodes) -> per-episode results: this is what a
platform worker, a test and a benchmark all run.

The true env is a :class:`TrueEnv`: a torch ``Env`` (:class:`TorchTrueEnv`) or a real simulator
(:class:`SimTrueEnv`, for ``env: sim:...`` protocols). Both execute plans from given starts,
judge every env step, and continue from where the last execution stopped (MPC keeps stepping
the live simulators instead of re-executing from the start).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor

from grasplab.envs import Env, Simulator
from grasplab.eval.protocol import EvalProtocol, Split
from grasplab.eval.results import EpisodeResults
from grasplab.planners import Planner, PlanProblem, PlanResult
from grasplab.planners.streams import SPLITS, EpisodeStreams, stream_key
from grasplab.world_models import WorldModel


def observe(model: WorldModel, env: Env, states: Tensor) -> Tensor:
    """What ``model.encode`` consumes: env states, or rendered images for pixel models."""
    if getattr(model, "observation", "state") == "pixels":
        return env.render(states)
    return states


def model_device(model: WorldModel) -> torch.device:
    """The device a model computes on (its ``device`` attribute, first parameter, or CPU)."""
    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def action_bounds(env: Env, action_block: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds ``(k * A_env,)`` of one model step's action block."""
    return (
        env.action_low.to(like).repeat(action_block),
        env.action_high.to(like).repeat(action_block),
    )


def execute(
    env: Env, start: Tensor, goal: Tensor, actions: Tensor, action_block: int
) -> tuple[Tensor, Tensor]:
    """Run ``actions (B, H, k*A_env)`` in the true env from ``start (B, S)``.

    Returns:
        Distances to the goal after every env step ``(B, H*k)`` and the visited states
        ``(B, H*k + 1, S)`` (start included).
    """
    B, H, _ = actions.shape
    flat = actions.reshape(B, H * action_block, env.action_dim)
    states, distances = [start], []
    s = start
    for t in range(flat.shape[1]):
        s = env.step(s, flat[:, t])
        states.append(s)
        distances.append(env.distance(s, goal))
    return torch.stack(distances, dim=1), torch.stack(states, dim=1)


def reached(distances: Tensor, radius: float, rule: str) -> Tensor:
    """Success per episode from distances ``(B, T)`` under the protocol's rule."""
    if rule == "ever":
        return (distances < radius).any(dim=1)
    return distances[:, -1] < radius


class Rollout(NamedTuple):
    """Plans executed in the true env (``T = H * action_block`` env steps).

    Attributes:
        distances: Goal distance after every env step ``(B, T)``.
        states: Visited states ``(B, T + 1, S)``, the start first.
        success: Success judged after every env step ``(B, T)`` bool.
    """

    distances: Tensor
    states: Tensor
    success: Tensor


class TrueEnv:
    """Where plans are executed and judged: a torch env or a real simulator.

    Attributes:
        action_low: Lower bounds of one env action ``(A_env,)``.
        action_high: Upper bounds ``(A_env,)``.
        action_dim: ``A_env``.
    """

    action_low: Tensor
    action_high: Tensor
    action_dim: int

    def bounds(self, action_block: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds ``(k * A_env,)`` of one model step's action block, like ``like``."""
        return (
            self.action_low.to(like).repeat(action_block),
            self.action_high.to(like).repeat(action_block),
        )

    def render(self, states: Tensor) -> Tensor:
        """RGB images ``(B, H, W, 3)`` uint8 of states ``(B, S)``."""
        raise NotImplementedError

    def observe(self, model: WorldModel, states: Tensor) -> Tensor:
        """What ``model.encode`` consumes: states, or rendered images for pixel models."""
        if getattr(model, "observation", "state") == "pixels":
            return self.render(states)
        return states

    def execute(self, start: Tensor, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """Run ``actions (B, H, k*A_env)`` from ``start (B, S)``, judged against ``goal``."""
        raise NotImplementedError

    def resume(self, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """Continue the last :meth:`execute` / :meth:`resume` with ``actions (B, H, k*A_env)``."""
        raise NotImplementedError


class TorchTrueEnv(TrueEnv):
    """A torch ``Env`` as the true env (success: ``distance < success_radius``)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.action_low, self.action_high = env.action_low, env.action_high
        self.action_dim = env.action_dim
        self.last: Tensor | None = None

    def render(self, states: Tensor) -> Tensor:
        """The env's images of ``states``."""
        return self.env.render(states)

    def execute(self, start: Tensor, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """Step the functional env from ``start``."""
        distances, states = execute(self.env, start, goal, actions, action_block)
        self.last = states[:, -1]
        return Rollout(distances, states, distances < self.env.success_radius)

    def resume(self, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """Step on from the last visited states."""
        if self.last is None:
            raise ValueError("resume: nothing executed yet")
        return self.execute(self.last, goal, actions, action_block)


class SimTrueEnv(TrueEnv):
    """A real :class:`~grasplab.envs.Simulator` as the true env (its own success rule)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.action_low = torch.as_tensor(np.asarray(sim.action_low, np.float64))
        self.action_high = torch.as_tensor(np.asarray(sim.action_high, np.float64))
        self.action_dim = int(sim.action_dim)

    def render(self, states: Tensor) -> Tensor:
        """The simulator's images of ``states`` (live simulators untouched)."""
        return self.sim.render(states)

    def execute(self, start: Tensor, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """``reset_to(start)`` and run every env step in the live simulators."""
        self._check_block(action_block)
        out = self.sim.execute(start, goal, actions.detach())
        return Rollout(out.distances, out.states, out.success)

    def resume(self, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """Keep stepping the live simulators (no reset: their momentum carries on)."""
        self._check_block(action_block)
        B, H, _ = actions.shape
        flat = actions.detach().reshape(B, H * action_block, self.action_dim)
        states = [self.sim.step(a) for a in flat.unbind(1)]
        visited = torch.stack(states, dim=1)
        return Rollout(
            self.sim.distance(visited, goal[:, None]),
            visited,
            self.sim.success(visited, goal[:, None]),
        )

    def _check_block(self, action_block: int) -> None:
        if action_block != self.sim.action_block:
            raise ValueError(
                f"simulator {self.sim.name!r} has action_block={self.sim.action_block}, the "
                f"protocol {action_block}"
            )


class ScaledTrueEnv(TrueEnv):
    """``env`` seen through normalised actions: ``u`` in ``[-1, 1]`` is ``center + half * u``.

    Args:
        env: The true env (its bounds are ``center -/+ half``).
    """

    def __init__(self, env: TrueEnv) -> None:
        self.env = env
        self.center = (env.action_high + env.action_low) / 2
        self.half = (env.action_high - env.action_low) / 2
        self.action_low = -torch.ones_like(self.half)
        self.action_high = torch.ones_like(self.half)
        self.action_dim = env.action_dim

    def raw(self, actions: Tensor) -> Tensor:
        """Normalised ``(B, H, k*A_env)`` actions in the env's own units."""
        k = actions.shape[-1] // self.env.action_dim
        center = self.center.to(actions).repeat(k)
        return center + self.half.to(actions).repeat(k) * actions

    def render(self, states: Tensor) -> Tensor:
        """The wrapped env's images."""
        return self.env.render(states)

    def observe(self, model: WorldModel, states: Tensor) -> Tensor:
        """What the wrapped env shows ``model``."""
        return self.env.observe(model, states)

    def execute(self, start: Tensor, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """:meth:`TrueEnv.execute` of the actions in the env's units."""
        return self.env.execute(start, goal, self.raw(actions), action_block)

    def resume(self, goal: Tensor, actions: Tensor, action_block: int) -> Rollout:
        """:meth:`TrueEnv.resume` of the actions in the env's units."""
        return self.env.resume(goal, self.raw(actions), action_block)


class ScaledActionModel:
    """``model`` taking normalised actions: ``step(z, u) = model.step(z, center + half * u)``.

    Everything else (``encode``, ``cost``, ``latent_spread``, ``parameters``, ...) is the
    wrapped model's. Shapes: ``z (N, D)``, ``u (N, k*A_env)``.
    """

    def __init__(self, model: WorldModel, env: ScaledTrueEnv) -> None:
        self.model, self.env = model, env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step from normalised actions."""
        return self.model.step(z, self.env.raw(a))


def normalized_actions(env: TrueEnv, model: WorldModel) -> tuple[TrueEnv, WorldModel]:
    """Planners see actions in ``[-1, 1]`` whatever the env's bounds.

    Step sizes and noise of the gradient planners (GD, GRASP, LatCo, MPPI's noise) are in
    action units; an env whose bounds are not ``[-1, 1]`` (Push-T's targets are pixels in
    ``[0, 512]``) would otherwise give them steps 256x too small. Envs already in ``[-1, 1]``
    are returned unchanged (every planar env), so their results do not move.
    """
    low, high = env.action_low.double(), env.action_high.double()
    if bool(torch.all(low == -1)) and bool(torch.all(high == 1)):
        return env, model
    scaled = ScaledTrueEnv(env)
    return scaled, cast(WorldModel, ScaledActionModel(model, scaled))


def true_env(protocol: EvalProtocol, sim: Simulator | None = None) -> TrueEnv:
    """The protocol's true env: its torch env, or ``sim`` (required for ``env: sim:...``)."""
    if protocol.is_sim:
        if sim is None:
            raise ValueError(f"protocol env {protocol.env!r} needs a simulator (make_sim())")
        return SimTrueEnv(sim)
    return TorchTrueEnv(protocol.make_env())


def reached_steps(success: Tensor, rule: str) -> Tensor:
    """Success per episode ``(B,)`` from per-step success ``(B, T)`` under the protocol's rule."""
    return success.any(dim=1) if rule == "ever" else success[:, -1]


class _OwnedSim:
    """The simulator of a protocol: the one given, or a new one closed on exit."""

    def __init__(self, protocol: EvalProtocol, sim: Simulator | None) -> None:
        self.owned = protocol.is_sim and sim is None
        self.sim = protocol.make_sim() if self.owned else sim

    def __enter__(self) -> Simulator | None:
        return self.sim

    def __exit__(self, *exc: object) -> None:
        if self.owned and self.sim is not None:
            self.sim.close()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Wall clock of a planning call that excludes the time spent inside probes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = time.perf_counter()
        self.excluded = 0.0

    def now(self) -> float:
        _sync(self.device)
        return time.perf_counter() - self.start - self.excluded


def evaluate(
    protocol: EvalProtocol,
    planner: Planner,
    model: WorldModel,
    split: Split = "tune",
    indices: Sequence[int] | None = None,
    *,
    seed: int = 0,
    sim: Simulator | None = None,
) -> EpisodeResults:
    """Plan the selected episodes in ONE batched call and score them in the true env.

    Every random draw the planner makes for episode ``i`` comes from its own stream, keyed by
    (``protocol.seed``, ``split``, ``i``, ``seed``) (:class:`EpisodeStreams`), so an episode's
    plan and outcome are bit-identical whether it is planned alone, in a chunk or in one batch
    of all goals, on one worker or many (same device type and dtype). Only the wall-clock
    fields (``time_to_success``, ``plan_time``) depend on the batch: they time the batched call.

    Args:
        protocol: The evaluation protocol.
        planner: Any planner (holds its config).
        model: World model; its device is the planning device.
        split: ``tune`` or ``test`` task set.
        indices: Task indices within the split (default: all).
        seed: Planner seed, the last part of every episode's stream key.
        sim: For ``env: sim:...`` protocols, the simulator to execute in (a platform worker
            keeps one); default: a new one, closed before returning.

    Returns:
        Per-episode results in the order of ``indices``.
    """
    with _OwnedSim(protocol, sim) as live:
        env = true_env(protocol, live)
        all_tasks = protocol.tasks(split, live) if protocol.is_sim else protocol.tasks(split)
        idx = list(range(len(all_tasks))) if indices is None else [int(i) for i in indices]
        if not idx:
            raise ValueError("evaluate: no episodes selected")
        if min(idx) < 0 or max(idx) >= len(all_tasks):
            raise ValueError(f"evaluate: indices must lie in [0, {len(all_tasks)}) for {split!r}")
        expected = protocol.action_block * env.action_dim
        if model.action_dim != expected:
            raise ValueError(
                f"model.action_dim={model.action_dim} but the protocol needs action_block x "
                f"env.action_dim = {expected}"
            )
        device = model_device(model)
        tasks = all_tasks.select(idx).to(device)
        streams = episode_streams(protocol, split, idx, seed, device)
        run = _open_loop if protocol.mode == "open_loop" else _mpc
        env, model = normalized_actions(env, model)
        results = run(protocol, env, planner, model, tasks.start, tasks.goal, streams)
    results.index = np.asarray(idx)
    return results


def episode_streams(
    protocol: EvalProtocol,
    split: Split,
    indices: Sequence[int],
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> EpisodeStreams:
    """The planner's random streams for episodes ``indices`` of ``split`` (see :func:`evaluate`)."""
    return EpisodeStreams.for_episodes(protocol.seed, split, indices, seed, device)


def plan_problem(
    protocol: EvalProtocol,
    env: TrueEnv,
    model: WorldModel,
    state: Tensor,
    goal: Tensor,
    horizon: int | None = None,
) -> PlanProblem:
    """The planning problem of starts ``state`` and goals ``goal`` ``(B, S)`` under ``model``.

    Encodes what the model observes of both (states, or renders for pixel models) and takes
    the action bounds of one model step (``protocol.action_block`` env steps).
    """
    with torch.no_grad():
        z0 = model.encode(env.observe(model, state))
        g = model.encode(env.observe(model, goal))
    low, high = env.bounds(protocol.action_block, z0)
    return PlanProblem(model, z0, g, horizon or protocol.horizon, low, high)


def _open_loop(
    protocol: EvalProtocol,
    env: TrueEnv,
    planner: Planner,
    model: WorldModel,
    start: Tensor,
    goal: Tensor,
    generator: EpisodeStreams,
) -> EpisodeResults:
    B, device = start.shape[0], start.device
    problem = plan_problem(protocol, env, model, start, goal)
    first_hit = torch.full((B,), math.nan, dtype=torch.float64)
    clock = _Clock(device)

    def probe(iteration: int, actions: Tensor) -> Tensor:
        now = clock.now()
        entered = time.perf_counter()
        with torch.no_grad():
            rollout = env.execute(start, goal, actions, protocol.action_block)
            hit = reached_steps(rollout.success, protocol.success_rule).cpu()
        first_hit[hit & first_hit.isnan()] = now
        clock.excluded += time.perf_counter() - entered
        return hit if protocol.stop_on_success else torch.zeros_like(hit)

    result = planner.plan(problem, generator=generator, probe=probe)
    plan_time = clock.now()
    return _score(protocol, env, start, goal, result, first_hit, plan_time)


def episode_steps(result: PlanResult) -> Tensor:
    """Model steps each problem cost ``(B,)`` float64.

    Until its probe first saw it solved, else the whole call: a solved problem's plan is
    frozen, so later steps were spent on the others in its batch.
    """
    total = torch.full((result.actions.shape[0],), float(result.model_steps), dtype=torch.float64)
    if result.solved_steps is None:
        return total
    at = result.solved_steps.detach().cpu().to(torch.float64)
    return torch.where(at.isnan(), total, at)


def _score(
    protocol: EvalProtocol,
    env: TrueEnv,
    start: Tensor,
    goal: Tensor,
    result: PlanResult,
    first_hit: Tensor,
    plan_time: float,
) -> EpisodeResults:
    with torch.no_grad():
        rollout = env.execute(start, goal, result.actions, protocol.action_block)
    success = reached_steps(rollout.success, protocol.success_rule).cpu()
    tts = torch.where(first_hit.isnan(), torch.full_like(first_hit, plan_time), first_hit)
    tts = torch.where(success, tts, torch.full_like(tts, math.nan))
    steps = episode_steps(result)
    return _results(success, tts, rollout.distances, steps, steps, result.cost, plan_time)


def _results(
    success: Tensor,
    tts: Tensor,
    distances: Tensor,
    model_steps: Tensor,
    steps_to_success: Tensor,
    cost: Tensor | None,
    plan_time: float,
) -> EpisodeResults:
    """Per-episode arrays from tensors: success/tts/model_steps ``(B,)``, distances ``(B, T)``.

    ``steps_to_success`` ``(B,)``: model steps until the episode was solved (NaN'd for
    failures here).
    """
    B = distances.shape[0]
    ok = success.cpu()
    to_success = torch.where(ok, steps_to_success.double().cpu(), math.nan)
    return EpisodeResults(
        index=np.arange(B),
        success=success.cpu().numpy(),
        time_to_success=tts.cpu().numpy(),
        final_distance=distances[:, -1].double().cpu().numpy(),
        min_distance=distances.min(dim=1).values.double().cpu().numpy(),
        model_steps=model_steps.double().cpu().numpy(),
        model_cost=np.full(B, np.nan) if cost is None else cost.detach().double().cpu().numpy(),
        plan_time=np.full(B, plan_time),
        model_steps_to_success=to_success.numpy(),
    )


def _mpc(
    protocol: EvalProtocol,
    env: TrueEnv,
    planner: Planner,
    model: WorldModel,
    start: Tensor,
    goal: Tensor,
    generator: EpisodeStreams,
) -> EpisodeResults:
    B, device, k = start.shape[0], start.device, protocol.action_block
    replans = protocol.mpc_replans or math.ceil(protocol.horizon / protocol.mpc_execute)
    state, init, spent, steps = start, None, 0.0, 0
    first_hit = torch.full((B,), math.nan, dtype=torch.float64)
    hit_steps = torch.full((B,), math.nan, dtype=torch.float64)
    all_distances, all_success, result = [], [], None
    for r in range(replans):
        horizon = protocol.horizon
        if protocol.mpc_shrink:
            horizon = protocol.horizon - r * protocol.mpc_execute
        problem = plan_problem(protocol, env, model, state, goal, horizon)
        clock = _Clock(device)
        result = planner.plan(problem, init, generator=generator)
        spent += clock.now()
        steps += result.model_steps
        chunk = result.actions[:, : protocol.mpc_execute]
        with torch.no_grad():  # the first chunk starts the episode, the next ones continue it
            rollout = env.execute(start, goal, chunk, k) if r == 0 else env.resume(goal, chunk, k)
        hit = reached_steps(rollout.success, "ever").cpu()
        hit_steps[hit & first_hit.isnan()] = float(steps)
        first_hit[hit & first_hit.isnan()] = spent
        all_distances.append(rollout.distances)
        all_success.append(rollout.success)
        next_h = horizon - protocol.mpc_execute if protocol.mpc_shrink else None
        state = rollout.states[:, -1]
        init = result.shifted(protocol.mpc_execute, next_h) if next_h != 0 else None
    distances = torch.cat(all_distances, dim=1)
    success = reached_steps(torch.cat(all_success, dim=1), protocol.success_rule).cpu()
    tts = torch.where(success, first_hit, torch.full_like(first_hit, math.nan))
    tts = torch.where(success & tts.isnan(), torch.full_like(tts, spent), tts)
    total = torch.full((B,), float(steps), dtype=torch.float64)
    to_success = torch.where(hit_steps.isnan(), total, hit_steps)
    return _results(success, tts, distances, total, to_success, result.cost, spent)


def random_floor(
    protocol: EvalProtocol,
    split: Split = "test",
    seed: int = 0,
    repeats: int = 1,
    *,
    sim: Simulator | None = None,
) -> EpisodeResults:
    """The random-policy floor on the same tasks: uniform actions in the bounds.

    Args:
        protocol: The protocol (its tasks, horizon, success rule).
        split: Task split.
        seed: Seed of the random actions; episode ``i``'s ``r``-th rollout draws from its own
            stream keyed by (``protocol.seed``, ``split``, ``i``, ``seed``, ``r``), so the floor
            of an episode does not depend on which other tasks were drawn with it.
        repeats: Random rollouts per task; each counts as its own episode
            (``n = repeats * tasks``).
        sim: For ``env: sim:...`` protocols, the simulator (default: a new one, closed after).
    """
    with _OwnedSim(protocol, sim) as live:
        env = true_env(protocol, live)
        tasks = protocol.tasks(split, live) if protocol.is_sim else protocol.tasks(split)
        start = tasks.start.repeat(repeats, 1)
        goal = tasks.goal.repeat(repeats, 1)
        N, T = start.shape[0], protocol.env_steps
        streams = floor_streams(protocol, split, len(tasks), seed, repeats)
        u = streams.uniform((N, T, env.action_dim), dtype=env.action_low.dtype)
        actions = env.action_low + u * (env.action_high - env.action_low)
        actions = actions.to(start.dtype).reshape(N, protocol.horizon, -1)
        with torch.no_grad():
            rollout = env.execute(start, goal, actions, protocol.action_block)
    success = reached_steps(rollout.success, protocol.success_rule)
    tts = torch.where(success, 0.0, math.nan).double()
    zero = torch.zeros(success.shape[0], dtype=torch.float64)
    results = _results(success, tts, rollout.distances, zero, zero, None, 0.0)
    results.index = np.tile(np.arange(len(tasks)), repeats)
    return results


def floor_streams(
    protocol: EvalProtocol, split: Split, n_tasks: int, seed: int, repeats: int
) -> EpisodeStreams:
    """Streams of the random-policy floor's ``repeats x n_tasks`` rollouts (repeat-major)."""
    keys = [
        stream_key(protocol.seed, SPLITS["floor"], SPLITS[split], i, seed, r)
        for r in range(repeats)
        for i in range(n_tasks)
    ]
    return EpisodeStreams(keys)
