"""World-model workers: Ray actors that own a device and a loaded world model.

A :class:`WorldModelWorker` loads each world model once (cached by spec and the protocol's
environment and action block) and evaluates chunks of episodes, each chunk planned in ONE batched
call (:func:`grasplab.eval.evaluate`). A :class:`WorkerPool` actor hands chunks to whichever
worker is idle, so that trials (light CPU tasks) never queue behind each other on a busy worker
while another one waits.

The pool is declared (``cluster.num_workers``, ``cluster.gpus_per_worker``, fractional GPUs
allowed), not inferred from what is up at start: its resources are asked of the autoscaler
(:func:`request_capacity`) and the driver waits, with a status line, until every worker is
placed or ``cluster.placement_timeout_s`` passes. When a worker dies (its process, or its whole
node), the dispatcher reroutes the chunk it was running to a live worker and starts a
replacement, which joins the pool once Ray can place it: a lost node costs time, never a trial,
and the pool grows back when capacity returns.

The driver imports this module to place, start and call the workers, and never loads torch:
the actor's methods import the tensor code (torch, the planners, the evaluation runner) where
they run, in the worker's process.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from grasplab.eval.protocol import EvalProtocol, fresh_tuning_goals
from grasplab.malloc import keep_freed_memory
from grasplab.platform.config import MODEL_URI_SCHEMES

if TYPE_CHECKING:
    import torch

    from grasplab.envs import Simulator
    from grasplab.world_models import WorldModel


def model_key(spec: str, protocol: EvalProtocol) -> tuple[str, str, str, int]:
    """What a loaded model depends on: the spec and the protocol's env and action block."""
    overrides = json.dumps(dict(protocol.env_overrides), sort_keys=True, default=str)
    return spec, protocol.env, overrides, protocol.action_block


DEFERRED_IMPORTS = ("torch._dynamo",)
"""Modules torch imports on first use, not with ``import torch``: ``torch._dynamo`` on the first
``torch.optim`` optimizer a planner builds (GRASP's and GD's), about 1.3 s of imports on a CPU-2
core. A worker imports them in a background thread from its constructor, so the first chunk of a
sweep does not wait for them while the driver is still starting Tune's trials."""


def import_in_background(modules: Sequence[str] = DEFERRED_IMPORTS) -> threading.Thread:
    """Start importing ``modules`` in a daemon thread (returned).

    A later ``import`` of one of them waits for the thread (Python's per-module import lock)
    instead of importing it again. Import errors are left for that later import to raise.
    """

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - raised again where the module is really needed
                pass

    thread = threading.Thread(target=run, name="grasplab-imports", daemon=True)
    thread.start()
    return thread


def worker_device(device: str, gpu_ids: Sequence[Any]) -> torch.device:
    """The torch device of a worker that Ray gave ``gpu_ids``; fails loudly, never falls back.

    Raises:
        RuntimeError: A GPU is expected and torch sees no CUDA device.
    """
    import torch

    wants_gpu = device == "cuda" or (device == "auto" and bool(gpu_ids))
    if not wants_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"this worker was given GPU(s) {list(gpu_ids)} by Ray (cluster.device={device!r}) "
            f"but torch {torch.__version__} sees no CUDA device (CUDA build: "
            f"{torch.version.cuda}); install a CUDA build of torch on the GPU nodes, or set "
            "cluster.device=cpu to run on the CPU on purpose"
        )
    return torch.device("cuda")


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
        device: ``auto`` (CUDA when Ray gave this actor a GPU, else CPU), ``cpu`` or ``cuda``.

    Raises:
        RuntimeError: A GPU was asked for (``cuda``, or ``auto`` with a GPU from Ray) and torch
            sees none: never a silent fall-back to the CPU.
    """

    def __init__(self, num_threads: int = 1, device: str = "auto") -> None:
        import torch

        keep_freed_memory()  # fewer page faults per planner iteration (grasplab/malloc.py)
        torch.set_num_threads(max(1, num_threads))
        import_in_background()  # overlaps Tune's start, not the first chunk
        self.device = worker_device(device, list(ray.get_gpu_ids()))
        self.models: dict[tuple[str, str, str, int], WorldModel] = {}
        self.sims: dict[tuple[str, str, str, int], Simulator] = {}
        self.loads = 0
        self.chunks = 0

    def sim(self, protocol: EvalProtocol) -> Simulator | None:
        """The real simulator of a ``sim:`` protocol, built on first use only (else None)."""
        if not protocol.is_sim:
            return None
        key = model_key("sim", protocol)
        if key not in self.sims:
            self.sims[key] = protocol.make_sim()
        return self.sims[key]

    def close(self) -> None:
        """Close the simulators (their env processes, rendering contexts); idempotent."""
        sims, self.sims = list(self.sims.values()), {}
        for sim in sims:
            sim.close()

    def model(self, spec: str, protocol: EvalProtocol) -> WorldModel:
        """The world model of ``spec`` for ``protocol``, loaded on first use only."""
        from grasplab.eval.models import load_model

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
        from grasplab.eval.runner import evaluate
        from grasplab.planners import make_planner

        start = time.perf_counter()
        proto = EvalProtocol.from_dict(protocol)
        model, sim = self.model(spec, proto), self.sim(proto)
        results = evaluate(
            proto, make_planner(planner, config), model, split, list(indices), sim=sim
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
        batch: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        """Plan one episode and render its execution in the TRUE environment.

        Open loop, the episode is planned alone with its own random stream and the same success
        probe as :func:`grasplab.eval.evaluate`, so the replay reproduces the evaluated plan
        whatever chunk it was evaluated in (``batch``, the chunk, is only checked to contain
        it). An MPC protocol's episode is planned once, open loop.

        Returns:
            ``frames`` uint8 ``(T+1, S, S, 3)``: the start and every executed env state;
            ``goal`` uint8 ``(S, S, 3)``: the goal state; ``reached`` ``T+1`` bools: goal
            within the success radius at each frame (at or before it under the ``ever``
            rule); ``success`` (under the protocol's rule); ``compute_s`` (seconds of this call).
        """
        import torch

        from grasplab.eval.runner import (
            episode_streams,
            normalized_actions,
            reached_steps,
            true_env,
        )
        from grasplab.planners import PlanProblem, make_planner

        start = time.perf_counter()
        proto = EvalProtocol.from_dict(protocol)
        if batch and int(index) not in [int(i) for i in batch]:
            raise ValueError(f"plan_frames: episode {index} is not in its batch {list(batch)}")
        idx = [int(index)]
        sim = self.sim(proto)
        env, model = normalized_actions(true_env(proto, sim), self.model(spec, proto))
        tasks = proto.tasks(split, sim) if sim is not None else proto.tasks(split)
        tasks = tasks.select(idx).to(self.device)
        with torch.no_grad():
            z0 = model.encode(env.observe(model, tasks.start))
            goal = model.encode(env.observe(model, tasks.goal))
        problem = PlanProblem(model, z0, goal, proto.horizon, *env.bounds(proto.action_block, z0))
        generator = episode_streams(proto, split, idx, 0, self.device)  # as evaluate()

        def probe(iteration: int, actions: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                rollout = env.execute(tasks.start, tasks.goal, actions, proto.action_block)
                hit = reached_steps(rollout.success, proto.success_rule).cpu()
            return hit if proto.stop_on_success else torch.zeros_like(hit)

        result = make_planner(planner, config).plan(problem, generator=generator, probe=probe)
        row = idx.index(int(index))
        with torch.no_grad():
            rollout = env.execute(tasks.start, tasks.goal, result.actions, proto.action_block)
        frames = np.asarray(env.render(rollout.states[row].cpu()))
        goal_frame = np.asarray(env.render(tasks.goal[row : row + 1].cpu()))[0]
        within = rollout.success[row].cpu().numpy().astype(bool)
        if proto.success_rule == "ever":
            within = np.maximum.accumulate(within)
        success = reached_steps(rollout.success[row : row + 1], proto.success_rule)
        return {
            "frames": frames,
            "goal": goal_frame,
            "reached": [False, *(bool(r) for r in within)],
            "success": bool(success[0]),
            "compute_s": time.perf_counter() - start,
        }

    def random_floor(self, protocol: dict[str, Any], split: str) -> dict[str, float]:
        """The summary of the random-action floor on ``split`` (:func:`grasplab.eval.random_floor`).

        A worker computes it, not the driver: the tasks, the env (or the simulator, already
        open here) and their memory stay where the episodes are evaluated.
        """
        from grasplab.eval.runner import random_floor

        proto = EvalProtocol.from_dict(protocol)
        return random_floor(proto, split, sim=self.sim(proto)).summary()

    def fresh_tuning_goals(self, protocol: dict[str, Any], extra: int) -> dict[str, Any] | str:
        """:func:`grasplab.eval.protocol.fresh_tuning_goals` of ``protocol`` (a dict).

        Returns:
            ``{"protocol": extended protocol as a dict, "indices": the fresh goals}``, or why
            there are none.
        """
        proto = EvalProtocol.from_dict(protocol)
        fresh = fresh_tuning_goals(proto, extra, self.sim(proto))
        if isinstance(fresh, str):
            return fresh
        extended, indices = fresh
        return {"protocol": extended.to_dict(), "indices": indices}

    def fingerprint(self) -> dict[str, str]:
        """The runtime fingerprint of this worker: its device, threads, libraries and machine."""
        from grasplab.platform.fingerprint import fingerprint

        return fingerprint(self.device.type)

    def stats(self) -> dict[str, Any]:
        """Counters: models loaded, chunks evaluated, process id, device."""
        return {
            "loads": self.loads,
            "chunks": self.chunks,
            "pid": os.getpid(),
            "device": str(self.device),
            "node": ray.get_runtime_context().get_node_id(),
            "gpus": list(ray.get_gpu_ids()),
        }


class WorkerPool:
    """An async dispatcher: each call runs on the next idle worker (FIFO over callers).

    It owns the worker actors' lifecycle: a worker that dies (``RayActorError``: its process
    crashed, or its node is gone) is dropped, the call it was running is sent to another worker,
    and a replacement actor is created with the same options. The replacement joins the idle
    queue once Ray has placed it and its constructor returned, which may be never (no capacity
    left) or later (the autoscaler, or an operator, added a node): the pool shrinks and grows
    back without a trial noticing.

    Args:
        names: Names of the :class:`WorldModelWorker` actors already started.
        namespace: Their Ray namespace.
        options: The actor options to start replacements with (``name`` is set per actor).
        init_args: The constructor arguments of :class:`WorldModelWorker`.
        max_replacements: Replacements per worker slot whose constructor may fail before the
            slot is given up (a node that is merely gone does not count: its replacement waits).
        empty_timeout: Seconds a call waits while NO worker is alive before it fails.
    """

    def __init__(
        self,
        names: Sequence[str],
        namespace: str,
        options: dict[str, Any] | None = None,
        init_args: Sequence[Any] = (),
        max_replacements: int = 3,
        empty_timeout: float = 600.0,
    ) -> None:
        self.names = list(names)
        self.empty_timeout = empty_timeout
        self.empty_since: float | None = None
        self.namespace = namespace
        self.options = dict(options or {})
        self.init_args = tuple(init_args)
        self.max_replacements = max_replacements
        self.idle: asyncio.Queue | None = None
        self.alive: dict[str, Any] = {}
        self.pending: set[str] = set()
        self.events: list[str] = []
        self.failures: dict[str, int] = {}
        self.rerouted = 0
        self.generation = 0
        self.gates: dict[str, dict[str, Any]] = {}

    def _queue(self) -> asyncio.Queue:
        if self.idle is None:
            self.idle = asyncio.Queue()
            for name in self.names:
                worker = ray.get_actor(name, namespace=self.namespace)
                self.alive[name] = worker
                self.idle.put_nowait((name, worker))
        return self.idle

    async def call(self, method: str, kwargs: dict[str, Any]) -> Any:
        """``worker.method(**kwargs)`` on the first idle worker; rerouted if that worker dies.

        Raises:
            RuntimeError: Every worker slot was given up (no worker can ever take the call).
        """
        idle = self._queue()
        while True:
            try:
                name, worker = await asyncio.wait_for(idle.get(), timeout=5.0)
            except TimeoutError:
                self._check_not_empty()
                continue
            if name not in self.alive:
                continue  # dropped while it sat in the queue
            try:
                result = await getattr(worker, method).remote(**kwargs)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
                self._lost(name, worker, error)
                self.rerouted += 1
                continue
            idle.put_nowait((name, worker))
            return result

    def _check_not_empty(self) -> None:
        """Raise when no worker has been alive for ``empty_timeout`` seconds (or none can be)."""
        if self.alive:
            self.empty_since = None
            return
        now = time.monotonic()
        self.empty_since = self.empty_since or now
        if not self.pending or now - self.empty_since > self.empty_timeout:
            raise RuntimeError(
                f"no world-model worker alive for {now - self.empty_since:.0f} s "
                f"({len(self.pending)} replacements unplaced): {'; '.join(self.events[-3:])}"
            )

    def _lost(self, name: str, worker: Any, error: BaseException) -> None:
        """Drop a dead worker and start its replacement (in the background)."""
        if self.alive.pop(name, None) is None:
            return
        self.events.append(f"{name} lost ({type(error).__name__}: {_cause(error)[:200]})")
        _kill(worker)
        self._respawn(name.split("@")[0])

    def _respawn(self, slot: str) -> None:
        """Start a replacement for ``slot`` unless its constructor failed too often."""
        if self.failures.get(slot, 0) > self.max_replacements:
            self.events.append(f"{slot} given up after {self.max_replacements} failed replacements")
            return
        self.generation += 1
        name = f"{slot}@{self.generation}"
        self.pending.add(name)
        asyncio.get_running_loop().create_task(self._replace(slot, name))

    async def _replace(self, slot: str, name: str) -> None:
        options = {**self.options, "name": name, "namespace": self.namespace}
        worker = ray.remote(WorldModelWorker).options(**options).remote(*self.init_args)
        try:
            await worker.stats.remote()
        except ray.exceptions.RayActorError as error:
            self.pending.discard(name)
            if getattr(error, "actor_init_failed", False):  # not merely a node gone meanwhile
                self.failures[slot] = self.failures.get(slot, 0) + 1
            self.events.append(f"{name} failed to start ({_cause(error)[:200]})")
            _kill(worker)
            self._respawn(slot)
            return
        self.pending.discard(name)
        self.alive[name] = worker
        self.events.append(f"{name} joined (replacing {slot})")
        self._queue().put_nowait((name, worker))

    async def gate(self, key: str, expected: int, timeout: float) -> str:
        """Hold each caller until ``expected`` callers of ``key`` have come; how it opened.

        The first trials of a Tune experiment call it before their first chunk, so that none
        of them ends before the experiment's every first trial actor has started. Tune gives
        a trial that ends its actor to the next pending trial, and starts a new actor for a
        pending trial that finds none free; a trial ending while a first actor is still
        starting leaves a pending trial holding an actor request that the next ending trial's
        actor always beats (the request is withdrawn and the next new trial makes another),
        for the rest of the experiment: one trial slot of ``sweep.trials_per_worker`` x
        workers idle and a placement-group request made and withdrawn per trial (BENCHMARKS 2:
        25-30% more time per tiny trial). ``"all"`` when every expected caller came;
        ``"timeout"`` when ``timeout`` seconds passed since the first (an actor that cannot be
        placed, a resumed experiment with fewer trials left): the callers then go on; later
        callers pass at once.
        """
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = {
                "expected": expected,
                "arrived": 0,
                "opened": None,
                "event": asyncio.Event(),
                "first": time.monotonic(),
            }
        gate["arrived"] += 1
        if gate["opened"] is None and gate["arrived"] >= gate["expected"]:
            gate["opened"] = "all"
            gate["event"].set()
        if gate["opened"] is None:
            left = gate["first"] + timeout - time.monotonic()
            try:
                await asyncio.wait_for(gate["event"].wait(), timeout=max(left, 0.0))
            except TimeoutError:
                if gate["opened"] is None:
                    gate["opened"] = "timeout"
                    gate["event"].set()
        return gate["opened"]

    def status(self) -> dict[str, Any]:
        """The pool's workers, ``rerouted`` chunks, ``events`` and ``gates``.

        ``alive`` and ``pending`` worker names; ``gates``: key -> ``expected``, ``arrived``,
        ``opened``.
        """
        return {
            "alive": sorted(self.alive),
            "pending": sorted(self.pending),
            "rerouted": self.rerouted,
            "events": list(self.events),
            "gates": {
                key: {k: gate[k] for k in ("expected", "arrived", "opened")}
                for key, gate in self.gates.items()
            },
        }

    def workers(self) -> list[Any]:
        """Handles of the live workers."""
        self._queue()
        return list(self.alive.values())


@dataclass(frozen=True)
class Placement:
    """How many workers and what each asks Ray for.

    Attributes:
        num_workers: Worker actors.
        num_cpus: Logical CPUs per worker.
        num_gpus: GPUs per worker (fractions share a GPU between small world models).
        threads: Torch threads per worker.
        device: ``auto``, ``cpu`` or ``cuda`` (:func:`worker_device`).
    """

    num_workers: int
    num_cpus: float
    num_gpus: float
    threads: int
    device: str = "auto"

    def bundle(self) -> dict[str, float]:
        """One worker's resources, as the autoscaler reads them."""
        bundle = {"CPU": self.num_cpus}
        if self.num_gpus:
            bundle["GPU"] = self.num_gpus
        return bundle

    def describe(self) -> str:
        """``2 x {CPU: 1, GPU: 0.5}``."""
        inner = ", ".join(f"{k}: {v:g}" for k, v in self.bundle().items())
        return f"{self.num_workers} x {{{inner}}}"


def plan_placement(
    resources: dict[str, float],
    num_workers: int | None,
    trial_cpus: float,
    gpus_per_worker: float = 0,
    cpus_per_worker: float | None = None,
    device: str = "auto",
) -> Placement:
    """The pool: declared GPU workers, or (the laptop default) one CPU worker per CPU.

    GPU workers (``gpus_per_worker > 0``): exactly ``num_workers`` of them, each asking
    ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs (default 1), whatever the cluster holds
    now: an autoscaler launches the nodes they need. CPU only: ``num_workers`` (default: one per
    CPU of ``resources``), each with ONE torch thread (batched planning of a chunk is too small to
    gain from more threads; scale by adding workers), leaving ``trial_cpus`` (the CPUs of the
    trials that feed one worker) per worker free for Tune.

    Raises:
        ValueError: GPU workers without a count, or CPU workers that cannot fit.
    """
    if gpus_per_worker > 0:
        if not num_workers:
            raise ValueError("GPU workers need cluster.num_workers")
        cpus = float(cpus_per_worker or 1.0)
        return Placement(int(num_workers), cpus, gpus_per_worker, max(1, int(cpus)), device)
    cpus = float(resources.get("CPU", 1))
    count = int(num_workers or max(1, int(cpus)))
    if cpus_per_worker:
        return Placement(count, float(cpus_per_worker), 0, max(1, int(cpus_per_worker)), device)
    share = math.floor(100 * (cpus - count * trial_cpus) / count) / 100
    if share <= 0:
        raise ValueError(f"{count} workers and their trials do not fit in {cpus} CPUs")
    return Placement(count, min(1.0, share), 0, 1, device)


def request_capacity(placement: Placement | None) -> None:
    """Ask the autoscaler for the pool's bundles (``None``: withdraw the request).

    The request stays while the sweep runs, so that an autoscaler also replaces a lost node.
    Harmless on a cluster without an autoscaler.
    """
    from ray.autoscaler.sdk import request_resources

    bundles = [placement.bundle()] * placement.num_workers if placement else []
    request_resources(bundles=bundles)


@dataclass
class Pool:
    """The worker actors of a sweep and their dispatcher."""

    dispatcher: Any
    workers: list[Any]
    names: list[str]
    placement: Placement
    placed_s: float = 0.0
    """Seconds from asking for the workers to all of them constructed."""

    def call(self, method: str, **kwargs: Any) -> ray.ObjectRef:
        """Dispatch one call to the next idle worker (returns an object ref)."""
        return self.dispatcher.call.remote(method, kwargs)

    def status(self) -> dict[str, Any]:
        """The dispatcher's view: live and pending workers, rerouted chunks, events."""
        return ray.get(self.dispatcher.status.remote(), timeout=30)

    def live_workers(self) -> list[Any]:
        """Handles of the workers alive now (replacements included)."""
        return ray.get(self.dispatcher.workers.remote(), timeout=30)

    def stats(self) -> list[dict[str, Any]]:
        """:meth:`WorldModelWorker.stats` of every live worker (node, GPUs, device, loads)."""
        return ray.get([w.stats.remote() for w in self.live_workers()], timeout=60)

    def shutdown(self) -> None:
        """Kill the workers and the dispatcher (they are not detached: also gone with the job)."""
        actors = [*self.workers]
        try:
            actors += self.live_workers()
        except Exception:  # noqa: BLE001 - dispatcher gone: kill what we know
            pass
        try:  # simulators hold env processes: close them before the actors go
            ray.get([actor.close.remote() for actor in actors], timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck worker is killed anyway
            pass
        for actor in [self.dispatcher, *actors]:
            _kill(actor)


def worker_options(placement: Placement, namespace: str, env_vars: dict[str, str]) -> dict:
    """Ray options of a worker actor (without its name)."""
    options: dict[str, Any] = {
        "num_cpus": placement.num_cpus,
        "num_gpus": placement.num_gpus,
        "max_restarts": 0,  # the dispatcher replaces dead workers itself (see WorkerPool)
        "namespace": namespace,
        "runtime_env": {"env_vars": env_vars},
    }
    if placement.num_gpus == 0:
        options["scheduling_strategy"] = "SPREAD"
    return options


def start_pool(
    prefix: str,
    placement: Placement,
    namespace: str,
    env_vars: dict[str, str] | None = None,
    *,
    timeout: float = 600.0,
    status: Any = None,
) -> Pool:
    """Create (or find by name) the workers and the dispatcher of a sweep; wait until placed.

    Args:
        prefix: Unique per sweep; actors are ``{prefix}-worker-{i}`` and ``{prefix}-pool``.
        placement: From :func:`plan_placement`.
        namespace: Ray namespace of the named actors (trials find the dispatcher there).
        env_vars: Environment of the workers (e.g. ``MLFLOW_TRACKING_URI`` for model URIs).
        timeout: Seconds to wait for every worker to be placed and constructed.
        status: Called with a status line while waiting (default: print).

    Raises:
        PlacementTimeout: Not every worker was placed within ``timeout``.
        RuntimeError: A worker's constructor failed (e.g. no CUDA where a GPU was asked for).
    """
    names = [f"{prefix}-worker-{i}" for i in range(placement.num_workers)]
    options = worker_options(placement, namespace, env_vars or {})
    init_args = (placement.threads, placement.device)
    actor_cls = ray.remote(WorldModelWorker)

    def create(name: str) -> Any:
        return actor_cls.options(name=name, get_if_exists=True, **options).remote(*init_args)

    workers = [create(n) for n in names]
    started = time.monotonic()
    try:
        wait_placed(workers, names, create, placement, timeout, status)
    except BaseException:
        for worker in workers:
            _kill(worker)
        raise
    here = ray.get_runtime_context().get_node_id()
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
            # on the driver's (head) node: it must outlive any worker node
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        )
        .remote(names, namespace, options, init_args, empty_timeout=timeout)
    )
    return Pool(dispatcher, workers, names, placement, time.monotonic() - started)


class PlacementTimeout(RuntimeError):
    """The declared pool was not placed in time."""


def wait_placed(
    workers: list[Any],
    names: list[str],
    create: Any,
    placement: Placement,
    timeout: float,
    status: Any,
) -> None:
    """Wait until every worker's constructor has returned, printing progress every 10 s.

    A worker that dies before it is up for another reason than its constructor (its node went
    away, e.g. an autoscaled node that failed) is created again in place (``workers`` and
    ``names`` are updated).

    Raises:
        PlacementTimeout: Some workers were still unplaced after ``timeout`` seconds.
        RuntimeError: A worker's constructor raised (its message is kept).
    """
    status = status or (lambda line: print(line, flush=True))
    pending = {w.stats.remote(): i for i, w in enumerate(workers)}
    start, shown, retries = time.monotonic(), 0.0, 0  # first line after 10 s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=2.0)
        for ref in done:
            index = pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as error:
                if getattr(error, "actor_init_failed", False) or retries >= 3 * len(workers):
                    cause = _cause(error)
                    raise RuntimeError(f"a world-model worker failed to start: {cause}") from None
                retries += 1
                status(f"[cluster] {names[index]} died before it was up ({_cause(error)}); again")
                names[index] = f"{names[index].split('@')[0]}@{retries}"
                workers[index] = create(names[index])
                pending[workers[index].stats.remote()] = index
        elapsed = time.monotonic() - start
        if not pending:
            break
        if elapsed > timeout:
            raise PlacementTimeout(
                f"{len(pending)} of {placement.num_workers} world-model workers "
                f"({placement.describe()}) were not placed within {timeout:.0f} s; the cluster "
                f"has {_resources()}: add nodes (or let the autoscaler launch them), lower "
                "cluster.num_workers / gpus_per_worker, or raise cluster.placement_timeout_s"
            )
        if elapsed - shown >= 10.0:
            shown = elapsed
            status(
                f"[cluster] waiting for workers: {placement.num_workers - len(pending)}/"
                f"{placement.num_workers} placed ({placement.describe()} asked); cluster now "
                f"{_resources()}; {elapsed:.0f} s of {timeout:.0f} s"
            )


def _resources() -> str:
    total = ray.cluster_resources()
    keys = [k for k in ("CPU", "GPU") if k in total] or ["CPU"]
    return "{" + ", ".join(f"{k}: {total.get(k, 0):g}" for k in keys) + "}"


def _cause(error: BaseException) -> str:
    """The root message of a Ray actor error (the constructor's exception, when there is one).

    Its last ``...Error: message`` line, else its first line.
    """
    text = str(error).strip()
    found = re.findall(r"^\s*(\w*(?:Error|Exception): .+)$", text, re.MULTILINE)
    return (found[-1] if found else text.splitlines()[0] if text else type(error).__name__)[:400]


def _kill(actor: Any) -> None:
    """``ray.kill`` that tolerates an actor already gone."""
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already dead
        pass
