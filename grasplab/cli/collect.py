"""``grasplab collect key=value ...``: collect an episode dataset in a torch-native env."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from grasplab.cli.common import HELP_FLAGS, module_doc, new_parser


def parser() -> argparse.ArgumentParser:
    """``grasplab collect key=value ...`` (help only: :func:`main` parses ``key=value`` itself)."""
    p = new_parser("grasplab collect", module_doc("grasplab.world_models.data"))
    p.usage = (
        "grasplab collect env=<pointmaze|wall|ballnav|sim:SIMULATOR> episodes=N steps=T seed=S "
        "out=DIR\n"
        "       [action_block=k shard_episodes=n max_shards=m behaviour=<default|pusher>\n"
        "        <env config field>=value ...]   (behaviour=pusher: scripted pusher, sim:pusht)"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="collection settings")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Collect (or resume) a dataset and print one summary line; 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HELP_FLAGS:
        parser().print_help()
        return 0
    from grasplab.world_models import data

    try:
        settings = data.parse_overrides(argv)
        manifest = data.collect_from(settings)
    except (ValueError, ImportError) as err:
        print(f"grasplab collect: {err}", file=sys.stderr)
        return 2
    print(data.summary_line(manifest, settings["out"]))
    return 0
