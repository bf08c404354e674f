"""``grasplab bench sims``: real simulators: episodes/s, 1 vs 2 workers."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import checked_by, module_doc, new_parser, run_by

MODULE = "grasplab.bench.sims"


def parser() -> argparse.ArgumentParser:
    """``grasplab bench sims [options]``."""
    p = new_parser("grasplab bench sims", module_doc("grasplab.bench.sims"))
    p.add_argument(
        "--sims", default="", help="comma-separated simulator names (default: every registered)"
    )
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--episodes", type=int, default=64, help="episodes per execute call")
    p.add_argument("--steps", type=int, default=100, help="env steps per episode")
    p.add_argument("--repeats", type=int, default=3, help="timed calls (the best counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the rows to this file")
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Options checked by :func:`grasplab.bench.sims.check` (bad input: exit 2)."""
    return checked_by(parser(), argv, MODULE)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.bench.sims.run`)."""
    return run_by(parse(argv), MODULE)
