"""Does the decoded read-out see where a patch model's PLANS go? GD and GRASP on a few tasks.

One-off check for BENCHMARKS.md 7.2: ``python readout_check.py wall 10 20`` (env, H, tasks).
Prints, per planner: true success; success under the model judged against the true goal and
against the goal as the read-out reads it; the agent heatmap's peak at the plan's last predicted
state next to the encoded goal's; the latent MSE between them.
"""

from __future__ import annotations

import sys

import torch

from grasplab.bench.decoded_probe import fit_decoded_probe
from grasplab.bench.long_horizon import Recorder
from grasplab.envs import make
from grasplab.eval import EvalProtocol, evaluate
from grasplab.planners import make_planner
from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS


def peak(probe, images: torch.Tensor) -> torch.Tensor:
    """The agent heatmap's maximum (before thresholding) per image."""
    excess = ((images - probe.background) * probe.direction).sum(-1).clamp_min(0)
    return excess.amax((-2, -1))


def main(env_name: str, horizon: int, n: int) -> None:
    """Plan ``n`` test tasks at ``horizon`` with GD and GRASP; print the read-out checks."""
    torch.set_num_threads(1)
    layout = {"layout": "medium"} if env_name == "pointmaze" else {}
    model = checkpoint.load(CHECKPOINTS / f"{env_name}-patch-b1")
    env = make(env_name, **layout)
    probe = fit_decoded_probe(model, env, count=1024, heldout=256)
    print("probe heldout", round(probe.heldout_error, 3))
    protocol = EvalProtocol(
        env=env_name,
        env_overrides=layout,
        horizon=horizon,
        action_block=1,
        seed=0,
        tune_episodes=0,
        test_episodes=50,
        stop_on_success=False,
    )
    goal = protocol.tasks("test").goal[:n]
    with torch.no_grad():
        zg = model.encode(env.render(goal))
        read_goal = probe(zg)
        goal_peak = peak(probe, model.decode(zg))
    r = env.success_radius
    for name in ("gd", "grasp"):
        recorder = Recorder(make_planner(name, {}))
        result = evaluate(protocol, recorder, model, "test", list(range(n)))
        z = recorder.result.states  # (n, H, D)
        with torch.no_grad():
            pos = probe(z)
            final_peak = peak(probe, model.decode(z[:, -1]))
        d_true = (pos - goal[:, None, :2]).norm(dim=-1)
        d_read = (pos - read_goal[:, None, :]).norm(dim=-1)
        print(
            f"{name} true success {result.success.mean():.2f}"
            f" | model success vs true goal {(d_true.min(1).values < r).float().mean():.2f}"
            f" vs goal as read {(d_read.min(1).values < r).float().mean():.2f}"
            f" | final read->goal median {d_true[:, -1].median():.2f}"
            f" | goal read error median {(read_goal - goal[:, :2]).norm(dim=-1).median():.2f}"
            f" | agent peak final/goal median {final_peak.median():.2f} {goal_peak.median():.2f}"
            f" | latent mse final-goal {(z[:, -1] - zg).square().mean(-1).median():.4f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
