"""Resolve a world-model spec (``oracle``, a checkpoint directory or an import path) for a protocol.

A spec is a string. A world model built by the user's own code is the canonical JSON of
``{"target": "pkg.module:factory", "kwargs": {...}}`` (:func:`target_spec`): plain data that
travels to every worker, where :func:`load_model` imports the factory and builds the model on the
worker's device. :func:`probe_model` is the one-step check the driver runs before any trial.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from grasplab.eval.protocol import EvalProtocol, env_action_size
from grasplab.eval.runner import model_device, true_env
from grasplab.targets import call_with_accepted, first_line, import_target
from grasplab.world_models import OracleModel, WorldModel, as_flat

ORACLE = "oracle"
TARGET_KEYS = ("target", "kwargs")


def target_spec(target: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """The spec of a world model built by ``target(**kwargs, device=...)``: canonical JSON."""
    return json.dumps({"target": target, "kwargs": dict(kwargs or {})}, sort_keys=True)


def parse_target_spec(spec: Any) -> dict[str, Any] | None:
    """``{"target", "kwargs"}`` of a target spec (a JSON string or a mapping), else None.

    Raises:
        ValueError: A mapping or JSON object that is not ``{target, kwargs}``.
    """
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as error:
            raise ValueError(f"world model spec is not valid JSON: {error}") from error
    if not isinstance(spec, Mapping):
        return None
    unknown = sorted(set(spec) - set(TARGET_KEYS))
    if unknown or "target" not in spec:
        raise ValueError(f"a world model target needs keys {list(TARGET_KEYS)}, got {sorted(spec)}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"world_model.kwargs must be a mapping, got {kwargs!r}")
    return {"target": spec["target"], "kwargs": dict(kwargs)}


def load_model(
    spec: str | Mapping[str, Any], protocol: EvalProtocol, device: str | torch.device = "cpu"
) -> WorldModel:
    """The world model named by ``spec`` for ``protocol``, on ``device``.

    Args:
        spec: ``"oracle"`` (the protocol env's own dynamics at its action block), the path of
            a checkpoint directory written by ``grasplab train``, or a target
            (:func:`target_spec` or the mapping ``{target, kwargs}``: see :func:`build_target`).
            MLflow ``models:/`` URIs are resolved to a local directory by ``grasplab.platform``
            before calling this.
        protocol: The protocol the model must fit (env, action block).
        device: Where the model computes.

    Raises:
        ValueError: Unknown spec, a checkpoint trained on another env than the protocol's (as
            it records), or a model that does not fit the protocol.
    """
    target = parse_target_spec(spec)
    if target is not None:
        return build_target(target["target"], target["kwargs"], protocol, device)
    if spec == ORACLE:
        return OracleModel(protocol.make_env(), protocol.action_block)
    path = Path(spec)
    if path.is_dir():
        from grasplab.world_models import checkpoint  # issue 3: learned models

        trained_on = checkpoint.info(path).get("env")
        if trained_on and trained_on != protocol.env:
            raise ValueError(
                f"world model {spec!r} was trained on env {trained_on!r}, not the protocol's "
                f"{protocol.env!r} (set env={trained_on}, or use a checkpoint of {protocol.env})"
            )
        model = checkpoint.load(path, device=device)
        env_action_dim = env_action_size(protocol)
        if model.action_dim != protocol.action_block * env_action_dim:
            raise ValueError(
                f"world model {spec!r} has action_dim {model.action_dim}; protocol needs "
                f"{protocol.action_block} x {env_action_dim}"
            )
        return model
    raise ValueError(
        f"unknown world model {spec!r}: expected 'oracle' or an existing checkpoint directory"
    )


def env_changes(info: Mapping[str, Any], protocol: EvalProtocol) -> dict[str, tuple[Any, Any]]:
    """How the protocol's env differs from the one a checkpoint was trained on.

    Compares the checkpoint's recorded ``env_overrides`` (``info``, as ``grasplab train``
    writes it) with the protocol's, as the full configs they make (defaults filled in), except
    the fields that only shape the tasks (:data:`grasplab.envs.configs.TASK_FIELDS`); for a real
    simulator, the overrides themselves. Empty when the envs differ by name (:func:`load_model`
    refuses that) or the checkpoint records no env.

    Returns:
        Field -> ``(trained value, protocol value)``, in field order.
    """
    import dataclasses

    from grasplab.envs import env_config
    from grasplab.envs.configs import TASK_FIELDS

    if info.get("env") != protocol.env:
        return {}
    trained = {k: _frozen(v) for k, v in (info.get("env_overrides") or {}).items()}
    now = {k: _frozen(v) for k, v in protocol.env_overrides.items()}
    if protocol.is_sim:
        keys = sorted({*trained, *now})
        return {k: (trained.get(k), now.get(k)) for k in keys if trained.get(k) != now.get(k)}
    before = dataclasses.asdict(env_config(protocol.env, **trained))
    after = dataclasses.asdict(env_config(protocol.env, **now))
    return {
        k: (before[k], after[k]) for k in before if k not in TASK_FIELDS and before[k] != after[k]
    }


def _frozen(value: Any) -> Any:
    """``value`` with every list (as JSON gives them) made a tuple, recursively."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def checkpoint_protocol(path: str | Path, **fields: Any) -> EvalProtocol:
    """The protocol of the env a checkpoint was trained on, at the checkpoint's action block.

    Args:
        path: A checkpoint directory written by ``grasplab train``.
        **fields: Other :class:`EvalProtocol` fields (``horizon``, ``test_episodes``, ...).

    Raises:
        ValueError: The checkpoint does not record its env (or is not one).
    """
    from grasplab.world_models import checkpoint

    record = checkpoint.read_config(path)
    info = record.get("info") or {}
    if "env" not in info:
        raise ValueError(f"checkpoint {path} does not record the env it was trained on")
    overrides = {
        k: tuple(v) if isinstance(v, list) else v for k, v in info.get("env_overrides", {}).items()
    }
    block = int(record["config"]["action_block"])
    return EvalProtocol(env=info["env"], env_overrides=overrides, action_block=block, **fields)


def build_target(
    target: str,
    kwargs: Mapping[str, Any],
    protocol: EvalProtocol,
    device: str | torch.device = "cpu",
) -> WorldModel:
    """Build a world model with the user's factory: ``factory(**kwargs, device=device)``.

    The factory (a function or a class, by import path ``pkg.module:factory``) always receives
    ``device`` (a ``torch.device``); it also receives ``env`` (the protocol's torch env) and
    ``action_block`` when its signature names them. It returns an object with ``encode``,
    ``step`` and ``action_dim`` (``= action_block x env.action_dim``), and ``state_dim`` (flat
    latents ``(..., D)``) or ``state_shape`` (structured latents such as patch tokens
    ``(..., P, C)``, seen by planners through :func:`grasplab.world_models.as_flat`); optionally
    ``cost(z, goal) -> (...)`` and ``observation = "pixels"`` (``encode`` then receives rendered
    images ``(..., 64, 64, 3)`` instead of env states).

    Raises:
        ValueError: One line: the target cannot be imported or built, or the model lacks a
            method or attribute, or its action size does not fit the protocol.
    """
    factory = import_target(target, "world_model.target")
    if not callable(factory):
        raise ValueError(f"world_model.target {target!r} is not callable")
    env = None if protocol.is_sim else protocol.make_env()  # a simulator has no torch env
    try:
        model = call_with_accepted(
            factory,
            {**kwargs, "device": torch.device(device)},
            env=env,
            action_block=protocol.action_block,
        )
    except Exception as error:  # the user's code may raise anything
        raise ValueError(
            f"world_model.target {target!r}: building the model failed "
            f"({type(error).__name__}: {first_line(error)})"
        ) from error
    return check_model(model, target, protocol.action_block * env_action_size(protocol))


def check_model(model: Any, name: str, action_dim: int) -> WorldModel:
    """``model`` (flattened by :func:`as_flat`) if it has the world-model verbs and sizes.

    Raises:
        ValueError: A missing method or size, or an action size other than ``action_dim``.
    """
    missing = [verb for verb in ("encode", "step") if not callable(getattr(model, verb, None))]
    if missing:
        raise ValueError(
            f"world model {name!r} ({type(model).__name__}) has no {' / '.join(missing)} method"
        )
    if not any(hasattr(model, a) for a in ("state_dim", "state_shape")):
        raise ValueError(f"world model {name!r} declares neither state_dim nor state_shape")
    if getattr(model, "action_dim", None) != action_dim:
        raise ValueError(
            f"world model {name!r} has action_dim {getattr(model, 'action_dim', None)!r}; the "
            f"protocol needs {action_dim} (action_block x env.action_dim)"
        )
    return as_flat(model)


def probe_model(model: WorldModel, protocol: EvalProtocol, name: str) -> None:
    """One-step probe: ``encode`` one tuning start, ``step`` it once, ``cost`` it if defined.

    Raises:
        ValueError: One line naming the call whose output has the wrong shape or is not finite.
    """
    sim = protocol.make_sim() if protocol.is_sim else None
    try:
        env = true_env(protocol, sim)
        device = model_device(model)
        tasks = protocol.tasks("tune", sim) if sim is not None else protocol.tasks("tune")
        _probe(model, env, tasks.select([0]).to(device).start, protocol.action_block, name)
    finally:
        if sim is not None:
            sim.close()


def _probe(model: WorldModel, env: Any, start: Tensor, action_block: int, name: str) -> None:
    D, A = int(model.state_dim), int(model.action_dim)
    try:
        with torch.no_grad():
            z = model.encode(env.observe(model, start))
            _check_output(z, (1, D), name, "encode(one observation)")
            low, high = env.bounds(action_block, z)
            action = ((low + high) / 2).expand(1, A)
            _check_output(model.step(z, action), (1, D), name, "step(z, a)")
            cost = getattr(model, "cost", None)
            if callable(cost):
                _check_output(cost(z, z), (1,), name, "cost(z, goal)")
    except ProbeError:
        raise
    except Exception as error:  # the user's code may raise anything
        raise ValueError(
            f"world model {name!r}: the one-step probe failed "
            f"({type(error).__name__}: {first_line(error)})"
        ) from error


class ProbeError(ValueError):
    """A probe call returned something of the wrong kind, shape or with non-finite values."""


def _check_output(value: Any, shape: tuple[int, ...], name: str, call: str) -> None:
    if not isinstance(value, Tensor):
        raise ProbeError(
            f"world model {name!r}: {call} returned {type(value).__name__}, not a Tensor"
        )
    if tuple(value.shape) != shape:
        raise ProbeError(
            f"world model {name!r}: {call} returned shape {tuple(value.shape)}, expected {shape}"
        )
    if not bool(torch.isfinite(value).all()):
        raise ProbeError(f"world model {name!r}: {call} returned NaN or inf values")
