"""The same contracts on an accelerator: planners, learned models and the runner on CUDA.

Skipped without CUDA. ``GRASPLAB_TEST_DEVICE=cpu python -m pytest -m gpu tests/test_cuda.py``
runs them on the CPU instead, which checks the tests themselves on a machine without a GPU.
"""

from __future__ import annotations

import os

import pytest
import torch

from grasplab.eval import EvalProtocol, evaluate
from grasplab.planners import PLANNERS, make_planner
from grasplab.world_models import OracleModel, checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS

from .conftest import lq_problem
from .test_planners import FAST
from .test_world_models_learned import BATCHES, make_model, observation

DEVICE = os.environ.get("GRASPLAB_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]


def _same_device(t: torch.Tensor) -> bool:
    return t.device.type == torch.device(DEVICE).type


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_planner_keeps_the_problem_on_the_device(name):
    problem, _ = lq_problem(0, batch=5, horizon=7, device=DEVICE)
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    result = make_planner(name, FAST[name]).plan(problem, generator=generator)
    assert result.actions.shape == (5, 7, 2) and _same_device(result.actions)
    assert _same_device(result.cost) and _same_device(result.states)
    assert bool((result.actions >= -1).all()) and bool((result.actions <= 1).all())
    assert bool(torch.isfinite(result.cost).all())
    again = make_planner(name, FAST[name]).plan(
        problem, generator=torch.Generator(device=DEVICE).manual_seed(0)
    )
    torch.testing.assert_close(again.actions, result.actions)  # seeded on the device too


def test_gd_on_the_device_matches_the_cpu():
    # GD draws no random numbers: the device may change rounding, not the answer.
    cpu, _ = lq_problem(1, batch=4)
    dev, _ = lq_problem(1, batch=4, device=DEVICE)
    a = make_planner("gd").plan(cpu)
    b = make_planner("gd").plan(dev)
    torch.testing.assert_close(b.actions.cpu(), a.actions, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["mlp", "pixel"])
@pytest.mark.parametrize("batch", BATCHES)
def test_learned_models_encode_and_step_on_the_device(kind, batch):
    with torch.device(DEVICE):
        model = make_model(kind)
    z = model.encode(observation(model, batch, DEVICE))
    a = torch.zeros((*batch, model.action_dim), device=DEVICE, requires_grad=True)
    z2 = model.step(z, a)
    assert z2.shape == (*batch, model.state_dim) and _same_device(z2)
    z2.sum().backward()
    assert a.grad is not None and _same_device(a.grad)


@pytest.mark.parametrize("name", ["wall-pixel-b1", "pointmaze-mlp-b1"])
def test_shipped_model_plans_through_the_runner_on_the_device(name):
    model = checkpoint.load(CHECKPOINTS / name, device=DEVICE)
    info = checkpoint.info(CHECKPOINTS / name)
    protocol = EvalProtocol(
        env=info["env"],
        env_overrides=dict(info["env_overrides"]),
        horizon=10,
        action_block=model.action_block,
        tune_episodes=0,
        test_episodes=4,
    )
    cem = make_planner("cem", {"n_iterations": 3, "n_samples": 32, "n_elites": 4})
    summary = evaluate(protocol, cem, model, "test").summary()
    assert summary["n"] == 4 and 0.0 <= summary["success_rate"] <= 1.0


def test_oracle_model_plans_through_the_runner_on_the_device():
    protocol = EvalProtocol(env="ballnav", horizon=8, tune_episodes=0, test_episodes=6)
    model = OracleModel(protocol.make_env(), 1)
    model.device = DEVICE
    grasp = make_planner("grasp", {"n_steps": 40, "sync_interval": 20})
    results = evaluate(protocol, grasp, model, "test")
    assert results.summary()["n"] == 6 and results.model_steps[0] > 0


def test_a_patch_token_model_by_import_path_plans_on_the_device(monkeypatch):
    from pathlib import Path

    from grasplab.eval.models import load_model, target_spec

    example = Path(__file__).resolve().parents[1] / "examples/byo_patch/src"
    monkeypatch.syspath_prepend(str(example))
    protocol = EvalProtocol(env="ballnav", horizon=5, tune_episodes=0, test_episodes=3)
    model = load_model(target_spec("byo_patch.model:make_model"), protocol, DEVICE)
    assert model.state_shape == (4, 8) and _same_device(model.embed)  # built on the device
    for name in [*sorted(PLANNERS), "byo_patch.planner:ShootingPlanner"]:
        planner = make_planner(name, FAST.get(name, {"n_rounds": 2}))
        summary = evaluate(protocol, planner, model, "test").summary()
        assert summary["n"] == 3 and 0 <= summary["success_rate"] <= 1, name
