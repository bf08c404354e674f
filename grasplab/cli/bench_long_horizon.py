"""``grasplab bench long-horizon``: the long-horizon table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import PLANNER_ORDER, checked_by, module_doc, new_parser, run_by

MODULE = "grasplab.bench.long_horizon"

LONG_HORIZONS = "10,20,30,40,50,60,70,80"
"""Default ``--horizons`` (the same as :data:`grasplab.bench.long_horizon.HORIZONS`)."""


def parser() -> argparse.ArgumentParser:
    """``grasplab bench long-horizon [options]``."""
    p = new_parser("grasplab bench long-horizon", module_doc("grasplab.bench.long_horizon"))
    p.add_argument("--envs", default="pointmaze,wall")
    p.add_argument("--horizons", default=None, help=f"model steps (default {LONG_HORIZONS})")
    p.add_argument("--episodes", type=int, default=None, help="test episodes per cell (100)")
    p.add_argument(
        "--model",
        default="pixel",
        choices=["pixel", "mlp", "patch", "oracle"],
        help="shipped checkpoint <env>-<model>-b1 (patch: the 1024-d patch-latent model)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a world-model checkpoint directory instead of the shipped <env>-<model>-b1 (one env)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="pusht: the recorded dataset the tasks come from (default: the shipped held-out "
        "episodes 900-999, checkpoints/pusht-pusher-heldout, states and actions)",
    )
    p.add_argument(
        "--splits",
        default="900:950,950:1000",
        help="pusht: tuning and test episode ranges of the dataset, numbered as in the full "
        "one (the test range is used; without --data both lie in 900-999)",
    )
    p.add_argument(
        "--planners",
        default=f"{PLANNER_ORDER},grasp_reference",
        help="columns; grasp_reference = GRASP with GRASPConfig.reference() (the authors' "
        "solver step for step, actions clamped)",
    )
    p.add_argument(
        "--budget", type=float, default=1.0, help="scale of every planner's iteration count"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PLANNER.FIELD=VALUE",
        help="override a planner's config field (repeatable), e.g. grasp.goal_weight=0.1",
    )
    p.add_argument("--floor-repeats", type=int, default=5, help="random rollouts per task")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="H in {10, 50}, 16 episodes per cell")
    p.add_argument(
        "--final-plan",
        action="store_true",
        help="score only each planner's final plan (no freezing of iterates the true env's probe "
        "saw succeed: the env's success signal never selects a plan)",
    )
    p.add_argument(
        "--mpc",
        type=int,
        default=0,
        metavar="E",
        help="receding horizon instead of open loop: execute E model steps per replan, replan "
        "over the remaining steps, ceil(H/E) plans per episode (the open-loop env-step budget)",
    )
    p.add_argument(
        "--probe",
        default="auto",
        choices=["auto", "linear", "decoded"],
        help="pixel models' position read-out: linear (ridge latent -> position) or decoded "
        "(decode the latent, locate the agent; models whose decode returns images); auto: "
        "decoded where the model decodes to images (patch), else linear",
    )
    p.add_argument("--json", default=None, help="write all figures here (after every row)")
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Options checked by :func:`grasplab.bench.long_horizon.check` (bad input: exit 2)."""
    return checked_by(parser(), argv, MODULE)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.bench.long_horizon.run`)."""
    return run_by(parse(argv), MODULE)
