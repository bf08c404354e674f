"""``grasplab bench wall-crossing``: does the learned wall model let plans through the wall?."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import checked_by, module_doc, new_parser, run_by

MODULE = "grasplab.bench.wall_crossing"


def parser() -> argparse.ArgumentParser:
    """``grasplab bench wall-crossing [options]``."""
    p = new_parser("grasplab bench wall-crossing", module_doc("grasplab.bench.wall_crossing"))
    p.add_argument("--horizon", type=int, default=50, help="model steps (<= 68)")
    p.add_argument("--episodes", type=int, default=100, help="held-out test tasks")
    p.add_argument("--model", default="pixel", choices=["pixel", "mlp", "oracle"])
    p.add_argument("--planners", default="cem,gd,grasp")
    p.add_argument("--margin", type=float, default=6.0, help="env units beyond the door's edge")
    p.add_argument("--set", action="append", default=[], metavar="PLANNER.FIELD=VALUE")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)

    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Options checked by :func:`grasplab.bench.wall_crossing.check` (bad input: exit 2)."""
    return checked_by(parser(), argv, MODULE)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.bench.wall_crossing.run`)."""
    return run_by(parse(argv), MODULE)
