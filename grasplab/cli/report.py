"""``grasplab report``: HTML + Markdown report of sweeps (or a study) from MLflow."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import module_doc, new_parser


def parser() -> argparse.ArgumentParser:
    """``grasplab report <sweep name | parent run id> [more ...] [--out DIR] [--tracking-uri]``."""
    p = new_parser("grasplab report", module_doc("grasplab.platform.report.document"))
    p.add_argument(
        "sweeps",
        nargs="+",
        metavar="SWEEP",
        help="sweep name (its latest finished sweep), sweep id or parent run id; several are "
        "lined up side by side",
    )
    p.add_argument("--out", help="output folder (default: ./reports/<first sweep id>)")
    p.add_argument(
        "--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db, the sweep default)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report and print its paths: 0 on success, 2 on bad input (one line on stderr)."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from grasplab.platform import study
    from grasplab.platform.report import document as reporting
    from grasplab.platform.tracking import default_tracking

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = args.tracking_uri or default_tracking(Path.cwd())[0]
    try:
        client = reporting.open_store(uri)
        if len(args.sweeps) == 1 and (found := study.resolve_study(client, args.sweeps[0])):
            paths = study.report_study(client, uri, found, args.out)
            for path in paths:
                print(path)
            return 0
        runs = [reporting.resolve(client, ref) for ref in args.sweeps]
        reporting.check_compatible(runs)
        sweeps = [reporting.load_sweep(client, run) for run in runs]
        if (warning := reporting.fingerprint_warning(runs)) is not None:
            print(f"grasplab report: warning: {warning}", file=sys.stderr)
        out = Path(args.out or Path("reports") / sweeps[0].sweep_id).resolve()
        paths = reporting.write_report(client, uri, sweeps, out)
    except reporting.ReportError as error:
        print(f"grasplab report: error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
