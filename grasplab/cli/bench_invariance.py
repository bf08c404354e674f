"""``grasplab bench invariance``: episode outcomes at several chunk sizes (flip counts)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import checked_by, module_doc, new_parser, run_by

MODULE = "grasplab.bench.invariance"


def parser() -> argparse.ArgumentParser:
    """``grasplab bench invariance [options]``."""
    p = new_parser("grasplab bench invariance", module_doc(MODULE))
    p.add_argument("--env", default="pointmaze", choices=["pointmaze", "wall", "ballnav"])
    p.add_argument("--layout", default="medium", help="point-maze layout")
    p.add_argument("--horizon", type=int, default=15, help="model steps")
    p.add_argument("--episodes", type=int, default=64, help="held-out test episodes")
    p.add_argument("--chunks", default="8,64", help="chunk sizes, the first is the reference")
    p.add_argument("--planners", default="cem,gd,mppi,latco,grasp,grasp_reference")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0, help="protocol seed")
    p.add_argument("--json", help="write the figures to this file")
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Options checked by :func:`grasplab.bench.invariance.check` (bad input: exit 2)."""
    return checked_by(parser(), argv, MODULE)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.bench.invariance.run`)."""
    return run_by(parse(argv), MODULE)
