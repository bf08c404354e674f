"""Bring your own: world models and planners by import path, patch-token latents, bad input."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from grasplab.cli import sweep as cli_sweep
from grasplab.eval import evaluate
from grasplab.eval.models import load_model, probe_model, target_spec
from grasplab.planners import PlanProblem, make_planner, planner_classes
from grasplab.platform.config import load
from grasplab.world_models import FlatLatents, OracleModel, as_flat

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = REPO / "examples/byo_patch/src"
HERE = __name__  # tests.test_byo: the bad models below are named by import path
SMALL = {
    "grasp": {"n_steps": 30, "sync_interval": 10, "sync_steps": 3, "goal_weight": 0.1},
    "cem": {"n_iterations": 3, "n_samples": 32, "n_elites": 4},
    "gd": {"n_steps": 20},
    "mppi": {"n_iterations": 3, "n_samples": 32, "n_elites": 8},
    "latco": {"n_steps": 30, "goal_weight": 0.1},
}


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))


class TokenModel:
    """Patch tokens ``(3, 2)`` of a 2-D point ``s' = s + 0.1 a``; an L1 cost that counts calls."""

    def __init__(self) -> None:
        self.state_shape = (3, 2)
        self.action_dim = 2
        self.embed = torch.tensor(
            [[1.0, 0.5, 0.0, 2.0, -1.0, 0.3], [0.0, 1.0, 1.5, -0.5, 1.0, 0.7]]
        )
        self.unembed = torch.linalg.pinv(self.embed)
        self.cost_calls = 0

    def encode(self, obs):
        return (obs @ self.embed).unflatten(-1, self.state_shape)

    def step(self, z, a):
        s = z.flatten(-2) @ self.unembed
        return self.encode(s + 0.1 * a)

    def cost(self, z, goal):
        assert z.shape[-2:] == goal.shape[-2:] == self.state_shape  # structured, not flat
        self.cost_calls += 1
        return (z - goal).abs().sum(dim=(-2, -1))


def token_problem(model: TokenModel, batch: int = 3, horizon: int = 4) -> PlanProblem:
    flat = as_flat(model)
    start = torch.zeros(batch, 2)
    goal = torch.tensor([0.2, -0.2]).expand(batch, 2)
    bound = torch.ones(2)
    return PlanProblem(flat, flat.encode(start), flat.encode(goal), horizon, -bound, bound)


def test_flat_latents_reshape_at_the_model_boundary():
    model = TokenModel()
    flat = as_flat(model)
    assert isinstance(flat, FlatLatents) and (flat.state_dim, flat.action_dim) == (6, 2)
    z = flat.encode(torch.randn(5, 7, 2, generator=torch.Generator().manual_seed(0)))
    assert z.shape == (5, 7, 6)
    # embed -> pinv round trip: float32 rounding of order 1e-6, hence atol
    torch.testing.assert_close(
        flat.unflatten(z),
        model.encode(flat.unflatten(z).flatten(-2) @ model.unembed),
        atol=1e-5,
        rtol=1e-5,
    )
    assert flat.step(z, torch.zeros(5, 7, 2)).shape == (5, 7, 6)
    assert flat.cost(z, z[:1]).shape == (5, 7)  # broadcasting goals
    assert flat.embed is model.embed  # the model's own attributes show through
    with pytest.raises(ValueError, match="expected D=6"):
        flat.step(torch.zeros(5, 4), torch.zeros(5, 2))
    plain = SimpleNamespace(state_dim=4, action_dim=2, encode=None, step=None)
    assert as_flat(plain) is plain  # flat models are not wrapped


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_planner_runs_on_patch_tokens_with_the_models_cost(name):
    model = TokenModel()
    problem = token_problem(model)
    before = problem.cost(problem.z0, problem.goal)
    calls = model.cost_calls
    result = make_planner(name, SMALL[name]).plan(
        problem, generator=torch.Generator().manual_seed(0)
    )
    B, H = problem.batch, problem.horizon
    assert result.actions.shape == (B, H, 2) and result.states.shape == (B, H, 6)
    assert bool((result.actions.abs() <= 1).all())
    assert model.cost_calls >= calls + 2  # while planning, not only in finish()
    final = as_flat(model).unflatten(result.states[:, -1])
    expected = (final - as_flat(model).unflatten(problem.goal)).abs().sum(dim=(-2, -1))
    assert torch.allclose(result.cost, expected)  # the reported cost is the model's L1 cost
    assert bool((result.cost < before).all())  # and planning lowered it


def test_user_planner_by_import_path_with_a_plain_frozen_config(example):
    planner_cls, config_cls = planner_classes("byo_patch.planner:ShootingPlanner")
    assert planner_cls.__name__ == "ShootingPlanner" and config_cls.__name__ == "ShootingConfig"
    planner = make_planner("byo_patch.planner.ShootingPlanner", {"n_samples": 16, "var_scale": 1})
    assert planner.config.var_scale == 1.0 and isinstance(planner.config.var_scale, float)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['bogus'\]"):
        make_planner("byo_patch.planner:ShootingPlanner", {"bogus": 1})
    result = planner.plan(token_problem(TokenModel()), generator=torch.Generator().manual_seed(0))
    assert result.actions.shape == (3, 4, 2) and result.iterations == 8
    with pytest.raises(ValueError, match="no config dataclass"):
        planner_classes(f"{HERE}:NoConfigPlanner")
    with pytest.raises(ValueError, match="frozen dataclass"):
        planner_classes(f"{HERE}:MutableConfigPlanner")


class NoConfigPlanner:
    def plan(self, problem, init=None, *, generator=None, probe=None): ...


@dataclasses.dataclass
class MutableConfig:
    n: int = 1


class MutableConfigPlanner(NoConfigPlanner):
    config_class = MutableConfig


def test_target_configs_compose_validate_and_run(example, tmp_path):
    """world_model/target.yaml and planner/target.yaml, smoke-run on one chunk each."""
    spec = load(
        [
            "protocol=tiny",
            "world_model=target",
            "world_model.target=byo_patch.model:make_model",
            "world_model.kwargs={patches: 2, channels: 3}",
            "+planner@planners.mine=target",
            "planners.mine.target=byo_patch.planner:ShootingPlanner",
            "+planners.mine.search_space.var_scale={type: uniform, low: 0.2, high: 1.0}",
            "planners.grasp.config.n_steps=20",
            "planners.cem.config.n_iterations=2",
            "planners.gd.config.n_steps=10",
        ]
    )
    kwargs = {"channels": 3, "patches": 2}
    assert spec.world_model == target_spec("byo_patch.model:make_model", kwargs)
    mine = spec.planners[-1]
    assert (mine.label, mine.name) == ("mine", "byo_patch.planner:ShootingPlanner")
    assert mine.trial_config({"var_scale": 0.5})["var_scale"] == 0.5
    model = load_model(spec.world_model, spec.protocol)
    assert model.state_shape == (2, 3) and model.state_dim == 6
    for planner in spec.planners:
        config = planner.trial_config({})
        results = evaluate(spec.protocol, make_planner(planner.name, config), model, "tune", [0])
        assert results.summary()["n"] == 1, planner.label


# --- bad input: checked on the driver, one line, exit code 2, no MLflow run -----------------


def raising_factory(device):
    raise RuntimeError("no weights here\nsecond line")


def no_step_model(device):
    return SimpleNamespace(state_dim=4, action_dim=2, encode=lambda obs: obs)


def no_device_factory():
    return None


class _Broken:
    def __init__(self, env, action_block, mode):
        self.oracle = OracleModel(env, action_block)
        self.state_dim, self.action_dim, self.mode = 4, self.oracle.action_dim, mode

    def encode(self, obs):
        z = self.oracle.encode(obs)
        return z * float("nan") if self.mode == "nan" else z

    def step(self, z, a):
        z = self.oracle.step(z, a)
        return z[..., :3] if self.mode == "shape" else z


def wrong_shape_model(device, env, action_block):
    return _Broken(env, action_block, "shape")


def nan_model(device, env, action_block):
    return _Broken(env, action_block, "nan")


def wrong_action_model(device, env):
    return _Broken(env, 2, "ok")


def wm(target: str) -> list[str]:
    return ["world_model=target", f"world_model.target={target}"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (wm("not_a_package.models:make"), "cannot import module 'not_a_package.models'"),
        (wm(f"{HERE}:no_such_factory"), "has no attribute 'no_such_factory'"),
        (wm("not an import path"), "must be an import path"),
        (wm(f"{HERE}:no_step_model"), "has no step method"),
        (wm(f"{HERE}:no_device_factory"), "unexpected keyword argument 'device'"),
        (wm(f"{HERE}:raising_factory"), "building the model failed (RuntimeError: no weights"),
        (wm(f"{HERE}:wrong_shape_model"), "step(z, a) returned shape (1, 3), expected (1, 4)"),
        (wm(f"{HERE}:nan_model"), "encode(one observation) returned NaN or inf"),
        (wm(f"{HERE}:wrong_action_model"), "has action_dim 4; the protocol needs 2"),
        (["world_model=target"], "world_model.target"),
        (
            ["+planner@planners.mine=target", "planners.mine.target=nope_pkg:Planner"],
            "cannot import module 'nope_pkg'",
        ),
        (
            ["+planner@planners.mine=target", f"planners.mine.target={HERE}:NoConfigPlanner"],
            "declares no config dataclass",
        ),
    ],
)
def test_bad_user_code_is_one_line_and_exit_code_2(
    tmp_path, monkeypatch, capsys, overrides, needle
):
    monkeypatch.chdir(tmp_path)
    assert cli_sweep.main(["protocol=tiny", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("grasplab sweep: error"), err
    assert needle in err, err
    assert not (tmp_path / "mlflow.db").exists()  # validated before any MLflow run existed


def test_probe_passes_a_good_patch_model(example):
    spec = load(["protocol=tiny"])
    model = load_model(target_spec("byo_patch.model:make_model"), spec.protocol)
    probe_model(model, spec.protocol, "byo_patch.model:make_model")  # no error
    assert "byo_patch" in sys.modules
