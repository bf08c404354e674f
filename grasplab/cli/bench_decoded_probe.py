"""``grasplab bench decoded-probe``: a pixel checkpoint's position read-outs and k-step errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from grasplab.cli.common import HELP_FLAGS, key_values, module_doc, new_parser

KEYS = {"name", "data", "ks", "windows"}


def parser() -> argparse.ArgumentParser:
    """``grasplab bench decoded-probe key=value ...`` (help only: :func:`main` parses the keys)."""
    p = new_parser("grasplab bench decoded-probe", module_doc("grasplab.bench.decoded_probe"))
    p.usage = (
        "grasplab bench decoded-probe name=<shipped checkpoint dir> data=DIR\n"
        "       [ks=[1,2,...,80] windows=256]"
    )
    p.add_argument(
        "settings",
        nargs="*",
        metavar="key=value",
        help="the checkpoint, its dataset, the depths k and the windows",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Print the read-outs' errors and k-step errors as JSON (bad input: one line, exit 2)."""
    argv = list(argv)
    if argv and argv[0] in HELP_FLAGS:
        parser().print_help()
        return 0
    from grasplab.bench import decoded_probe

    try:
        args = key_values("grasplab bench decoded-probe", argv, {"name", "data"}, KEYS)
        ks = [int(k) for k in args.get("ks", decoded_probe.DEFAULT_KS)]
        windows = int(args.get("windows", 256))
        result = decoded_probe.measure(str(args["name"]), str(args["data"]), ks, windows)
    except ValueError as err:
        print(f"grasplab bench decoded-probe: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1, default=float))
    return 0
