"""``grasplab train``: train a world model (Hydra overrides), tracked and registered in MLflow."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import new_parser, train_epilog

INTERRUPTED = "grasplab train: interrupted; rerun the same command to resume"


def parser() -> argparse.ArgumentParser:
    """``grasplab train [overrides...]``."""
    p = new_parser(
        "grasplab train",
        "Train a world model (collecting its dataset first if needed), tracked and registered "
        "in MLflow.\nHydra overrides of tune_configs/train/config.yaml.",
        train_epilog(),
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Train: 0 on success, 2 on a bad config (one line on stderr), 130 on Ctrl-C."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from grasplab.platform import train
    from grasplab.platform.config import ConfigError

    try:
        spec = train.load(args.overrides, Path.cwd())
        train.set_threads(spec)
        tracker = train.open_tracker(spec)
        manifest = train.ensure_dataset(spec)
    except ConfigError as error:
        print(f"grasplab train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    try:
        result = train.run_training(spec, tracker, manifest)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    print(train.report(result))
    return 0
