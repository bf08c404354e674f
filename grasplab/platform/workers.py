"""World-model workers: Ray actors that own a device and a loaded world model.

A :class:`WorldModelWorker` loads each world model once (cached by spec and the protocol's
environment and action block) and evaluates chunks of episodes, each chunk planned in ONE batched
call (:func:`grasplab.eval.evaluate`). A :class:`WorkerPool` actor hands chunks to whichever
worker is idle, so that trials (light CPU tasks) never queue behind each other on a busy worker
while another one waits. Ray restarts a dead worker and retries its in-flight chunk
(``max_restarts`` / ``max_task_retries``), so a killed worker costs time, never a trial.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from grasplab.eval import EvalProtocol, evaluate, execute, observe
from grasplab.eval.models import load_model
from grasplab.eval.runner import action_bounds
from grasplab.planners import PlanProblem, make_planner
from grasplab.platform.config import MODEL_URI_SCHEMES
from grasplab.world_models import WorldModel

WORKER_RESTARTS = 3
"""Times Ray restarts a dead worker (and retries its in-flight chunk) before giving up."""


def model_key(spec: str, protocol: EvalProtocol) -> tuple[str, str, str, int]:
    """What a loaded model depends on: the spec and the protocol's env and action block."""
    overrides = json.dumps(dict(protocol.env_overrides), sort_keys=True, default=str)
    return spec, protocol.env, overrides, protocol.action_block


def resolve_spec(spec: str) -> str:
    """A local spec: MLflow model/artifact URIs are downloaded (once per worker) to a folder."""
    if not spec.startswith(MODEL_URI_SCHEMES):
        return spec
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=spec)


class WorldModelWorker:
    """One device, the world models loaded on it, and episode-chunk evaluation.

    Args:
        num_threads: Torch intra-op threads (the CPU share this actor was given).
    """

    def __init__(self, num_threads: int = 1) -> None:
        torch.set_num_threads(max(1, num_threads))
        gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        self.device = torch.device("cuda" if gpu else "cpu")
        self.models: dict[tuple[str, str, str, int], WorldModel] = {}
        self.loads = 0
        self.chunks = 0

    def model(self, spec: str, protocol: EvalProtocol) -> WorldModel:
        """The world model of ``spec`` for ``protocol``, loaded on first use only."""
        key = model_key(spec, protocol)
        if key not in self.models:
            self.models[key] = load_model(resolve_spec(spec), protocol, self.device)
            self.loads += 1
        return self.models[key]

    def evaluate(
        self,
        spec: str,
        protocol: dict[str, Any],
        planner: str,
        config: dict[str, Any],
        split: str,
        indices: Sequence[int],
    ) -> dict[str, Any]:
        """Plan and score one chunk of episodes in one batched call.

        Returns:
            ``records`` (per-episode dicts, :meth:`EpisodeResults.to_records`), ``compute_s``
            (seconds spent in this call), ``worker`` (process id) and ``device``.
        """
        start = time.perf_counter()
        proto = EvalProtocol.from_dict(protocol)
        results = evaluate(
            proto, make_planner(planner, config), self.model(spec, proto), split, list(indices)
        )
        self.chunks += 1
        return {
            "records": results.to_records(),
            "compute_s": time.perf_counter() - start,
            "worker": os.getpid(),
            "device": str(self.device),
        }

    def plan_frames(
        self,
        spec: str,
        protocol: dict[str, Any],
        planner: str,
        config: dict[str, Any],
        split: str,
        index: int,
    ) -> dict[str, Any]:
        """Plan one episode and render its execution in the TRUE environment.

        Returns:
            ``frames`` uint8 ``(T+1, S, 2S, 3)``: the executed states beside the goal, and
            ``success`` (reached by the protocol's radius at some step).
        """
        proto = EvalProtocol.from_dict(protocol)
        model, env = self.model(spec, proto), proto.make_env()
        tasks = proto.tasks(split).select([index]).to(self.device)
        with torch.no_grad():
            z0 = model.encode(observe(model, env, tasks.start))
            goal = model.encode(observe(model, env, tasks.goal))
        problem = PlanProblem(
            model, z0, goal, proto.horizon, *action_bounds(env, proto.action_block, z0)
        )
        generator = torch.Generator(device=self.device).manual_seed(proto.seed + index)
        result = make_planner(planner, config).plan(problem, generator=generator)
        with torch.no_grad():
            distances, states = execute(
                env, tasks.start, tasks.goal, result.actions, proto.action_block
            )
        frames = env.render(states[0].cpu()).numpy()
        goal_frame = env.render(tasks.goal[0].cpu()).numpy()
        side = np.broadcast_to(goal_frame, frames.shape)
        success = bool((distances < env.success_radius).any())
        return {"frames": np.concatenate([frames, side], axis=2), "success": success}

    def stats(self) -> dict[str, Any]:
        """Counters: models loaded, chunks evaluated, process id, device."""
        return {
            "loads": self.loads,
            "chunks": self.chunks,
            "pid": os.getpid(),
            "device": str(self.device),
        }


class WorkerPool:
    """An async dispatcher: each call runs on the next idle worker (FIFO over callers).

    Args:
        names: Names of the :class:`WorldModelWorker` actors.
        namespace: Their Ray namespace.
    """

    def __init__(self, names: Sequence[str], namespace: str) -> None:
        self.names = list(names)
        self.namespace = namespace
        self.idle: asyncio.Queue | None = None

    def _queue(self) -> asyncio.Queue:
        if self.idle is None:
            self.idle = asyncio.Queue()
            for name in self.names:
                self.idle.put_nowait(ray.get_actor(name, namespace=self.namespace))
        return self.idle

    async def call(self, method: str, kwargs: dict[str, Any]) -> Any:
        """``worker.method(**kwargs)`` on the first idle worker; waits for one if all are busy."""
        idle = self._queue()
        worker = await idle.get()
        try:
            return await getattr(worker, method).remote(**kwargs)
        finally:
            idle.put_nowait(worker)

    def size(self) -> int:
        """Number of workers."""
        return len(self.names)


@dataclass(frozen=True)
class Placement:
    """How many workers and what each asks Ray for.

    Attributes:
        num_workers: Worker actors.
        num_cpus: Logical CPUs per worker.
        num_gpus: GPUs per worker (0 on a CPU-only cluster, never more than it has).
        threads: Torch threads per worker.
    """

    num_workers: int
    num_cpus: float
    num_gpus: int
    threads: int


def plan_placement(
    resources: dict[str, float], num_workers: int | None, trial_cpus: float
) -> Placement:
    """Size the pool from ``ray.cluster_resources()``.

    GPUs present: one worker per GPU (``num_gpus=1`` each). CPU only: one worker per CPU, each
    with ONE torch thread (batched planning of a chunk is too small to gain from more threads;
    scale by adding workers), leaving ``trial_cpus`` (the CPUs of the trials that feed one
    worker) per worker free for Tune.
    """
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus >= 1:
        count = min(num_workers or gpus, gpus)
        spare = max(1.0, cpus - count * trial_cpus)
        return Placement(count, min(1.0, spare / count), 1, max(1, int(spare // count)))
    count = num_workers or max(1, int(cpus))
    share = math.floor(100 * (cpus - count * trial_cpus) / count) / 100
    if share <= 0:
        raise ValueError(f"{count} workers and their trials do not fit in {cpus} CPUs")
    return Placement(count, min(1.0, share), 0, 1)


@dataclass
class Pool:
    """The worker actors of a sweep and their dispatcher."""

    dispatcher: Any
    workers: list[Any]
    names: list[str]
    placement: Placement

    def call(self, method: str, **kwargs: Any) -> ray.ObjectRef:
        """Dispatch one call to the next idle worker (returns an object ref)."""
        return self.dispatcher.call.remote(method, kwargs)

    def shutdown(self) -> None:
        """Kill the workers and the dispatcher (they are not detached: also gone with the job)."""
        for actor in [self.dispatcher, *self.workers]:
            ray.kill(actor, no_restart=True)


def start_pool(
    prefix: str, placement: Placement, namespace: str, env_vars: dict[str, str] | None = None
) -> Pool:
    """Create (or find by name) the workers and the dispatcher of a sweep.

    Args:
        prefix: Unique per sweep; actors are ``{prefix}-worker-{i}`` and ``{prefix}-pool``.
        placement: From :func:`plan_placement`.
        namespace: Ray namespace of the named actors (trials find the dispatcher there).
        env_vars: Environment of the workers (e.g. ``MLFLOW_TRACKING_URI`` for model URIs).
    """
    names = [f"{prefix}-worker-{i}" for i in range(placement.num_workers)]
    options: dict[str, Any] = {
        "num_cpus": placement.num_cpus,
        "num_gpus": placement.num_gpus,
        "max_restarts": WORKER_RESTARTS,
        "max_task_retries": WORKER_RESTARTS,
        "namespace": namespace,
        "get_if_exists": True,
        "runtime_env": {"env_vars": env_vars or {}},
    }
    if placement.num_gpus == 0:
        options["scheduling_strategy"] = "SPREAD"
    actor_cls = ray.remote(WorldModelWorker)
    workers = [actor_cls.options(name=n, **options).remote(placement.threads) for n in names]
    ray.get([w.stats.remote() for w in workers])  # fail here, not inside a trial
    dispatcher = (
        ray.remote(WorkerPool)
        .options(
            name=f"{prefix}-pool",
            namespace=namespace,
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            get_if_exists=True,
            max_concurrency=1000,
        )
        .remote(names, namespace)
    )
    return Pool(dispatcher, workers, names, placement)
