"""The ``grasplab`` command: dispatches sub-commands to their modules (imported lazily).

Each sub-command module exposes ``main(argv: list[str]) -> int``. Bad input prints a one-line
error and exits with code 2.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("sweep",): ("grasplab.platform.sweep", "Tune + Optuna sweep tracked in MLflow (main job)"),
    ("train",): ("grasplab.platform.train", "train a world model (Hydra overrides)"),
    ("collect",): ("grasplab.world_models.data", "collect episodes in a torch-native env"),
    ("bench", "planners"): ("grasplab.bench.planners", "planner benchmark on oracle models"),
    ("bench", "long-horizon"): ("grasplab.bench.long_horizon", "long-horizon table"),
    ("bench", "wall-crossing"): (
        "grasplab.bench.wall_crossing",
        "does the learned wall model let plans through the wall?",
    ),
    ("bench", "platform"): ("grasplab.platform.bench", "sweep overhead and worker scaling"),
    ("bench", "sims"): ("grasplab.bench.sims", "real simulators: episodes/s, 1 vs 2 workers"),
}


def usage() -> str:
    """The help text listing sub-commands."""
    lines = ["usage: grasplab <command> [args...]", "", "commands:"]
    for words, (_, text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<22} {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grasplab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    for words, (module, _) in sorted(COMMANDS.items(), key=lambda kv: -len(kv[0])):
        if tuple(argv[: len(words)]) == words:
            return int(importlib.import_module(module).main(argv[len(words) :]) or 0)
    print(f"grasplab: unknown command {' '.join(argv[:2])!r}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
