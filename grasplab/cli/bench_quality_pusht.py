"""``grasplab bench quality-pusht``: record a shipped Push-T checkpoint's quality."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from grasplab.cli.common import HELP_FLAGS, key_values, module_doc, new_parser

KEYS = {"name", "data", "horizon", "episodes", "test_episodes", "ks", "test_cem"}


def parser() -> argparse.ArgumentParser:
    """``grasplab bench quality-pusht key=value ...`` (help only: :func:`main` parses the keys)."""
    p = new_parser("grasplab bench quality-pusht", module_doc("grasplab.bench.quality_pusht"))
    p.usage = (
        "grasplab bench quality-pusht name=<shipped checkpoint dir> data=DIR\n"
        "       [horizon=10 episodes=100 test_episodes=20 ks=[1,5,10,25,50]"
        " test_cem=[iterations,samples,elites]]"
    )
    p.add_argument(
        "settings",
        nargs="*",
        metavar="key=value",
        help="the checkpoint, its dataset and the measurement's sizes",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Record a shipped Push-T checkpoint's quality and print it (bad input: one line, exit 2)."""
    argv = list(argv)
    if argv and argv[0] in HELP_FLAGS:
        parser().print_help()
        return 0
    from grasplab.bench import quality_pusht

    try:
        args = key_values("grasplab bench quality-pusht", argv, {"name", "data"}, KEYS)
        result = quality_pusht.record(str(args.pop("name")), str(args.pop("data")), **args)
    except ValueError as err:
        print(f"grasplab bench quality-pusht: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=float))
    return 0
