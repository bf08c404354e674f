"""Shared fixtures: small linear-quadratic problems with known answers; one torch thread."""

from __future__ import annotations

import pytest
import torch

from grasplab.planners import PlanProblem
from grasplab.world_models import LinearModel, rollout


def lq_problem(seed: int, batch: int = 16, horizon: int = 10, device: str = "cpu"):
    """A controllable LinearModel with goals reached by in-bounds actions.

    Returns the problem and the initial terminal errors ``(B,)``.
    """
    g = torch.Generator().manual_seed(seed)
    D, A = 4, 2
    model = LinearModel(
        torch.eye(D) + 0.1 * torch.randn(D, D, generator=g), torch.randn(D, A, generator=g)
    )
    assert model.controllability_rank(horizon) == D
    z0 = torch.randn(batch, D, generator=g)
    reference = torch.rand(batch, horizon, A, generator=g) * 1.6 - 0.8
    goal = rollout(model, z0, reference)[:, -1]
    problem = PlanProblem(
        model,
        z0.to(device),
        goal.to(device),
        horizon,
        -torch.ones(A, device=device),
        torch.ones(A, device=device),
    )
    return problem, (z0 - goal).pow(2).mean(-1)


@pytest.fixture
def lq():
    return lq_problem(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test (like a Ray worker), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
