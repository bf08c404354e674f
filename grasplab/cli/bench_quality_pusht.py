"""``grasplab bench quality-pusht``: record a shipped Push-T checkpoint's quality (floors.json)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.bench_quality import record_main, record_parser

PROG, MODULE, KS = "grasplab bench quality-pusht", "grasplab.bench.quality_pusht", "[1,5,10,25,50]"


def parser() -> argparse.ArgumentParser:
    """``grasplab bench quality-pusht key=value ...`` (help only: :func:`main` parses them)."""
    return record_parser(PROG, MODULE, KS)


def main(argv: Sequence[str]) -> int:
    """Record a shipped Push-T checkpoint's quality and print it (bad input: one line, exit 2)."""
    return record_main(PROG, MODULE, KS, argv)
