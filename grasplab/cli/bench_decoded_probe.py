"""``grasplab bench decoded-probe``: a pixel checkpoint's position read-outs and k-step errors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import HELP_FLAGS, key_value_parser, run_key_values

PROG, MODULE = "grasplab bench decoded-probe", "grasplab.bench.decoded_probe"
REQUIRED = {"name", "data"}


def parser() -> argparse.ArgumentParser:
    """``grasplab bench decoded-probe key=value ...`` (help only: :func:`main` parses them)."""
    usage = f"{PROG} name=<shipped checkpoint dir> data=DIR [ks=[1,2,...,80] windows=256]"
    return key_value_parser(PROG, MODULE, usage, "the checkpoint, its data, the depths k")


def main(argv: Sequence[str]) -> int:
    """Print the read-outs' errors and k-step errors as JSON (bad input: one line, exit 2)."""
    if argv and argv[0] in HELP_FLAGS:
        parser().print_help()
        return 0
    from grasplab.bench import decoded_probe

    def measure(args: dict) -> dict:
        ks = [int(k) for k in args.get("ks", decoded_probe.DEFAULT_KS)]
        windows = int(args.get("windows", 256))
        return decoded_probe.measure(str(args["name"]), str(args["data"]), ks, windows)

    return run_key_values(PROG, argv, (REQUIRED, {*REQUIRED, "ks", "windows"}), measure, indent=1)
