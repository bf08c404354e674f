"""Shared fixtures: small linear-quadratic problems with known answers; one torch thread; one
tiny sweep (the real CLI, in process) shared by the report and bundle tests."""

from __future__ import annotations

import contextlib
import io
import os
from types import SimpleNamespace

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


TINY_SWEEP = [
    "protocol=tiny",
    "protocol.tune_episodes=2",
    "~planners.gd",
    "sweep.chunk_size=2",
    "sweep.num_samples=2",
    "planners.grasp.config.n_steps=50",
    "planners.cem.config.n_iterations=4",
    "report.gif=false",
]
"""Overrides of the tiny sweep: GRASP and CEM, 2 trials each, 4 test goals at H = 6."""


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """``grasplab sweep`` (its ``main``, in process) on :data:`TINY_SWEEP`, in a fresh folder.

    Returns ``folder``, ``uri`` (its MLflow store), ``stdout`` (the printed summary) and
    ``parent`` (the parent run). Tests may add runs to the store, never change these.
    """
    from grasplab.cli import sweep
    from grasplab.platform.tracking import default_tracking
    from tests.support import trials_and_parents

    folder = tmp_path_factory.mktemp("tiny_sweep")
    cwd, stdout = os.getcwd(), io.StringIO()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout):
            assert sweep.main([*TINY_SWEEP, "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    uri = default_tracking(folder)[0]
    _, parents = trials_and_parents(uri)
    assert len(parents) == 1
    return SimpleNamespace(folder=folder, uri=uri, stdout=stdout.getvalue(), parent=parents[0])
