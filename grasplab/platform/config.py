"""Sweep configuration: Hydra composition on the driver, validation, Tune search spaces.

Hydra composes ``tune_configs/`` into a plain dict (the only object Ray ever sees); this module
then checks it against the code (planner registry and config fields, the evaluation protocol, the
world-model spec) so that a bad override fails in the driver, before any run exists, with a
one-line :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grasplab.config_files import config_dir
from grasplab.eval import EvalProtocol
from grasplab.planners import (
    CONFIGS,
    config_class,
    config_from_dict,
    config_to_dict,
    planner_classes,
    planner_names,
)

MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


class ConfigError(ValueError):
    """A bad config or override; the CLI prints it as one line and exits with code 2."""


SWEEP_CONFIG = "config"
"""The sweep's primary config (``tune_configs/config.yaml``)."""
TRAIN_CONFIG = "train/config"
"""``grasplab train``'s primary config (``tune_configs/train/config.yaml``)."""


def compose(overrides: Sequence[str] = (), primary: str = SWEEP_CONFIG) -> dict[str, Any]:
    """Compose a primary config with Hydra overrides into a resolved plain dict.

    Args:
        overrides: Hydra overrides.
        primary: The primary config, relative to ``tune_configs/`` without ``.yaml``
            (:data:`SWEEP_CONFIG` or :data:`TRAIN_CONFIG`).

    Raises:
        ConfigError: Unknown group option or key (naming the nearest valid one), unparsable
            override, missing mandatory value.
    """
    from omegaconf import OmegaConf

    try:
        cfg = hydra_config(overrides, primary)
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as error:  # Hydra/OmegaConf raise many types; all mean a bad config
        raise ConfigError(explain(error, overrides, primary)) from error


def hydra_config(overrides: Sequence[str], primary: str = SWEEP_CONFIG) -> Any:
    """The composed (unresolved) ``DictConfig`` of ``primary`` with ``overrides``.

    A primary config in a sub-folder (``train/config``) is composed in that folder, with
    ``tune_configs/`` on the search path for the groups it shares with the sweep (``env``,
    ``cluster``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = config_dir()
    folder, _, name = primary.rpartition("/")
    extra = [f"hydra.searchpath=['file://{root}']"] if folder else []
    with initialize_config_dir(config_dir=str(root / folder), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=[*overrides, *extra])


UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'|Could not delete from config\. '([^']+)'")
MISSING_OPTION = re.compile(r"Could not find '(?:/)?([^']+)/([^'/]+)'")
AVAILABLE = re.compile(r"Available options in '[^']+':\n((?:\t[^\n]+\n?)+)")


def explain(error: BaseException, overrides: Sequence[str], primary: str = SWEEP_CONFIG) -> str:
    """One line for a Hydra error; an unknown key or group option names the nearest valid one."""
    line, text = one_line(error), str(error)
    key = UNKNOWN_KEY.search(text)
    if key:
        return unknown_key_line(line, text, key.group(1) or key.group(2), overrides, primary)
    option = MISSING_OPTION.search(text)
    available = AVAILABLE.search(text)
    if option and available:
        group, name = option.groups()
        options = [o.strip() for o in available.group(1).splitlines() if o.strip()]
        near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        typed = any(override_key(o) == group for o in overrides)
        if near:
            return f"{line}; did you mean '{group}{'=' if typed else '/'}{near[0]}'?"
        return f"{line}; available: {', '.join(options)}"
    return line


def unknown_key_line(
    line: str, text: str, key: str, overrides: Sequence[str], primary: str = SWEEP_CONFIG
) -> str:
    """``Could not override 'k': no such key; did you mean 'k2'?`` (or how to add ``k``)."""
    others = [o for o in overrides if override_key(o) != key]
    keys = [k for k in config_keys(others, primary) if not f"{key}.".startswith(f"{k}.")]
    if not key.startswith("study."):  # a study's cells hold override keys, not config keys
        keys = [k for k in keys if not k.startswith("study.")]
    near = nearest_key(key, keys)  # neither the key itself nor a node above it
    line = line.rstrip(".")
    if "does not exist" not in line:
        line += ": no such key"
    if near:
        return f"{line}; did you mean {near!r}?"
    append = re.search(r"use (\+\S+)", text)
    return f"{line} (a new key needs {append.group(1)})" if append else line


def override_key(override: str) -> str:
    """The key of a Hydra override: ``+a.b=1`` -> ``a.b``, ``~a`` -> ``a``."""
    return override.lstrip("+~").partition("=")[0]


def config_keys(overrides: Sequence[str], primary: str = SWEEP_CONFIG) -> list[str]:
    """Every dotted key (inner nodes and leaves) of ``primary`` composed with ``overrides``.

    Falls back to the default config when ``overrides`` do not compose either.
    """
    from omegaconf import OmegaConf

    for attempt in (overrides, ()):
        try:
            tree = OmegaConf.to_container(hydra_config(attempt, primary), resolve=False)
        except Exception:  # another bad override: the default config's keys then
            continue
        return list(dotted_keys(tree))
    return []


def dotted_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` -> ``["a", "a.b"]``."""
    keys = []
    for name, value in tree.items():
        keys.append(f"{prefix}{name}")
        if isinstance(value, Mapping):
            keys += dotted_keys(value, f"{prefix}{name}.")
    return keys


def nearest_key(key: str, keys: Sequence[str]) -> str | None:
    """The valid key nearest to a mistyped ``key``, or None when none is close.

    First by the last component (so ``env.layout`` finds ``env.overrides.layout`` and
    ``protocol.horizn`` finds ``protocol.horizon``), ties broken by the whole key; then, for a
    typo higher up (``planners.grasp.confg``), by the whole key with a strict cutoff.
    """

    def ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b).ratio()

    last = key.rsplit(".", 1)[-1]
    scored = [(ratio(last, k.rsplit(".", 1)[-1]), ratio(key, k), k) for k in keys]
    by_last = [s for s in scored if s[0] >= 0.7]
    if by_last:
        return max(by_last)[2]
    near = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.85)
    return near[0] if near else None


def one_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (with OmegaConf's key, if any)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    key = getattr(error, "full_key", None)
    return f"{line} ({key})" if key and str(key) not in line else line


@dataclass(frozen=True)
class Distribution:
    """One search-space entry as declared in YAML.

    Attributes:
        type: ``loguniform``, ``uniform``, ``int`` (``low..high`` inclusive) or ``choice``.
        low: Lower bound (numeric types).
        high: Upper bound (numeric types, inclusive for ``int``).
        values: The options of a ``choice``.
        log: ``int`` only: sample on a log scale.
    """

    type: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    log: bool = False

    @classmethod
    def from_dict(cls, name: str, spec: Mapping[str, Any]) -> Distribution:
        """Parse and check one entry; ``name`` is only used in error messages."""
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise ConfigError(f"search_space.{name}: expected a mapping with a 'type'")
        unknown = sorted(set(spec) - {"type", "low", "high", "values", "log"})
        if unknown:
            raise ConfigError(f"search_space.{name}: unknown key(s) {unknown}")
        dist = cls(
            type=str(spec["type"]),
            low=spec.get("low"),
            high=spec.get("high"),
            values=tuple(spec.get("values") or ()),
            log=bool(spec.get("log", False)),
        )
        dist.check(name)
        return dist

    def check(self, name: str) -> None:
        """Raise :class:`ConfigError` unless the distribution is well formed."""
        if self.type == "choice":
            if not self.values:
                raise ConfigError(f"search_space.{name}: a choice needs non-empty 'values'")
            return
        if self.type not in ("loguniform", "uniform", "int"):
            raise ConfigError(
                f"search_space.{name}: unknown type {self.type!r} "
                "(loguniform, uniform, int, choice)"
            )
        if self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"search_space.{name}: needs low < high, got {self.low}, {self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ConfigError(f"search_space.{name}: loguniform needs low > 0, got {self.low}")

    def extremes(self) -> list[Any]:
        """The values at the edges of the distribution (checked against the planner config)."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of the distribution (a choice's value, or in range)."""
        if self.type == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and value != int(value):
            return False
        return float(self.low) <= value <= float(self.high)

    def describe(self) -> str:
        """``[0.01, 1.0]`` or ``{adam, sgd}``: the distribution's range, for messages."""
        if self.type == "choice":
            return "{" + ", ".join(str(v) for v in self.values) + "}"
        return f"[{self.low}, {self.high}]"

    def to_tune(self) -> Any:
        """The ``ray.tune`` search-space object (import deferred: driver only)."""
        from ray import tune

        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "int":
            sampler = tune.lograndint if self.log else tune.randint
            return sampler(int(self.low), int(self.high) + 1)
        return tune.choice(list(self.values))


@dataclass(frozen=True)
class PlannerSpec:
    """One planner (or variant) of an experiment.

    Attributes:
        label: The variant's name in the experiment (``grasp_no_sync``).
        name: Registry name (``grasp``), or the import path of a user's planner class
            (``name: target`` with ``target: pkg.module:MyPlanner`` in YAML).
        config: Fixed fields (the base config with ``fixed`` applied).
        search_space: Tuned fields; never overlaps ``fixed``.
        fixed: Fields pinned by the variant.
    """

    label: str
    name: str
    config: dict[str, Any]
    search_space: dict[str, Distribution]
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, label: str, spec: Mapping[str, Any]) -> PlannerSpec:
        """Parse, then validate against the planner's config dataclass."""
        unknown = sorted(set(spec) - {"name", "target", "config", "search_space", "fixed"})
        if unknown:
            raise ConfigError(f"planners.{label}: unknown key(s) {unknown}")
        name = planner_name(label, spec)
        fixed = dict(spec.get("fixed") or {})
        config = {**(spec.get("config") or {}), **fixed}
        space = {
            key: Distribution.from_dict(f"{label}.{key}", dist)
            for key, dist in (spec.get("search_space") or {}).items()
            if key not in fixed
        }
        planner = cls(label, str(name), config, space, fixed)
        planner.check()
        return planner

    def check(self) -> None:
        """Every fixed value and every search-space edge must build a valid planner config."""
        try:
            config_cls = config_class(self.name)
            config_from_dict(config_cls, self.config)
            for key, dist in self.search_space.items():
                for value in dist.extremes():
                    config_from_dict(config_cls, {**self.config, key: value})
        except ValueError as error:
            raise ConfigError(f"planners.{self.label}: {one_line(error)}") from error

    def trial_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The full planner config of a trial: every field, fixed and sampled."""
        config_cls = config_class(self.name)
        return config_to_dict(config_from_dict(config_cls, {**self.config, **sampled}))

    def tune_space(self) -> dict[str, Any]:
        """``ray.tune`` search space keyed by the config fields' names."""
        return {key: dist.to_tune() for key, dist in self.search_space.items()}

    def default_config(self) -> dict[str, Any]:
        """The variant's full config untuned: its base config (with ``fixed``) over the defaults."""
        return self.trial_config({})

    def default_point(self) -> tuple[dict[str, Any] | None, str]:
        """The default config in the search space's names: the point a search starts from.

        Returns:
            ``(point, "")``, or ``(None, why)`` when the variant has no search space or a default
            value lies outside its distribution (a narrowed space: the search cannot start from
            the default, and says so).
        """
        if not self.search_space:
            return None, "nothing to search"
        full = self.default_config()
        outside = [
            f"{key}={full[key]!r} outside {dist.describe()}"
            for key, dist in self.search_space.items()
            if not dist.contains(full[key])
        ]
        if outside:
            return None, f"default {', '.join(outside)}"
        return {key: full[key] for key in self.search_space}, ""


TARGET = "target"
"""``name: target`` in a planner entry: the planner class is ``target: pkg.module:Class``."""


def planner_name(label: str, spec: Mapping[str, Any]) -> str:
    """The registry name or, for ``name: target``, the import path of a planner entry.

    Raises:
        ConfigError: Unknown name, a target without ``name: target`` or an unimportable one.
    """
    name, target = spec.get("name"), spec.get("target")
    if name == TARGET:
        if not isinstance(target, str) or not target:
            raise ConfigError(f"planners.{label}.target: set it to 'pkg.module:PlannerClass'")
        try:
            planner_classes(target)
        except ValueError as error:
            raise ConfigError(f"planners.{label}: {one_line(error)}") from error
        return target
    if target is not None:
        raise ConfigError(f"planners.{label}.target needs name: {TARGET}, got name {name!r}")
    if name not in CONFIGS:
        raise ConfigError(f"planners.{label}: unknown planner {name!r}; known: {planner_names()}")
    return str(name)


@dataclass(frozen=True)
class SweepSettings:
    """The ``sweep:`` section; ``tune_configs/config.yaml`` holds the defaults and their meaning.

    No field has a default here: the config file is the one source of truth, and a config that
    lacks a key is refused rather than filled in with a second, different default.
    """

    num_samples: int
    chunk_size: int
    grace_period: int
    reduction_factor: int
    max_failures: int
    trials_per_worker: int
    segment_trials: int
    horizons: tuple[int, ...] | None
    rescore_top: int
    rescore_episodes: int | None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SweepSettings:
        """Parse and check; unknown or missing keys and non-positive counts raise ConfigError."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"sweep: unknown key(s) {unknown}; known: {sorted(names)}")
        missing = sorted(names - set(values))
        if missing:
            raise ConfigError(
                f"sweep: missing key(s) {missing} (tune_configs/config.yaml sets them)"
            )
        horizons = values.get("horizons")
        settings = cls(
            **{k: v for k, v in values.items() if k != "horizons"},
            horizons=tuple(int(h) for h in horizons) if horizons else None,
        )
        for name in (
            "num_samples",
            "chunk_size",
            "grace_period",
            "reduction_factor",
            "trials_per_worker",
            "segment_trials",
        ):
            if not isinstance(getattr(settings, name), int) or getattr(settings, name) < 1:
                raise ConfigError(
                    f"sweep.{name} must be an int >= 1, got {getattr(settings, name)!r}"
                )
        if settings.max_failures < 0:
            raise ConfigError(f"sweep.max_failures must be >= 0, got {settings.max_failures}")
        if not isinstance(settings.rescore_top, int) or settings.rescore_top < 0:
            raise ConfigError(
                f"sweep.rescore_top must be an int >= 0, got {settings.rescore_top!r}"
            )
        extra = settings.rescore_episodes
        if extra is not None and (not isinstance(extra, int) or extra < 1):
            raise ConfigError(f"sweep.rescore_episodes must be an int >= 1 or null, got {extra!r}")
        if settings.horizons and min(settings.horizons) < 1:
            raise ConfigError(f"sweep.horizons must all be >= 1, got {list(settings.horizons)}")
        return settings


@dataclass(frozen=True)
class Stage:
    """One tuning stage: every planner variant at one horizon (one Tune experiment).

    Attributes:
        key: ``H<horizon>`` (the Tune experiment's folder name).
        protocol: The protocol at this stage's horizon.
        planners: The variants tuned side by side, with equal budgets.
        multi: True when the sweep spans several horizons (labels then carry ``-H<h>``).
    """

    key: str
    protocol: EvalProtocol
    planners: tuple[PlannerSpec, ...]
    multi: bool = False

    def outcome_key(self, label: str) -> str:
        """Name of a variant's result in this stage: ``grasp`` or ``grasp-H20``."""
        return f"{label}-H{self.protocol.horizon}" if self.multi else label

    def planner(self, label: str) -> PlannerSpec:
        """The variant called ``label``."""
        return next(p for p in self.planners if p.label == label)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: everything the driver needs, built from the composed dict.

    Attributes:
        name: Sweep name (``--resume`` finds the sweep by it).
        recipe: The experiment recipe's name.
        seed: Seed of the searchers.
        protocol: The evaluation protocol (at the base horizon).
        world_model: ``oracle``, a checkpoint directory, an MLflow model URI, or a target's
            canonical JSON (:func:`grasplab.eval.models.target_spec`).
        planners: The planner variants, in the experiment's order.
        sweep: Budgets and scheduler settings.
        cluster: The ``cluster:`` section.
        mlflow: The ``mlflow:`` section.
        report: The ``report:`` section.
        raw: The composed plain dict this was built from.
    """

    name: str
    recipe: str
    seed: int
    protocol: EvalProtocol
    world_model: str
    planners: tuple[PlannerSpec, ...]
    sweep: SweepSettings
    cluster: dict[str, Any]
    mlflow: dict[str, Any]
    report: dict[str, Any]
    raw: dict[str, Any]

    @property
    def horizons(self) -> tuple[int, ...]:
        """The horizons the sweep spans (one stage each)."""
        return self.sweep.horizons or (self.protocol.horizon,)

    def stages(self) -> list[Stage]:
        """One stage per horizon, in the configured order."""
        multi = len(self.horizons) > 1
        return [
            Stage(f"H{h}", protocol_at(self.protocol, h), self.planners, multi)
            for h in self.horizons
        ]


def protocol_at(protocol: EvalProtocol, horizon: int) -> EvalProtocol:
    """``protocol`` with another horizon."""
    if horizon == protocol.horizon:
        return protocol
    return EvalProtocol.from_dict({**protocol.to_dict(), "horizon": horizon})


def build_protocol(cfg: Mapping[str, Any]) -> EvalProtocol:
    """The :class:`EvalProtocol` of a composed config (``env`` group + ``protocol`` group)."""
    env = cfg.get("env") or {}
    values = {
        **(cfg.get("protocol") or {}),
        "env": env.get("name"),
        "env_overrides": env.get("overrides") or {},
        "task_set": dict(cfg.get("tasks") or {}),
    }
    data = values["task_set"].get("data")
    if isinstance(data, str) and data:  # workers may run elsewhere than the driver's cwd
        values["task_set"]["data"] = str(Path(data).expanduser().resolve())
    try:
        protocol = EvalProtocol.from_dict(values)
        protocol.check_splits()  # a sweep tunes on one split and reports the other
        return protocol
    except (ValueError, TypeError) as error:
        raise ConfigError(f"protocol: {one_line(error)}") from error


def check_world_model(spec: Any, protocol: EvalProtocol) -> str:
    """Check that the world-model spec names something that exists; returns it as a string."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"world_model.spec must be a non-empty string, got {spec!r}")
    if spec == "oracle" or spec.startswith(MODEL_URI_SCHEMES):
        return spec
    if not Path(spec).is_dir():
        raise ConfigError(f"world_model.spec: no checkpoint directory at {spec!r}")
    from grasplab.eval.models import load_model

    try:
        load_model(spec, protocol)
    except Exception as error:  # a broken checkpoint is a config error, not a crash
        raise ConfigError(f"world_model.spec {spec!r}: {one_line(error)}") from error
    return spec


def check_env_and_tasks(protocol: EvalProtocol, spec: Any) -> None:
    """Build the env (a ``sim:`` protocol's simulator once) and every task of both splits.

    Refused here, before any run exists: a horizon the env's layout cannot fill, the oracle
    world model on a real simulator, an adapter with no way to reset to a state (or whose
    reset does not reach the state), a missing ``sims`` extra, a dataset that is missing, of
    another env or too short for the declared splits.
    """
    if protocol.is_sim and spec == "oracle":
        raise ConfigError(
            f"world_model.spec: 'oracle' needs a torch env's dynamics, and {protocol.env!r} is a "
            "real simulator; train a model on its data (grasplab collect / train) and pass "
            "world_model=checkpoint world_model.spec=DIR"
        )
    sim = None
    try:
        if protocol.is_sim:
            sim = protocol.make_sim()
        for split in ("tune", "test"):
            protocol.tasks(split, sim) if sim is not None else protocol.tasks(split)
    except (ValueError, ImportError, RuntimeError) as error:
        raise ConfigError(f"env/tasks ({protocol.env}): {one_line(error)}") from error
    finally:
        if sim is not None:
            sim.close()


def check_train_overlap(spec: str, protocol: EvalProtocol) -> None:
    """Refuse dataset tasks from the episodes the checkpoint ``spec`` was trained on.

    Only local checkpoint directories are checked (their ``info`` records the dataset and the
    training episodes); ``tasks.allow_train_overlap=true`` lifts the refusal.
    """
    if not protocol.task_set or not Path(spec).is_dir():
        return
    from grasplab.eval.tasks import check_train_overlap as check
    from grasplab.world_models import checkpoint

    try:
        check(protocol.tasks_spec, checkpoint.info(spec), spec)
    except ValueError as error:
        raise ConfigError(one_line(error)) from error


def check_trained_env(spec: str, protocol: EvalProtocol, allowed: bool) -> None:
    """Refuse a checkpoint trained on another set-up of the protocol's env.

    Another layout, other dynamics, as the checkpoint records them;
    ``world_model.allow_env_change=true`` lifts the refusal (a transfer study). Only local
    checkpoint directories are checked; a change of the fields that only shape the tasks
    (success radius, task band...) is not refused (:func:`grasplab.eval.models.env_changes`).
    """
    if allowed or not Path(spec).is_dir():
        return
    from grasplab.eval.models import env_changes
    from grasplab.world_models import checkpoint

    changes = env_changes(checkpoint.info(spec), protocol)
    if changes:
        listed = ", ".join(f"{k} {a!r} (the protocol's: {b!r})" for k, (a, b) in changes.items())
        raise ConfigError(
            f"world_model.spec {spec!r} was trained on {protocol.env} with {listed}; set the "
            "env as it was trained (env.overrides.FIELD=VALUE), or world_model.allow_env_change"
            "=true to evaluate the model on the changed env"
        )


def world_model_spec(section: Mapping[str, Any], protocol: EvalProtocol) -> str:
    """The world-model spec of the ``world_model:`` section: ``spec``, or ``target`` + ``kwargs``.

    A target is imported, built on the CPU and probed once here, on the driver (one observation
    encoded, one step, the cost if any: shapes and finite values), so that a bad one fails with
    one line before any trial or MLflow run exists.

    Raises:
        ConfigError: Naming the problem.
    """
    if "target" not in section:
        return check_world_model(section.get("spec"), protocol)
    unknown = sorted(set(section) - {"target", "kwargs"})
    if unknown:
        raise ConfigError(f"world_model: {unknown} do not go with target (target, kwargs)")
    from grasplab.eval.models import build_target, probe_model, target_spec

    target = section.get("target")
    try:
        spec = target_spec(target, section.get("kwargs") or {})
        probe_model(build_target(target, section.get("kwargs") or {}, protocol), protocol, target)
    except (ValueError, TypeError) as error:
        raise ConfigError(one_line(error)) from error
    return spec


def check_world(protocol: EvalProtocol, section: Mapping[str, Any]) -> str:
    """The checks that build things: the env (or simulator) and its tasks, the world model.

    Runs :func:`check_env_and_tasks`, :func:`world_model_spec`, :func:`check_trained_env` and
    :func:`check_train_overlap`.

    Returns:
        The world-model spec as a string.

    Raises:
        ConfigError: Naming the problem.
    """
    check_env_and_tasks(protocol, section.get("spec"))
    allowed = section.get("allow_env_change", False)
    if not isinstance(allowed, bool):
        raise ConfigError(f"world_model.allow_env_change must be true or false, got {allowed!r}")
    world_model = world_model_spec(
        {k: v for k, v in section.items() if k != "allow_env_change"}, protocol
    )
    check_trained_env(world_model, protocol, allowed)
    check_train_overlap(world_model, protocol)
    return world_model


def probe(protocol: EvalProtocol, section: Mapping[str, Any], isolate: bool | None = None) -> str:
    """:func:`check_world` here, or in a new process so that this one never loads torch.

    A sweep's driver coordinates (Tune, Optuna, MLflow) and plans nothing: building the env,
    the tasks and the world model to check them would hold torch's memory in it for the whole
    sweep (about 180 MB), so it asks a spawned process (about 1.5 s on 2 cores); a process
    that has loaded torch already runs the checks itself.

    Args:
        protocol: The sweep's protocol.
        section: The ``world_model:`` section.
        isolate: True: in a new process; False: here; None: in a new process when this one has
            not imported torch.

    Raises:
        ConfigError: Naming the problem (raised in the child, re-raised here).
    """
    if isolate is None:
        isolate = "torch" not in sys.modules
    if not isolate:
        return check_world(protocol, section)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
        return child.submit(check_world, protocol, dict(section)).result()


CLUSTER_DEFAULTS: dict[str, Any] = {
    "address": None,
    "num_cpus": None,
    "num_workers": None,
    "gpus_per_worker": 0,
    "cpus_per_worker": None,
    "device": "auto",
    "placement_timeout_s": 600,
    "connect_timeout_s": 60,
    "trial_cpus": 0.05,
    "trials_on_head": True,
    "storage_path": None,
    "namespace": "grasplab",
    "tracking_uri": None,
    "worker_tracking_uri": None,
}
"""The ``cluster:`` keys and their defaults (``tune_configs/cluster/local.yaml`` documents them)."""
DEVICES = ("auto", "cpu", "cuda")


def host_ip() -> str:
    """This machine's address for the cluster (resolved locally: no packet is sent).

    ``$GRASPLAB_HEAD_IP`` (``ray_cluster.yaml`` exports it before ``ray start``), else 127.0.0.1
    when Ray runs local-only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the one-machine recipe:
    every node is on this machine's loopback, and so is its MLflow server), else the first
    non-loopback IPv4 address of the host name, else 127.0.0.1.

    Config interpolation ``${grasplab_host_ip:}`` (``tune_configs/cluster/remote.yaml``).
    """
    explicit = os.environ.get("GRASPLAB_HEAD_IP")
    if explicit:
        return explicit
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        return "127.0.0.1"
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


def shipped_checkpoint(name: str) -> str:
    """Absolute path of a checkpoint shipped in ``grasplab/world_models/checkpoints/``.

    Config interpolation ``${grasplab_checkpoint:wall-pixel-b1}`` (``tune_configs/study/``).
    Torch-free (:mod:`grasplab.world_models.manifest`): a sweep's driver resolves this and
    never loads torch.
    """
    from grasplab.world_models.manifest import CHECKPOINTS

    return str(CHECKPOINTS / name)


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("grasplab_host_ip"):
        OmegaConf.register_new_resolver("grasplab_host_ip", host_ip)
    if not OmegaConf.has_resolver("grasplab_checkpoint"):
        OmegaConf.register_new_resolver("grasplab_checkpoint", shipped_checkpoint)


_register_resolvers()


def check_cluster(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``cluster:`` section with defaults filled in; a bad key or value is a ConfigError."""
    unknown = sorted(set(values) - set(CLUSTER_DEFAULTS))
    if unknown:
        raise ConfigError(f"cluster: unknown key(s) {unknown}; known: {sorted(CLUSTER_DEFAULTS)}")
    cluster = {**CLUSTER_DEFAULTS, **{k: v for k, v in values.items() if v is not None}}
    for key in ("gpus_per_worker", "trial_cpus", "placement_timeout_s", "connect_timeout_s"):
        value = cluster[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"cluster.{key} must be a number >= 0, got {value!r}")
    for key in ("num_workers", "num_cpus", "cpus_per_worker"):
        value = cluster[key]
        ok = value is None or (
            isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        )
        if not ok:
            raise ConfigError(f"cluster.{key} must be null or a number > 0, got {value!r}")
    if cluster["device"] not in DEVICES:
        device = cluster["device"]
        raise ConfigError(f"cluster.device must be one of {list(DEVICES)}, got {device!r}")
    gpus = cluster["gpus_per_worker"]
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(f"cluster.gpus_per_worker above 1 must be whole, got {gpus}")
    if gpus > 0 and cluster["num_workers"] is None:
        raise ConfigError(
            "cluster.num_workers must be set when cluster.gpus_per_worker > 0 (the pool is "
            "declared, so that an autoscaler can launch the GPU nodes it needs)"
        )
    workers = cluster["num_workers"]
    if workers is not None and int(workers) != workers:
        raise ConfigError(f"cluster.num_workers must be a whole number, got {workers}")
    return cluster


def parse(cfg: Mapping[str, Any], isolate: bool | None = None) -> SweepSpec:
    """Validate a composed config into a :class:`SweepSpec`.

    Args:
        cfg: The composed config.
        isolate: Run the checks that need torch (:func:`probe`) in a separate process; None:
            when this process has not loaded torch (a sweep's driver, which only coordinates).

    Raises:
        ConfigError: Naming the first problem found.
    """
    protocol = build_protocol(cfg)
    planners_cfg = cfg.get("planners") or {}
    if not planners_cfg:
        raise ConfigError("planners: the experiment names no planner")
    planners = tuple(PlannerSpec.from_dict(label, p) for label, p in planners_cfg.items())
    sweep = SweepSettings.from_dict(cfg.get("sweep") or {})
    for horizon in sweep.horizons or ():
        try:
            protocol_at(protocol, horizon)
        except ValueError as error:
            raise ConfigError(f"sweep.horizons: {one_line(error)}") from error
    recipe = str(cfg.get("recipe") or "sweep")
    world_model = probe(protocol, dict(cfg.get("world_model") or {}), isolate)
    return SweepSpec(
        name=str(cfg.get("name") or recipe),
        recipe=recipe,
        seed=int(cfg.get("seed") or 0),
        protocol=protocol,
        world_model=world_model,
        planners=planners,
        sweep=sweep,
        cluster=check_cluster(cfg.get("cluster") or {}),
        mlflow=dict(cfg.get("mlflow") or {}),
        report=dict(cfg.get("report") or {}),
        raw=dict(cfg),
    )


def load(overrides: Sequence[str] = (), isolate: bool | None = None) -> SweepSpec:
    """Compose and validate in one step (what ``grasplab sweep`` does first; see :func:`parse`)."""
    return parse(compose(overrides), isolate)
