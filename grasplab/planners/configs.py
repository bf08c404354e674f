"""The built-in planners' frozen configs, their validation and dict round-trips; no torch.

Everything a sweep's driver needs to check and expand a planner config (the registry's config
classes, :func:`config_from_dict`, :func:`config_to_dict`) imports only the standard library;
the planners themselves (:mod:`grasplab.planners.grasp` and the others, which import torch)
re-export their configs from here.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self


@dataclass(frozen=True)
class PlannerConfig:
    """Base of the frozen planner configs: validation and dict round-trips.

    Subclasses declare fields (each documented where declared) and a ``_rules`` table of
    ``field -> (predicate, message)``; violations raise ``ValueError`` naming the field.
    """

    _rules: ClassVar[Mapping[str, tuple[Callable[[Any], bool], str]]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            self._check_type(f.name, getattr(self, f.name), hints[f.name])
        for name, (ok, message) in self._rules.items():
            if not ok(getattr(self, name)):
                raise ValueError(
                    f"{type(self).__name__}.{name} {message}, got {getattr(self, name)!r}"
                )
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise ``ValueError`` naming the field."""

    def _check_type(self, name: str, value: Any, hint: Any) -> None:
        origin = typing.get_origin(hint)
        if origin is typing.Literal:
            if value not in typing.get_args(hint):
                raise ValueError(
                    f"{type(self).__name__}.{name} must be one of {typing.get_args(hint)}, "
                    f"got {value!r}"
                )
            return
        expected = {int: (int,), float: (int, float), bool: (bool,)}.get(hint)
        bad_bool = hint in (int, float) and isinstance(value, bool)
        if expected is not None and (not isinstance(value, expected) or bad_bool):
            raise ValueError(f"{type(self).__name__}.{name} must be {hint.__name__}, got {value!r}")
        if hint is float and not math.isfinite(value):
            raise ValueError(f"{type(self).__name__}.{name} must be finite, got {value!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a plain dict; unknown keys raise ``ValueError`` naming them."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (what MLflow params and search spaces use)."""
        return dataclasses.asdict(self)


def config_from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Build any frozen config dataclass (a :class:`PlannerConfig` or a user's own) from a dict.

    Ints given for ``float`` fields become floats (YAML writes ``1`` for ``1.0``).

    Raises:
        ValueError: Unknown or missing fields (named), or the config's own validation.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    coerced = {
        k: float(v)
        if hints.get(k) is float and isinstance(v, int) and not isinstance(v, bool)
        else v
        for k, v in values.items()
    }
    try:
        return cls(**coerced)
    except TypeError as error:  # e.g. a required field without a value
        raise ValueError(f"{cls.__name__}: {error}") from error


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass's fields (MLflow params, search-space names)."""
    return dataclasses.asdict(config)


def check_config_class(config_cls: Any, owner: str) -> None:
    """Raise ``ValueError`` unless ``config_cls`` is a frozen dataclass (``owner`` names it)."""
    params = getattr(config_cls, "__dataclass_params__", None)
    if not isinstance(config_cls, type) or params is None or not params.frozen:
        raise ValueError(
            f"{owner}: its config class {config_cls!r} must be a frozen dataclass "
            "(@dataclass(frozen=True))"
        )


def positive(x: float) -> bool:
    """``x > 0``."""
    return x > 0


def non_negative(x: float) -> bool:
    """``x >= 0``."""
    return x >= 0


def unit_interval(x: float) -> bool:
    """``0 <= x <= 1``."""
    return 0 <= x <= 1


Schedule = Literal["constant", "linear", "phase"]


@dataclass(frozen=True)
class GDConfig(PlannerConfig):
    """GD hyperparameters (defaults: MPC-GD of the robust-WM paper, Adam lr 0.2).

    DINO-WM's setting (``optimizer="sgd"``, ``lr=1.0``, ``n_steps=1000``,
    ``action_noise=0.003``) is one override away.
    """

    n_steps: int = 300
    """Gradient steps on the actions."""
    lr: float = 0.2
    """Step size."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser for the actions."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to the actions after each step (DINO-WM: 0.003)."""
    probe_every: int = 10
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_steps": (positive, "must be > 0"),
        "lr": (positive, "must be > 0"),
        "action_noise": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }


@dataclass(frozen=True)
class GRASPConfig(PlannerConfig):
    """GRASP hyperparameters.

    Defaults: the authors' fork (see GRASP.md), except the sync's Adam, kept across sync
    phases (``sync_optimizer`` cites the rows that chose it; :meth:`reference` is theirs).
    """

    n_steps: int = 750
    """Lifted iterations (each: one batched model call, one Adam step on states and actions)."""
    lr_states: float = 0.1
    """Adam step size for the virtual states (``eta_s``), in units of the model's
    ``latent_spread`` (its latents' per-dimension std on its training data; raw latent units for
    a model that declares none), so that it means the same on latents of any scale."""
    lr_actions: float = 0.005
    """Adam step size for the actions (``eta_a``)."""
    noise_scale: float = 0.005
    """Std ``sigma`` of the Gaussian noise added to the virtual states after each step, in units
    of the model's ``latent_spread`` (as ``lr_states``)."""
    goal_weight: float = 1.0
    """Weight ``gamma`` of the dense goal term ``sum_t ||F(sg(s_t), a_t) - g||^2``."""
    sync_interval: int = 50
    """Iterations between syncs ``K_sync``; 0 disables syncing."""
    sync_steps: int = 10
    """Steps per sync ``J_sync`` on the true shooting loss (actions only)."""
    sync_lr: float = 0.05
    """Adam step size of the GD sync."""
    sync_optimizer: Literal["fresh", "kept"] = "kept"
    """GD sync's Adam: ``kept``, one optimiser whose moments carry over from sync phase to phase,
    or ``fresh``, a new one at every phase (the authors' solver, :meth:`reference`). A fresh
    Adam restarts with steps of ~``sync_lr`` per coordinate, so it cannot settle as tightly: on
    linear-quadratic problems it stops 10-30% of the initial error short of the optimum that
    ``kept`` reaches to 1e-3 (tests/test_planners.py). Which wins depends on env and horizon,
    so sweeps tune it (``tune_configs/search_space/grasp.yaml``). The default is the setting
    that won more (env, horizon) rows of the quick tables' cells at n = 100 held-out test goals
    (BENCHMARKS.md section 1.2, 2026-12-05): kept 3 rows, fresh 2, one tie."""
    reset_optimizer: bool = False
    """Re-create the main Adam (states and actions) after each sync, as the authors' solver
    does; its moments then restart at every phase."""
    clamp_actions: bool = True
    """Clamp actions into the bounds after every step. False: the optimisation never clamps (the
    authors' solver); only the plans that leave the planner are projected into the bounds, as
    an env clips what it executes: the returned plan and every plan handed to the probe (so a
    plan the probe froze as solved, which is returned, is inside them too). On the learned wall
    model unclamped actions drift to ``|a| ~ 6.6``, far outside the data."""
    batch_reduction: Literal["sum", "mean"] = "sum"
    """How the per-problem losses are reduced over the batch before ``backward``: ``sum``
    (every problem's gradient independent of ``B``) or ``mean`` (the authors' solver; the same
    Adam update with ``eps * B``, so a plan then depends, at the level of ``eps``, on how many
    problems share its batch)."""
    sync_mode: Literal["gd", "cem"] = "gd"
    """``gd``: backprop through the full rollout; ``cem``: sample around the current actions."""
    sync_samples: int = 64
    """CEM sync: action sequences sampled per sync step ``N``."""
    sync_elites: int = 8
    """CEM sync: elites refitted per sync step (top-k)."""
    sync_std_scale: float = 1.0
    """CEM sync: action std = this x RMS drift of virtual states from the rollout (per step),
    in units of the action half-range, clipped to ``[0.01, 1]``."""
    noise_schedule: Schedule = "constant"
    """Decay of ``sigma``: ``constant``, ``linear`` (to 0 over the run) or ``phase`` (to 0
    within each sync phase)."""
    goal_schedule: Schedule = "constant"
    """Decay of ``gamma``, same choices as ``noise_schedule``."""
    init_noise: float = 0.001
    """Std of the noise added to the straight-line state initialisation (``epsilon``), in units
    of the model's ``latent_spread`` (as ``lr_states``)."""
    detach_states: bool = True
    """Stop-gradient on the model's state input (False only for the ablation)."""
    probe_every: int = 25
    """Iterations between calls of the caller's probe (does not change the plan)."""
    compile_losses: bool = False
    """Opt-in: ``torch.compile`` (inductor) the per-iteration model call and losses, so their
    forward and backward run as fused kernels. Costs a compile of tens of seconds per new
    problem shape (BENCHMARKS section 7); the same objective, iterates equal to float rounding.
    Off by default: small problems and tests would pay more in compiling than they save."""

    _rules: ClassVar = {
        "n_steps": (positive, "must be > 0"),
        "lr_states": (non_negative, "must be >= 0"),
        "lr_actions": (positive, "must be > 0"),
        "noise_scale": (non_negative, "must be >= 0"),
        "goal_weight": (non_negative, "must be >= 0"),
        "sync_interval": (non_negative, "must be >= 0 (0 disables sync)"),
        "sync_steps": (positive, "must be > 0"),
        "sync_lr": (positive, "must be > 0"),
        "sync_samples": (lambda x: x >= 2, "must be >= 2"),
        "sync_elites": (positive, "must be > 0"),
        "sync_std_scale": (positive, "must be > 0"),
        "init_noise": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }

    @classmethod
    def reference(cls, **overrides: object) -> GRASPConfig:
        """The authors' released solver, step for step, except that actions stay clamped.

        Fresh sync Adam per sync phase, main Adam re-created after each sync, no initial noise
        on the states. The authors average the losses over the batch; this preset sums them
        (``batch_reduction="sum"``), which is the same Adam update with ``eps`` scaled by
        ``1/B``: ``eps = 1e-8`` against gradients many orders larger, while a mean would make
        every problem's plan depend on how many others share its batch. The authors never
        clamp actions; this
        preset does (``clamp_actions=True``): unclamped, their solver falls from 30% to 9% on
        the learned wall model at H = 50 because its actions leave the model's data. Pass
        ``clamp_actions=False`` for the exact original.
        """
        values: dict[str, object] = {
            "sync_optimizer": "fresh",
            "reset_optimizer": True,
            "init_noise": 0.0,
            "batch_reduction": "sum",
            "clamp_actions": True,
        }
        values.update(overrides)
        return cls.from_dict(values)

    def validate(self) -> None:
        """Cross-field checks."""
        if self.sync_elites > self.sync_samples:
            raise ValueError(
                f"GRASPConfig.sync_elites ({self.sync_elites}) must be <= sync_samples "
                f"({self.sync_samples})"
            )


@dataclass(frozen=True)
class LatCoConfig(PlannerConfig):
    """LatCo hyperparameters (lifted Adam step sizes as GRASP's authors' fork)."""

    n_steps: int = 750
    """Lifted iterations."""
    lr_states: float = 0.1
    """Adam step size for the virtual states, in units of the model's ``latent_spread`` (as
    GRASP's)."""
    lr_actions: float = 0.005
    """Adam step size for the actions."""
    goal_weight: float = 0.0
    """Optional dense goal term weight (0 = plain LatCo)."""
    init_noise: float = 0.001
    """Std of the noise on the straight-line state initialisation (units of ``latent_spread``)."""
    probe_every: int = 25
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_steps": (positive, "must be > 0"),
        "lr_states": (non_negative, "must be >= 0"),
        "lr_actions": (positive, "must be > 0"),
        "goal_weight": (non_negative, "must be >= 0"),
        "init_noise": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }

    def as_lifted(self) -> GRASPConfig:
        """The equivalent GRASP configuration: no stop-gradient, no noise, no sync."""
        return GRASPConfig(
            n_steps=self.n_steps,
            lr_states=self.lr_states,
            lr_actions=self.lr_actions,
            noise_scale=0.0,
            goal_weight=self.goal_weight,
            sync_interval=0,
            init_noise=self.init_noise,
            detach_states=False,
            probe_every=self.probe_every,
        )


@dataclass(frozen=True)
class CEMConfig(PlannerConfig):
    """CEM hyperparameters (defaults: DINO-WM / stable-worldmodel, 300 / 30 / 30)."""

    n_iterations: int = 30
    """Refit iterations."""
    n_samples: int = 300
    """Candidates sampled per problem per iteration ``S``."""
    n_elites: int = 30
    """Elites refitted per iteration (top-k by cost)."""
    var_scale: float = 1.0
    """Initial std, in units of the action half-range."""
    min_std: float = 0.0
    """Floor on the refitted std, in units of the action half-range."""
    probe_every: int = 1
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_iterations": (positive, "must be > 0"),
        "n_samples": (lambda x: x >= 2, "must be >= 2"),
        "n_elites": (positive, "must be > 0"),
        "var_scale": (positive, "must be > 0"),
        "min_std": (non_negative, "must be >= 0"),
        "probe_every": (positive, "must be > 0"),
    }

    def validate(self) -> None:
        """Cross-field checks."""
        _check_elites(self, self.n_elites, self.n_samples)


@dataclass(frozen=True)
class MPPIConfig(PlannerConfig):
    """MPPI hyperparameters (defaults: TD-MPC2, 512 / 64 / 6, temperature 0.5, std in [0.05, 2]).

    Elites are weighted by ``softmax(-(c - c_min) / (temperature * (c_max - c_min)))`` over the
    elites: the temperature is relative to the elites' cost spread, hence unitless (latent costs
    of different world models differ by orders of magnitude).
    """

    n_iterations: int = 6
    """Refit iterations."""
    n_samples: int = 512
    """Candidates sampled per problem per iteration ``S``."""
    n_elites: int = 64
    """Elites weighted per iteration."""
    temperature: float = 0.5
    """Relative softmax temperature over the elites' costs."""
    init_std: float = 2.0
    """Initial std, in units of the action half-range (clipped samples)."""
    min_std: float = 0.05
    """Floor on the std, in units of the action half-range."""
    max_std: float = 2.0
    """Ceiling on the std, in units of the action half-range."""
    probe_every: int = 1
    """Iterations between calls of the caller's probe."""

    _rules: ClassVar = {
        "n_iterations": (positive, "must be > 0"),
        "n_samples": (lambda x: x >= 2, "must be >= 2"),
        "n_elites": (positive, "must be > 0"),
        "temperature": (positive, "must be > 0"),
        "init_std": (positive, "must be > 0"),
        "min_std": (non_negative, "must be >= 0"),
        "max_std": (positive, "must be > 0"),
        "probe_every": (positive, "must be > 0"),
    }

    def validate(self) -> None:
        """Cross-field checks."""
        _check_elites(self, self.n_elites, self.n_samples)
        if self.min_std > self.max_std:
            raise ValueError(
                f"MPPIConfig.min_std ({self.min_std}) must be <= max_std ({self.max_std})"
            )


def _check_elites(cfg: PlannerConfig, n_elites: int, n_samples: int) -> None:
    if n_elites > n_samples:
        raise ValueError(
            f"{type(cfg).__name__}.n_elites ({n_elites}) must be <= n_samples ({n_samples})"
        )
