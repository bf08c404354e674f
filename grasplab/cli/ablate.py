"""``grasplab ablate``: an ablation study (cells x seeds of sweeps) as one MLflow run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from grasplab.cli.common import module_doc, new_parser


def parser() -> argparse.ArgumentParser:
    """``grasplab ablate [overrides...] [--resume] [--quiet]``."""
    p = new_parser(
        "grasplab ablate",
        module_doc("grasplab.platform.study"),
        "study overrides:\n"
        "  study=oracle|learned        the cells (env + world model) and seeds "
        "(tune_configs/study/)\n"
        "  study.seeds=[0,1,2]         replicates (seed= and protocol.seed= of each sweep)\n"
        "  study.only=[wall]           run some of the cells\n"
        "  +study.cells.x={env:wall}   add a cell (~study.cells '+study.cells={...}' replaces)\n"
        "the other overrides are those of `grasplab sweep` (grasplab sweep --help), applied "
        "to every cell; sweep.horizons=[30,50] spans horizons.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. study=learned")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest unfinished study of this name (finished sweeps are kept)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the final report")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study: 0 on success, 2 on bad input (one line on stderr), 1 on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    from grasplab.platform import runtime
    from grasplab.platform.config import ConfigError
    from grasplab.platform.study import load_study, run_study

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        study = load_study(args.overrides, Path.cwd())
    except ConfigError as error:
        print(f"grasplab ablate: error: {error}", file=sys.stderr)
        return 2
    resume = f"grasplab ablate {' '.join(a for a in argv if a != '--resume')} --resume"
    try:
        result = run_study(study, Path.cwd(), progress=not args.quiet, resume=args.resume)
    except (ConfigError, runtime.ConnectError) as error:
        print(f"grasplab ablate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grasplab ablate: interrupted; resume with: {resume}", file=sys.stderr)
        return 130
    except Exception as error:  # the CLI prints it as one line (grasplab.errors)
        error.add_note(f"resume with: {resume}")
        raise
    print(result.summary)
    return 0
