"""The ``grasplab`` command: dispatches each sub-command to its module in :mod:`grasplab.cli`.

Each command module (``grasplab/cli/<command>.py``) holds its ``parser()`` and its
``main(argv) -> int``, and imports the capability it runs (Ray, torch, MLflow, Hydra) inside
``main``, so ``-h``/``--help`` never waits for them. Bad input prints a one-line error and exits
with code 2; a mistyped command names the nearest one; an error raised while the command runs
prints one line and where its traceback was written, exit code 1 (:mod:`grasplab.errors`).
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

from grasplab.cli.common import sweep_epilog
from grasplab.errors import run_command
from grasplab.malloc import keep_freed_memory

COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("sweep",): ("grasplab.cli.sweep", "Tune + Optuna sweep tracked in MLflow (main job)"),
    ("ablate",): (
        "grasplab.cli.ablate",
        "ablation study: GRASP variants + LatCo over cells x horizons x seeds, one MLflow run",
    ),
    ("report",): (
        "grasplab.cli.report",
        "HTML + Markdown report of sweep(s) from MLflow, with significance tests",
    ),
    ("export",): (
        "grasplab.cli.export",
        "result bundle of a sweep or study: manifest, per-episode rows, SHA-256 of every file",
    ),
    ("verify",): (
        "grasplab.cli.verify",
        "check a result bundle: hashes, figures recomputed from its rows, --rerun K episodes",
    ),
    ("train",): ("grasplab.cli.train", "train a world model (Hydra overrides)"),
    ("collect",): ("grasplab.cli.collect", "collect episodes in a torch-native env"),
    ("bench", "planners"): ("grasplab.cli.bench_planners", "planner benchmark on oracle models"),
    ("bench", "long-horizon"): ("grasplab.cli.bench_long_horizon", "long-horizon table"),
    ("bench", "wall-crossing"): (
        "grasplab.cli.bench_wall_crossing",
        "does the learned wall model let plans through the wall?",
    ),
    ("bench", "platform"): ("grasplab.cli.bench_platform", "sweep overhead and worker scaling"),
    ("bench", "sims"): ("grasplab.cli.bench_sims", "real simulators: episodes/s, 1 vs 2 workers"),
    ("bench", "invariance"): (
        "grasplab.cli.bench_invariance",
        "do episode outcomes depend on the chunk size? (flip counts, every planner)",
    ),
    ("bench", "quality"): (
        "grasplab.cli.bench_quality",
        "record a shipped checkpoint's quality (floors.json)",
    ),
    ("bench", "quality-pusht"): (
        "grasplab.cli.bench_quality_pusht",
        "record a shipped Push-T checkpoint's quality (floors.json)",
    ),
    ("bench", "decoded-probe"): (
        "grasplab.cli.bench_decoded_probe",
        "a pixel checkpoint's position read-outs and k-step errors",
    ),
}
"""Command words -> (its module in :mod:`grasplab.cli`, one line of help)."""
DRIVERS = frozenset({("sweep",), ("ablate",), ("report",), ("export",), ("bench", "platform")})
"""Commands whose process only coordinates (Ray's workers plan, each with its own allocator
setting): they keep glibc's defaults, so memory they free goes back to the system, where
:func:`~grasplab.malloc.keep_freed_memory` would hold up to 512 MB of it."""
HELP = ("-h", "--help")


def usage() -> str:
    """The help text listing sub-commands, the experiments and common sweep overrides."""
    lines = ["usage: grasplab <command> [args...]", "", "commands:"]
    for words, (_, text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<22} {text}")
    lines += [
        "",
        "'grasplab <command> --help' describes a command.",
        "",
        sweep_epilog(),
    ]
    return "\n".join(lines)


def group_usage(prefix: str) -> str:
    """The help text of a command group (``grasplab bench``): its sub-commands."""
    lines = [f"usage: grasplab {prefix} <command> [args...]", "", f"{prefix} commands:"]
    for words, (_, text) in COMMANDS.items():
        if words[0] == prefix and len(words) > 1:
            lines.append(f"  {' '.join(words[1:]):<20} {text}")
    lines += ["", f"'grasplab {prefix} <command> --help' describes a command."]
    return "\n".join(lines)


def groups() -> set[str]:
    """First words of the multi-word commands (``bench``)."""
    return {words[0] for words in COMMANDS if len(words) > 1}


def closest(word: str, options: Sequence[str]) -> str | None:
    """The option nearest to ``word`` (difflib), or None when none is close."""
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_command(argv: Sequence[str]) -> str:
    """One line naming the unknown command and the nearest known one, if any."""
    firsts = list(dict.fromkeys(words[0] for words in COMMANDS))
    first = argv[0] if argv[0] in firsts else closest(argv[0], firsts)
    if first is None:
        return f"grasplab: unknown command {argv[0]!r}; commands: {', '.join(firsts)}"
    if first not in groups() or len(argv) == 1:
        return f"grasplab: unknown command {argv[0]!r}; did you mean {first!r}?"
    typed = " ".join(argv[:2])
    subs = [words[1] for words in COMMANDS if words[0] == first and len(words) > 1]
    sub = argv[1] if argv[1] in subs else closest(argv[1], subs)
    if sub is None:
        return f"grasplab: unknown command {typed!r}; {first} commands: {', '.join(subs)}"
    return f"grasplab: unknown command {typed!r}; did you mean '{first} {sub}'?"


def match(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The command ``argv`` starts with (longest first), or None."""
    for words in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            return words
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grasplab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in (*HELP, "help"):
        if len(argv) <= 1:
            print(usage())
            return 0
        argv = [*argv[1:], "--help"]  # grasplab help sweep == grasplab sweep --help
    if argv[0] in groups() and (len(argv) == 1 or argv[1] in HELP):
        print(group_usage(argv[0]))
        return 0
    words = match(argv)
    if words is None:
        print(unknown_command(argv), file=sys.stderr)
        return 2
    rest = argv[len(words) :]
    command = importlib.import_module(COMMANDS[words][0])  # light: heavy imports are in main()
    if any(arg in HELP for arg in rest):
        command.parser().print_help()
        return 0
    if words not in DRIVERS:
        keep_freed_memory()  # fewer page faults in tensor-heavy commands (grasplab/malloc.py)
    return run_command(" ".join(words), lambda: command.main(rest))


if __name__ == "__main__":
    sys.exit(main())
