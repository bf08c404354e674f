"""``grasplab verify``: check a result bundle written by ``grasplab export``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import module_doc, new_parser


def parser() -> argparse.ArgumentParser:
    """``grasplab verify DIR [--rerun K] [--device cpu|cuda] [--tracking-uri URI]``."""
    p = new_parser("grasplab verify", module_doc("grasplab.platform.bundle"))
    p.add_argument("bundle", metavar="DIR", help="a bundle written by grasplab export")
    p.add_argument(
        "--rerun",
        type=int,
        default=0,
        metavar="K",
        help="re-plan K sampled test episodes per variant here and count reproductions",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of the rerun")
    p.add_argument(
        "--tracking-uri", help="MLflow store that resolves a models:/ world model (rerun)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """0 if the bundle checks out, 1 if figures or a rerun differ, 2 on bad input."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from grasplab.platform.bundle import BundleError, verify

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    try:
        verdict = verify(Path(args.bundle), args.rerun, args.device)
    except BundleError as error:
        print(f"grasplab verify: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(verdict.lines()))
    return verdict.exit_code()
