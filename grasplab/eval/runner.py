"""The runner: plan a batch of episodes in one call, execute in the TRUE env, score.

A pure function of (protocol, planner, model, episodes) -> per-episode results: this is what a
platform worker, a test and a benchmark all run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from grasplab.envs import Env
from grasplab.eval.protocol import EvalProtocol, Split
from grasplab.eval.results import EpisodeResults
from grasplab.planners import Planner, PlanProblem, PlanResult
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
    seed: int | None = None,
) -> EpisodeResults:
    """Plan the selected episodes in ONE batched call and score them in the true env.

    Args:
        protocol: The evaluation protocol.
        planner: Any planner (holds its config).
        model: World model; its device is the planning device.
        split: ``tune`` or ``test`` task set.
        indices: Task indices within the split (default: all).
        seed: Planner seed (default: derived from the protocol seed and the first index).

    Returns:
        Per-episode results in the order of ``indices``.
    """
    env = protocol.make_env()
    all_tasks = protocol.tasks(split)
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
    if seed is None:
        seed = 7919 * protocol.seed + idx[0] + (0 if split == "tune" else 10**6)
    generator = torch.Generator(device=device).manual_seed(seed)
    run = _open_loop if protocol.mode == "open_loop" else _mpc
    results = run(protocol, env, planner, model, tasks.start, tasks.goal, generator)
    results.index = np.asarray(idx)
    return results


def _problem(
    protocol: EvalProtocol,
    env: Env,
    model: WorldModel,
    state: Tensor,
    goal: Tensor,
    horizon: int | None = None,
) -> PlanProblem:
    with torch.no_grad():
        z0 = model.encode(observe(model, env, state))
        g = model.encode(observe(model, env, goal))
    low, high = action_bounds(env, protocol.action_block, z0)
    return PlanProblem(model, z0, g, horizon or protocol.horizon, low, high)


def _open_loop(
    protocol: EvalProtocol,
    env: Env,
    planner: Planner,
    model: WorldModel,
    start: Tensor,
    goal: Tensor,
    generator: torch.Generator,
) -> EpisodeResults:
    B, device = start.shape[0], start.device
    problem = _problem(protocol, env, model, start, goal)
    first_hit = torch.full((B,), math.nan, dtype=torch.float64)
    clock = _Clock(device)

    def probe(iteration: int, actions: Tensor) -> Tensor:
        now = clock.now()
        entered = time.perf_counter()
        with torch.no_grad():
            distances, _ = execute(env, start, goal, actions, protocol.action_block)
            hit = reached(distances, env.success_radius, protocol.success_rule).cpu()
        first_hit[hit & first_hit.isnan()] = now
        clock.excluded += time.perf_counter() - entered
        return hit if protocol.stop_on_success else torch.zeros_like(hit)

    result = planner.plan(problem, generator=generator, probe=probe)
    plan_time = clock.now()
    return _score(protocol, env, start, goal, result, first_hit, plan_time)


def _score(
    protocol: EvalProtocol,
    env: Env,
    start: Tensor,
    goal: Tensor,
    result: PlanResult,
    first_hit: Tensor,
    plan_time: float,
) -> EpisodeResults:
    with torch.no_grad():
        distances, _ = execute(env, start, goal, result.actions, protocol.action_block)
    success = reached(distances, env.success_radius, protocol.success_rule).cpu()
    tts = torch.where(first_hit.isnan(), torch.full_like(first_hit, plan_time), first_hit)
    tts = torch.where(success, tts, torch.full_like(tts, math.nan))
    return _results(success, tts, distances, result.model_steps, result.cost, plan_time)


def _results(
    success: Tensor,
    tts: Tensor,
    distances: Tensor,
    model_steps: float,
    cost: Tensor | None,
    plan_time: float,
) -> EpisodeResults:
    """Per-episode arrays from tensors: success/tts ``(B,)``, distances ``(B, T)``."""
    B = distances.shape[0]
    return EpisodeResults(
        index=np.arange(B),
        success=success.cpu().numpy(),
        time_to_success=tts.cpu().numpy(),
        final_distance=distances[:, -1].double().cpu().numpy(),
        min_distance=distances.min(dim=1).values.double().cpu().numpy(),
        model_steps=np.full(B, model_steps),
        model_cost=np.full(B, np.nan) if cost is None else cost.detach().double().cpu().numpy(),
        plan_time=np.full(B, plan_time),
    )


def _mpc(
    protocol: EvalProtocol,
    env: Env,
    planner: Planner,
    model: WorldModel,
    start: Tensor,
    goal: Tensor,
    generator: torch.Generator,
) -> EpisodeResults:
    B, device, k = start.shape[0], start.device, protocol.action_block
    replans = protocol.mpc_replans or math.ceil(protocol.horizon / protocol.mpc_execute)
    state, init, spent, steps = start, None, 0.0, 0
    first_hit = torch.full((B,), math.nan, dtype=torch.float64)
    all_distances, result = [], None
    for r in range(replans):
        horizon = protocol.horizon
        if protocol.mpc_shrink:
            horizon = protocol.horizon - r * protocol.mpc_execute
        problem = _problem(protocol, env, model, state, goal, horizon)
        clock = _Clock(device)
        result = planner.plan(problem, init, generator=generator)
        spent += clock.now()
        steps += result.model_steps
        chunk = result.actions[:, : protocol.mpc_execute]
        with torch.no_grad():
            distances, visited = execute(env, state, goal, chunk, k)
        hit = reached(distances, env.success_radius, "ever").cpu()
        first_hit[hit & first_hit.isnan()] = spent
        all_distances.append(distances)
        next_h = horizon - protocol.mpc_execute if protocol.mpc_shrink else None
        state = visited[:, -1]
        init = result.shifted(protocol.mpc_execute, next_h) if next_h != 0 else None
    distances = torch.cat(all_distances, dim=1)
    success = reached(distances, env.success_radius, protocol.success_rule).cpu()
    tts = torch.where(success, first_hit, torch.full_like(first_hit, math.nan))
    tts = torch.where(success & tts.isnan(), torch.full_like(tts, spent), tts)
    return _results(success, tts, distances, steps, result.cost, spent)


def random_floor(
    protocol: EvalProtocol, split: Split = "test", seed: int = 0, repeats: int = 1
) -> EpisodeResults:
    """The random-policy floor on the same tasks: uniform actions in the bounds.

    Args:
        protocol: The protocol (its tasks, horizon, success rule).
        split: Task split.
        seed: Seed of the random actions.
        repeats: Random rollouts per task; each counts as its own episode
            (``n = repeats * tasks``).
    """
    env = protocol.make_env()
    tasks = protocol.tasks(split)
    g = torch.Generator().manual_seed(seed)
    start = tasks.start.repeat(repeats, 1)
    goal = tasks.goal.repeat(repeats, 1)
    N, T = start.shape[0], protocol.env_steps
    u = torch.rand((N, T, env.action_dim), generator=g)
    actions = env.action_low + u * (env.action_high - env.action_low)
    with torch.no_grad():
        distances, _ = execute(
            env, start, goal, actions.reshape(N, protocol.horizon, -1), protocol.action_block
        )
    success = reached(distances, env.success_radius, protocol.success_rule)
    tts = torch.where(success, 0.0, math.nan).double()
    results = _results(success, tts, distances, 0, None, 0.0)
    results.index = np.tile(np.arange(len(tasks)), repeats)
    return results
