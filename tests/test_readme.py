"""The documented API example runs as written (at reduced sizes), so that it cannot rot; the
README keeps the two set-up commands that CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"  # the API example lives in the docs' quickstart

# The example's sizes take ~1 min on 2 cores; each replacement must match exactly once.
SMALLER = {
    ", n=50,": ", n=4,",
    "GRASPConfig(noise_scale=0.01)": "GRASPConfig(noise_scale=0.01, n_steps=20, sync_interval=10)",
    'make_planner("cem")': 'make_planner("cem", dict(n_iterations=2, n_samples=16, n_elites=4))',
    "tune_episodes=50": "tune_episodes=2",
    "test_episodes=100": "test_episodes=3",
}


def test_readme_api_example_runs_and_its_comments_hold():
    blocks = re.findall(r"```python\n(.*?)```", QUICKSTART.read_text(), re.S)
    assert len(blocks) == 1, "the quickstart has one API example"
    code = blocks[0]
    for old, new in SMALLER.items():
        assert code.count(old) == 1, f"quickstart example changed: {old!r} not found once"
        code = code.replace(old, new)
    torch.set_num_threads(1)
    scope: dict = {}
    exec(compile(code, str(QUICKSTART), "exec"), scope)
    result, problem = scope["result"], scope["problem"]
    assert result.actions.shape == (4, 50, 2)
    assert bool((result.actions >= problem.action_low).all())
    assert bool((result.actions <= problem.action_high).all())
    assert result.cost.shape == (4,) and {"loss_dyn", "loss_goal", "sync_cost"} <= set(result.trace)
    summary = scope["results"].summary()
    assert summary["n"] == 3 and 0.0 <= summary["ci_low"] <= summary["ci_high"] <= 1.0


def test_readme_keeps_the_two_setup_commands_that_ci_runs():
    readme = README.read_text()
    main_job = "pip install -e . && grasplab sweep"
    tests = 'pip install -e ".[dev,sims]" && python -m pytest -q -m "not slow"'
    assert main_job in readme and tests in readme
    assert tests in (ROOT / ".ci" / "run").read_text(), ".ci/run runs the README's test command"
