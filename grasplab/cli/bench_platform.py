"""``grasplab bench platform``: sweep overhead and worker scaling."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from grasplab.cli.common import module_doc, new_parser, run_by, sweep_epilog


def parser() -> argparse.ArgumentParser:
    """``grasplab bench platform [overrides...] [options]``."""
    p = new_parser("grasplab bench platform", module_doc("grasplab.platform.bench"), sweep_epilog())
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the benchmarked sweep")
    p.add_argument("--workers", default="1,2", help="worker counts for scaling (1,2)")
    p.add_argument("--chunks", type=int, default=16, help="chunks per scaling run")
    p.add_argument(
        "--sweep-workers",
        type=int,
        default=None,
        help="workers of the overhead sweep (default: one per CPU)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="cost per trial instead: a sweep of N tiny trials (env=ballnav protocol=tiny "
        "report.gif=false, 2 workers) -> s/trial, driver peak RSS, Tune state size, disk "
        "written, longest driver stall; skips the rest",
    )
    p.add_argument(
        "--store-runs",
        type=int,
        default=None,
        help="with --trials: also replay one of its trial runs N times into a fresh embedded "
        "MLflow store, as it is and bare (the tuned params, two metrics) -> disk written per "
        "trial run by the store",
    )
    p.add_argument("--skip-sweep", action="store_true", help="scaling only")
    p.add_argument("--skip-scaling", action="store_true", help="overhead only")
    p.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="simulated cluster instead: episodes/s with 1..N worker nodes (ray.cluster_utils), "
        "and the time to place --gpu-nodes autoscaled GPU workers (fake_multinode); skips the "
        "rest",
    )
    p.add_argument(
        "--gpu-nodes",
        type=int,
        default=2,
        help="GPU workers the fake autoscaler must launch for --nodes (default 2; 3 fake nodes "
        "failed to host workers on a 2-core machine)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Run the benchmark (:func:`grasplab.platform.bench.run`); 2 on a bad override."""
    return run_by(parser().parse_args(list(argv)), "grasplab.platform.bench")
