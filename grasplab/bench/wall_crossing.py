"""``grasplab bench wall-crossing``: does the learned ``wall`` model let plans through the wall?

Every ``wall`` task starts in one room and ends in the other, so a plan must pass the door. For
each planner, the FINAL plan (no probing of iterates) on the held-out test tasks is rolled out
under the shipped long-horizon model (pixel by default, positions read by the linear probe of
:func:`grasplab.bench.quality.fit_position_probe`) and executed in the TRUE env, and:

- ``through_wall``: the predicted path crosses the wall's centre line at a height more than
  ``--margin`` env units (pixels) beyond the door's free opening, i.e. through solid wall under
  the model (the margin absorbs the model's position error);
- ``false_through_wall``: the same, among the false successes (model yes, env no);
- ``true_changes_room``: the executed path reaches the goal's room at all.

A model that lets the agent through the wall is wrong exactly where a planner's plan matters;
a planner that trusts it (they all do) is then judged by how often it steers into that error.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from grasplab.bench import long_horizon as lh
from grasplab.bench.quality import fit_position_probe
from grasplab.envs import Env, make
from grasplab.eval import EvalProtocol, evaluate, execute, format_cell
from grasplab.moved import moved_names
from grasplab.planners import make_planner


def check(args: argparse.Namespace) -> None:
    """Validate ``grasplab bench wall-crossing``' options; sets ``args.overrides`` (``--set``).

    Raises:
        ValueError: A bad ``--set`` item, ``--episodes`` or ``--margin``.
    """
    args.overrides = lh.checked_overrides(args.planners.split(","), args.set)
    if args.episodes < 1 or args.margin < 0:
        raise ValueError("--episodes must be >= 1 and --margin >= 0")


def through_wall(env: Env, pos: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per path ``(B, T, 2)``: changes room at all; crosses the wall outside the door.

    A crossing is a pair of consecutive points on either side of the wall's centre line; it is
    through the wall when its mid-height lies more than ``margin`` beyond the door's free
    opening (the door's half-width less the agent's radius).
    """
    cfg = env.config
    mid = (cfg.wall_lo + cfg.wall_hi) / 2
    side = pos[..., 0] < mid
    flip = side[:, 1:] != side[:, :-1]
    height = (pos[:, 1:, 1] + pos[:, :-1, 1]) / 2
    opening = cfg.door_width / 2 - cfg.agent_radius
    solid = (height - cfg.door_y).abs() > opening + margin
    return flip.any(dim=1), (flip & solid).any(dim=1)


def measure(
    args: argparse.Namespace, name: str, protocol: EvalProtocol, model: Any, probe: Any
) -> dict[str, Any]:
    """One planner: final plans under the model and in the true env."""
    env = protocol.make_env()
    tasks = protocol.tasks("test")
    recorder = lh.Recorder(make_planner(name, args.overrides.get(name, {})))
    results = evaluate(protocol, recorder, model, "test")
    assert recorder.result is not None
    in_model, predicted = lh.model_judgement(model, probe, env, recorder.result.states, tasks.goal)
    _, visited = execute(env, tasks.start, tasks.goal, recorder.result.actions, 1)
    _, solid = through_wall(env, predicted, args.margin)
    true_flip, _ = through_wall(env, visited[:, 1:, :2], args.margin)
    true = results.success.astype(bool)
    solid, false = solid.cpu().numpy(), in_model & ~true
    return {
        "config": recorder.config.to_dict(),
        "summary": results.summary(),
        "model_success": float(in_model.mean()),
        "through_wall": float(solid.mean()),
        "false_success": float(false.mean()),
        "false_through_wall": float(solid[false].mean()) if false.any() else float("nan"),
        "true_changes_room": float(true_flip.double().mean()),
    }


def run(args: argparse.Namespace) -> int:
    """Run every planner on checked options (:func:`check`); print one line each."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, model_name = lh.load_world_model("wall", args.model, "cpu")
    env = make("wall")
    probe = None
    if getattr(model, "observation", "state") == "pixels":
        probe = fit_position_probe(model, env, seed=args.seed)
    protocol = EvalProtocol(
        env="wall",
        horizon=args.horizon,
        action_block=model.action_block,
        seed=args.seed,
        tune_episodes=0,
        test_episodes=args.episodes,
        stop_on_success=False,
    )
    print(
        f"wall-crossing: model {model_name}, H={args.horizon}, {args.episodes} held-out test "
        f"tasks (all cross rooms), final plans, margin {args.margin:g} beyond the door"
    )
    print(
        "| planner | true success | model success | predicted through the wall | "
        "false successes / of them through the wall | executed path reaches the goal's room |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.planners.split(","):
        m = measure(args, name, protocol, model, probe)
        print(
            f"| {name} | {format_cell(m['summary'])} | {100 * m['model_success']:.0f}% | "
            f"{100 * m['through_wall']:.0f}% | {100 * m['false_success']:.0f}% / "
            f"{100 * np.nan_to_num(m['false_through_wall']):.0f}% | "
            f"{100 * m['true_changes_room']:.0f}% |",
            flush=True,
        )
    return 0


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.bench_wall_crossing.main",
        "parse": "grasplab.cli.bench_wall_crossing.parse",
    },
)
