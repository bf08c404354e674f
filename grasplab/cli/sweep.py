"""``grasplab sweep``: a Tune + Optuna sweep of planners, tracked in MLflow."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import new_parser, sweep_epilog


def parser() -> argparse.ArgumentParser:
    """``grasplab sweep [overrides...] [--resume] [--quiet]``."""
    p = new_parser(
        "grasplab sweep",
        "Tune + Optuna sweep of planners, tracked in MLflow (Hydra overrides of "
        "tune_configs/config.yaml).",
        sweep_epilog(),
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=ablation")
    p.add_argument(
        "--resume", action="store_true", help="continue the latest unfinished sweep of this name"
    )
    p.add_argument("--quiet", action="store_true", help="print only the final report")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep: 0 on success, 2 on a bad config (one line on stderr), 1 on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    from grasplab.platform import runtime
    from grasplab.platform.config import ConfigError
    from grasplab.platform.sweep import COMMAND, prepare, run_sweep
    from grasplab.platform.workers import PlacementTimeout
    from grasplab.platform.writer import TrackingOutage

    try:
        spec, state = prepare(args.overrides, Path.cwd(), resume=args.resume)
    except ConfigError as error:
        print(f"grasplab sweep: error: {error}", file=sys.stderr)
        return 2
    if not state.parent_run_id:  # the command that made the sweep (exported with it)
        command = shlex.join(["grasplab", "sweep", *argv])
        state.parent_tags = {**state.parent_tags, COMMAND: command}
    resume = f"grasplab sweep {' '.join(a for a in argv if a != '--resume')} --resume"
    try:
        result = run_sweep(spec, state, progress=not args.quiet)
    except runtime.ConnectError as error:
        print(f"grasplab sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grasplab sweep: interrupted; resume with: {resume}", file=sys.stderr)
        return 130
    except (PlacementTimeout, TrackingOutage) as error:
        print(f"grasplab sweep: stopped: {error}\nresume with: {resume}", file=sys.stderr)
        return 1
    except Exception as error:  # the CLI prints it as one line (grasplab.errors)
        error.add_note(f"resume with: {resume}")
        raise
    print(result.summary)
    return 0
