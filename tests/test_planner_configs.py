"""The planner configs and the registry of names without torch; the lazy ``grasplab.planners``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import grasplab.planners as planners
from grasplab.planners import (
    CONFIGS,
    PLANNERS,
    config_class,
    planner_classes,
    planner_names,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = REPO / "examples/byo_patch/src"
PLANNER_MODULES = ("base", "gd", "grasp", "latco", "sampling")
"""The modules of ``grasplab.planners`` that import torch."""


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (nothing imported yet), from the repository's root."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )


CONFIGS_WITHOUT_TORCH = """
import sys

import grasplab.planners as planners
from grasplab.planners import config_class, config_from_dict, config_to_dict, is_target

assert planners.planner_names() == ["cem", "gd", "grasp", "latco", "mppi"]
assert not is_target("grasp") and is_target("pkg.module:Planner")
for name in planners.planner_names():
    cls = config_class(name)
    assert cls is planners.CONFIGS[name] is getattr(planners, cls.__name__)
    try:
        config_from_dict(cls, {"probe_every": 0})
    except ValueError as error:
        assert f"{cls.__name__}.probe_every must be > 0" in str(error), error
    else:
        raise AssertionError(f"{name}: probe_every=0 accepted")
    config = config_from_dict(cls, {"probe_every": 3})
    values = config_to_dict(config)
    assert values["probe_every"] == 3 and config_from_dict(cls, values) == config, values
    assert cls.from_dict(values).to_dict() == values

# Literal fields (their hints resolve in the configs' module), cross-field checks, coercion.
BAD = [
    ("grasp", {"noise_schedule": "cosine"}, "GRASPConfig.noise_schedule must be one of"),
    ("grasp", {"sync_samples": 4, "sync_elites": 8}, "GRASPConfig.sync_elites (8) must be <="),
    ("gd", {"optimizer": "rmsprop"}, "GDConfig.optimizer must be one of"),
    ("cem", {"n_samples": 4, "n_elites": 8}, "CEMConfig.n_elites (8) must be <= n_samples"),
    ("mppi", {"min_std": 3.0}, "MPPIConfig.min_std (3.0) must be <= max_std"),
    ("latco", {"n_steps": True}, "LatCoConfig.n_steps must be int"),
    ("latco", {"bogus": 1}, "unknown field(s) ['bogus']"),
]
for name, values, message in BAD:
    try:
        config_from_dict(config_class(name), values)
    except ValueError as error:
        assert message in str(error), (message, str(error))
    else:
        raise AssertionError(f"{name}: {values} accepted")
grasp = config_from_dict(config_class("grasp"), {"lr_states": 1, "noise_schedule": "phase"})
assert grasp.lr_states == 1.0 and isinstance(grasp.lr_states, float)
assert planners.GRASPConfig.reference().sync_optimizer == "fresh"
assert planners.LatCoConfig(n_steps=5).as_lifted() == planners.GRASPConfig(
    n_steps=5, noise_scale=0.0, goal_weight=0.0, sync_interval=0, detach_states=False
)
print(sorted(m for m in ("torch", "numpy") if m in sys.modules))
"""


def test_configs_and_the_registry_of_names_import_no_torch():
    done = run_python(CONFIGS_WITHOUT_TORCH)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout


PLATFORM_WITHOUT_PLANNERS = f"""
import sys

for module in {PLANNER_MODULES!r}:
    sys.modules["grasplab.planners." + module] = None  # importing it raises ImportError

from grasplab.platform.config import ConfigError, PlannerSpec, planner_name

space = {{"sync_steps": {{"type": "int", "low": 1, "high": 20}}}}
spec = PlannerSpec.from_dict("g", {{"name": "grasp", "config": {{"n_steps": 10}},
                                    "search_space": space}})
full = spec.trial_config({{"sync_steps": 4}})
assert full["n_steps"] == 10 and full["sync_steps"] == 4 and full["noise_scale"] == 0.005, full
assert planner_name("c", {{"name": "cem"}}) == "cem"
for label, entry, message in [
    ("x", {{"name": "nope"}}, "planners.x: unknown planner 'nope'; known: "
     "['cem', 'gd', 'grasp', 'latco', 'mppi']"),
    ("m", {{"name": "mppi", "config": {{"n_elites": 600}}}}, "MPPIConfig.n_elites (600)"),
    ("g", {{"name": "grasp", "search_space": {{"sync_samples": {{"type": "int", "low": 1,
                                                                "high": 9}}}}}},
     "GRASPConfig.sync_samples must be >= 2, got 1"),
]:
    try:
        PlannerSpec.from_dict(label, entry)
    except ConfigError as error:
        assert message in str(error), (message, str(error))
    else:
        raise AssertionError(f"{{entry}} accepted")
print("ok")
"""


def test_the_sweep_config_checks_builtin_planners_without_their_modules():
    """``PlannerSpec`` and ``planner_name`` never import a built-in planner's module (torch)."""
    done = run_python(PLATFORM_WITHOUT_PLANNERS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_planners_is_the_registry_of_planner_classes():
    assert PLANNERS == {name: planner_classes(name) for name in planner_names()}
    assert list(PLANNERS) == list(CONFIGS) == ["grasp", "cem", "gd", "mppi", "latco"]
    assert planners.PLANNERS is PLANNERS  # built once
    for name, (planner_cls, config_cls) in PLANNERS.items():
        assert config_cls is config_class(name) is CONFIGS[name]
        assert planner_cls.__module__ in {f"grasplab.planners.{m}" for m in PLANNER_MODULES}
        assert planner_cls(config_cls()).config == config_cls()


def test_every_exported_name_resolves_where_it_is_defined():
    from grasplab.planners import base, gd, grasp, latco, sampling

    assert set(dir(planners)) >= set(planners.__all__)
    for name in planners.__all__:
        getattr(planners, name)
    assert planners.GRASPPlanner is grasp.GRASPPlanner and planners.Probe is base.Probe
    # the old homes of the configs still hold them
    assert (grasp.GRASPConfig, gd.GDConfig, latco.LatCoConfig) == (
        planners.GRASPConfig,
        planners.GDConfig,
        planners.LatCoConfig,
    )
    assert (sampling.CEMConfig, sampling.MPPIConfig) == (planners.CEMConfig, planners.MPPIConfig)
    assert base.PlannerConfig is planners.PlannerConfig
    assert base.config_from_dict is planners.config_from_dict
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        planners.nope  # noqa: B018


def test_config_class_of_an_import_path_is_its_planners(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    target = "byo_patch.planner:ShootingPlanner"
    assert config_class(target) is planner_classes(target)[1]
    assert config_class(target).__name__ == "ShootingConfig"
    with pytest.raises(ValueError, match=r"unknown planner 'nope'; known: \['cem', 'gd'"):
        config_class("nope")
    with pytest.raises(ValueError, match="no config dataclass"):
        config_class("tests.test_byo:NoConfigPlanner")
