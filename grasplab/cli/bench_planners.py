"""``grasplab bench planners``: planner benchmark on oracle models."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import PLANNER_ORDER, checked_by, module_doc, new_parser, run_by

MODULE = "grasplab.bench.planners"


def parser() -> argparse.ArgumentParser:
    """``grasplab bench planners [options]``."""
    p = new_parser("grasplab bench planners", module_doc("grasplab.bench.planners"))
    p.add_argument("--envs", default="pointmaze,wall")
    p.add_argument("--horizons", default="10,25,50,80")
    p.add_argument("--episodes", type=int, default=50, help="test episodes per cell")
    p.add_argument("--planners", default=PLANNER_ORDER)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: like the Ray workers; stable)"
    )
    p.add_argument("--quick", action="store_true", help="pointmaze, H in {10, 25}, 10 episodes")
    p.add_argument("--skip-table", action="store_true", help="only the speed ratios")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="speed ratios on this checkpoint instead of the oracle (no table, no batching)",
    )
    p.add_argument("--ratio-batch", type=int, default=50, help="problems B of the ratios")
    p.add_argument("--ratio-horizon", type=int, default=50, help="horizon H of the ratios")
    p.add_argument("--grasp-budgets", default="50,250", help="GRASP iterations LO,HI timed")
    p.add_argument("--cem-budgets", default="2,12", help="CEM iterations LO,HI timed")
    p.add_argument("--cem-samples", type=int, default=300, help="CEM samples S of its ratio")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (the best counts)")
    p.add_argument(
        "--ratios", default="grasp,cem", help="speed ratios to measure: grasp, cem or both"
    )
    p.add_argument(
        "--grasp-compile",
        action="store_true",
        help="time GRASP with compile_losses=True (torch.compile; compiled in the warm-up)",
    )
    p.add_argument(
        "--no-streams-cost",
        dest="streams_cost",
        action="store_false",
        help="skip timing GRASP's and CEM's iteration with per-episode random streams against "
        "one generator (measured by default)",
    )
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Options checked by :func:`grasplab.bench.planners.check` (bad input: exit 2)."""
    return checked_by(parser(), argv, MODULE)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.bench.planners.run`)."""
    return run_by(parse(argv), MODULE)
