"""``grasplab bench quality``: record a shipped checkpoint's quality (floors.json)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from grasplab.cli.common import HELP_FLAGS, key_value_parser, run_key_values

REQUIRED = {"name", "data"}
KNOWN = {*REQUIRED, "horizon", "episodes", "test_episodes", "ks", "test_cem"}


def record_parser(prog: str, module: str, ks: str) -> argparse.ArgumentParser:
    """The help-only parser of a ``record`` command (``ks``: its default depths)."""
    usage = (
        f"{prog} name=<shipped checkpoint dir> data=DIR\n"
        f"       [horizon=10 episodes=100 test_episodes=20 ks={ks}\n"
        "        test_cem=[iterations,samples,elites]]"
    )
    return key_value_parser(prog, module, usage, "the checkpoint, its data and the sizes")


def record_main(prog: str, module: str, ks: str, argv: Sequence[str]) -> int:
    """Run ``module.record`` on ``key=value`` settings and print its entry (bad input: 2)."""
    if argv and argv[0] in HELP_FLAGS:
        record_parser(prog, module, ks).print_help()
        return 0
    record = importlib.import_module(module).record
    return run_key_values(
        prog,
        argv,
        (REQUIRED, KNOWN),
        lambda args: record(str(args.pop("name")), str(args.pop("data")), **args),
    )


def parser() -> argparse.ArgumentParser:
    """``grasplab bench quality key=value ...`` (help only: :func:`main` parses the keys)."""
    return record_parser("grasplab bench quality", "grasplab.bench.quality", "[1,5,20]")


def main(argv: Sequence[str]) -> int:
    """Record a shipped checkpoint's quality and print it (bad input: one line, exit 2)."""
    return record_main("grasplab bench quality", "grasplab.bench.quality", "[1,5,20]", argv)
