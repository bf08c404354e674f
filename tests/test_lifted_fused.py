"""GRASP's fused loss path computes what the generic lifted objective computes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grasplab.planners import GRASPConfig, GRASPPlanner, PlanProblem
from grasplab.planners.base import goal_cost, randn, randn_into
from grasplab.planners.lifted import fused_lifted_losses, lifted_losses


class TanhModel:
    """``z' = z + tanh(z W + a V)``: small, nonlinear, with a per-dimension latent spread."""

    def __init__(self, D: int = 6, A: int = 2, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W = 0.5 * torch.randn(D, D, generator=g)
        self.V = torch.randn(A, D, generator=g)
        self.latent_spread = 0.5 + torch.rand(D, generator=g)
        self.state_dim, self.action_dim = D, A

    def step(self, z, a):
        return z + torch.tanh(z @ self.W + a @ self.V)


class WithOwnCost(TanhModel):
    """The same model declaring its own cost (the squared error): takes the generic path."""

    def cost(self, z, goal):
        return goal_cost(z, goal)


def tanh_problem(model, batch: int = 5, horizon: int = 7, seed: int = 1) -> PlanProblem:
    g = torch.Generator().manual_seed(seed)
    D, A = model.state_dim, model.action_dim
    z0, goal = torch.randn(batch, D, generator=g), torch.randn(batch, D, generator=g)
    return PlanProblem(model, z0, goal, horizon, -torch.ones(A), torch.ones(A))


def test_fused_losses_and_gradients_match_the_lifted_objective():
    model, g = TanhModel(), torch.Generator().manual_seed(2)
    B, H, D, A = 4, 6, model.state_dim, model.action_dim
    z0, goal = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    unit = model.latent_spread
    base_states = torch.randn(B, H - 1, D, generator=g)
    base_actions = torch.rand(B, H, A, generator=g) * 2 - 1
    weights = torch.rand(2, B, generator=g)  # distinct upstream gradients per problem and term

    def run(fused):
        scaled = base_states.clone().requires_grad_(True)
        actions = base_actions.clone().requires_grad_(True)
        if fused:
            inputs = torch.full((B, H, D), float("nan"))  # must be overwritten, not read
            dyn, goal_loss = fused_lifted_losses(model, z0, scaled, unit, actions, goal, inputs)
        else:
            dyn, goal_loss = lifted_losses(model, z0, scaled * unit, actions, goal, True)
        (weights[0] * dyn + weights[1] * goal_loss).sum().backward()
        return dyn.detach(), goal_loss.detach(), scaled.grad, actions.grad

    for got, want in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["default", "reference"])
def test_grasp_iterates_are_the_same_on_the_fused_path(preset):
    # WithOwnCost declares the squared error as its cost, so GRASP takes the generic
    # lifted_losses; TanhModel takes the fused path. Noise, clamping and syncs included.
    base = {"n_steps": 30, "sync_interval": 10, "sync_steps": 2, "noise_scale": 0.05}
    config = GRASPConfig.reference(**base) if preset == "reference" else GRASPConfig(**base)
    fused_problem = tanh_problem(TanhModel())
    generic_problem = dataclasses.replace(fused_problem, model=WithOwnCost())

    def solve(problem):
        return GRASPPlanner(config).plan(problem, generator=torch.Generator().manual_seed(4))

    fused, generic = solve(fused_problem), solve(generic_problem)
    torch.testing.assert_close(fused.actions, generic.actions, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        fused.extras["virtual_states"], generic.extras["virtual_states"], rtol=1e-5, atol=1e-5
    )
    for key in ("loss_dyn", "loss_goal", "sync_cost"):
        torch.testing.assert_close(fused.trace[key], generic.trace[key], rtol=1e-5, atol=1e-6)
    assert fused.actions.abs().max() > 0.1  # the plan moved away from its zero start


def test_randn_into_draws_what_randn_draws():
    out = torch.empty(3, 5, 7)
    got = randn_into(out, torch.Generator().manual_seed(9))
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(
        got, randn((3, 5, 7), out, torch.Generator().manual_seed(9)), rtol=0, atol=0
    )


def test_compile_losses_compiles_the_losses_and_keeps_the_iterates(monkeypatch):
    # The compiler is swapped for dynamo with its eager backend (no inductor build: seconds):
    # the flag must route the losses through torch.compile, and the plan must not change.
    import grasplab.planners.grasp as grasp_module

    compiled, compile_ = [], torch.compile

    def recording_compile(fn):
        compiled.append(fn)
        return compile_(fn, backend="eager")

    monkeypatch.setattr(grasp_module.torch, "compile", recording_compile)
    problem = tanh_problem(TanhModel())
    config = GRASPConfig(n_steps=12, sync_interval=6, sync_steps=2, noise_scale=0.05)

    def solve(flag):
        planner = GRASPPlanner(dataclasses.replace(config, compile_losses=flag))
        return planner.plan(problem, generator=torch.Generator().manual_seed(4))

    eager = solve(False)
    assert compiled == []
    through_compile = solve(True)
    assert compiled == [grasp_module._scaled_lifted_losses]
    torch.testing.assert_close(through_compile.actions, eager.actions, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        through_compile.extras["virtual_states"],
        eager.extras["virtual_states"],
        rtol=1e-5,
        atol=1e-5,
    )
