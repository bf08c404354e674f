"""``grasplab export``: a self-contained result bundle of a sweep or study."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import module_doc, new_parser


def parser() -> argparse.ArgumentParser:
    """``grasplab export <sweep | study: name, id or run id> --out DIR [--tracking-uri]``."""
    p = new_parser("grasplab export", module_doc("grasplab.platform.bundle"))
    p.add_argument(
        "sweep",
        metavar="SWEEP",
        help="sweep or study (grasplab ablate) name (its latest finished one), id or run id",
    )
    p.add_argument("--out", required=True, help="bundle folder (new, or empty)")
    p.add_argument(
        "--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db, the sweep default)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the bundle: 0 when written, 2 on bad input (one line on stderr)."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from grasplab.platform.bundle import BundleError, export, folder_hashes
    from grasplab.platform.report.document import ReportError, open_store
    from grasplab.platform.tracking import default_tracking

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = args.tracking_uri or default_tracking(Path.cwd())[0]
    try:
        out = export(open_store(uri), args.sweep, Path(args.out), uri)
    except (BundleError, ReportError) as error:
        print(f"grasplab export: error: {error}", file=sys.stderr)
        return 2
    print(f"bundle written to {out} ({len(folder_hashes(out))} files)")
    return 0
