"""What the ``grasplab`` commands' parsers share (stdlib only, so ``--help`` stays fast).

Config-group choices read from ``tune_configs/`` as text, the experiments list and the common
overrides blocks of the help, module docstrings read from source (never imported) and printed as
written, bullet lists included.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grasplab.config_files import config_dir  # the one home of the config folder rule

__all__ = ["config_dir"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``grasplab`` package folder."""
PLANNER_ORDER = "cem,gd,mppi,latco,grasp"
"""Default ``--planners`` of the planner benchmarks (table columns, left to right)."""

SWEEP_OVERRIDES = (
    ("experiment=NAME", "the recipe: planners and their search spaces (listed above)"),
    (
        "env={env}",
        "environment; pointmaze: env.overrides.layout=umaze|medium|large; pusht, "
        "pointmaze_sim: real simulators (the sims extra, a trained model)",
    ),
    (
        "world_model={world_model}",
        "checkpoint: world_model.spec=DIR|models:/NAME/VERSION; your own: "
        "world_model.target=pkg.module:factory world_model.kwargs={...}",
    ),
    (
        "tasks={tasks}",
        "dataset: tasks.data=DIR tasks.k=N tasks.splits.tune=[a,b] tasks.splits.test=[c,d]",
    ),
    (
        "protocol={protocol}",
        "evaluation protocol; or one field: protocol.horizon=N, protocol.tune_episodes=N, "
        "protocol.test_episodes=N, protocol.mode=open_loop|mpc, ...",
    ),
    ("sweep.num_samples=N", "trials per planner variant (equal budgets)"),
    ("sweep.horizons=[10,20,40]", "one tuning stage per horizon"),
    (
        "cluster={cluster}",
        "where Ray runs; cluster.address=auto|HOST:6379 (an existing cluster), "
        "cluster.num_workers=N",
    ),
    ("mlflow.tracking_uri=URI", "MLflow server (default: sqlite:///./mlflow.db)"),
    ("name=NAME", "sweep name (default: the experiment's); --resume finds it"),
    ("--resume", "continue the latest unfinished sweep of this name"),
)
TRAIN_OVERRIDES = (
    ("world_model={train/world_model}", "the model kind to train, with its training recipe"),
    ("env={env}", "environment; pointmaze: env.overrides.layout=umaze|medium|large"),
    ("train.steps=N", "optimiser steps; train.max_minutes=M bounds one invocation"),
    ("model.width=N", "a model config field (MLPConfig / PixelConfig)"),
    ("data.episodes=N", "dataset size (collected first when data.dir holds none)"),
    ("root=DIR", "folder of data/, runs/ and the embedded MLflow store"),
    ("cluster={cluster}", "remote: the MLflow server of the Ray cluster's head"),
    ("mlflow.tracking_uri=URI", "MLflow server (default: sqlite:///<root>/mlflow.db)"),
)
HELP_FLAGS = ("-h", "--help")
COLUMN, WIDTH = 34, 100
"""Where an override's meaning starts, and the line width of the overrides block."""


def group_options(group: str) -> list[str]:
    """The options of a config group: the ``.yaml`` files of ``tune_configs/<group>/``."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def group_defaults(primary: str = "config.yaml") -> dict[str, str]:
    """``group -> option`` of a primary config's ``defaults:`` list (read as text, not Hydra)."""
    path = config_dir() / primary
    text = path.read_text() if path.is_file() else ""
    return dict(re.findall(r"^\s*-\s*([\w/]+):\s*(\w+)\s*(?:#.*)?$", text, re.M))


def yaml_summary(path: Path) -> str:
    """The first sentence of a config file's leading comment (``# @package`` lines skipped)."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            words.append(line.lstrip("# ").strip())
    text = " ".join(words)
    return text.split(". ")[0].rstrip(".")


def choices(group: str, default_of: dict[str, str]) -> str:
    """``a|b|c`` of a group's options, the default marked with ``*``."""
    name = group.rsplit("/", 1)[-1]
    default = default_of.get(group, default_of.get(name))
    return "|".join(f"{o}*" if o == default else o for o in group_options(group)) or "..."


def overrides_text(rows: tuple[tuple[str, str], ...], primary: str) -> str:
    """The ``common overrides`` block: rows ``(override, meaning)`` with group choices filled."""
    defaults = group_defaults(primary)
    groups = re.compile(r"\{([\w/]+)\}")
    lines = []
    for override, meaning in rows:
        left = groups.sub(lambda m: choices(m.group(1), defaults), override)
        right = groups.sub(lambda m: choices(m.group(1), defaults), meaning)
        lines += textwrap.wrap(
            right,
            WIDTH,
            initial_indent=f"  {left:<{COLUMN - 3}} ",
            subsequent_indent=" " * COLUMN,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def experiments_text() -> str:
    """One entry per file of ``tune_configs/experiment/``: name and first sentence."""
    default = group_defaults().get("experiment")
    lines = []
    for name in group_options("experiment"):
        mark = " (default)" if name == default else ""
        summary = yaml_summary(config_dir() / "experiment" / f"{name}.yaml")
        lines.append(f"  {name}{mark}")
        lines += textwrap.wrap(summary, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def sweep_epilog() -> str:
    """Experiments and common overrides of ``grasplab sweep`` (``*``: default option)."""
    return (
        f"experiments (experiment=NAME; tune_configs/experiment/):\n{experiments_text()}\n\n"
        "common overrides (Hydra syntax; * marks the default option):\n"
        f"{overrides_text(SWEEP_OVERRIDES, 'config.yaml')}\n\n"
        "example: grasplab sweep experiment=ablation protocol=tiny sweep.num_samples=4"
    )


def train_epilog() -> str:
    """Common overrides of ``grasplab train`` (``*``: default option)."""
    return (
        "common overrides (Hydra syntax; * marks the default option):\n"
        f"{overrides_text(TRAIN_OVERRIDES, 'train/config.yaml')}\n\n"
        "example: grasplab train world_model=pixel env=pointmaze train.steps=1000"
    )


def module_doc(module: str) -> str:
    """A ``grasplab`` module's docstring, read from its source without importing it."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
    try:
        return ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError):
        return ""


def new_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """A parser that prints its description and epilog as written (bullet lists kept)."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def checked(
    p: argparse.ArgumentParser, argv: Sequence[str], check: Callable[[argparse.Namespace], None]
) -> argparse.Namespace:
    """``p``'s parse of ``argv`` validated by ``check`` (a ``ValueError``: ``p.error``, exit 2)."""
    args = p.parse_args(list(argv))
    try:
        check(args)
    except ValueError as error:
        p.error(str(error))
    return args


def checked_by(p: argparse.ArgumentParser, argv: Sequence[str], module: str) -> argparse.Namespace:
    """``p``'s parse of ``argv`` checked by ``check(args)`` of capability ``module``."""
    return checked(p, argv, importlib.import_module(module).check)


def run_by(args: argparse.Namespace, module: str) -> int:
    """``run(args)`` of capability ``module``: its exit code."""
    return int(importlib.import_module(module).run(args))


def key_value_parser(prog: str, module: str, usage: str, what: str) -> argparse.ArgumentParser:
    """The help-only parser of a ``key=value`` command that runs ``module`` (its docstring)."""
    p = new_parser(prog, module_doc(module))
    p.usage = usage
    p.add_argument("settings", nargs="*", metavar="key=value", help=what)
    return p


def run_key_values(
    prog: str,
    argv: Sequence[str],
    keys: tuple[set[str], set[str]],
    run: Callable[[dict], Any],
    indent: int = 2,
) -> int:
    """Run a ``key=value`` command: ``run(settings)``'s result printed as JSON.

    Args:
        prog: The command (``grasplab bench quality``), for messages.
        argv: Its ``key=value`` arguments.
        keys: ``(required, known)`` keys.
        run: Does the work with the parsed settings (values read as YAML-ish scalars, lists).
        indent: JSON indent of the printed result.

    Returns:
        0, or 2 with one line on stderr for an item without ``=``, a missing or unknown key, or
        a ``ValueError`` of ``run``.
    """
    from grasplab.world_models.data import parse_overrides

    required, known = keys
    try:
        args = parse_overrides(list(argv))
        unknown, missing = sorted(set(args) - known), sorted(required - set(args))
        if unknown or missing:
            raise ValueError(f"unknown keys {unknown}, missing keys {missing}; see {prog} --help")
        result = run(args)
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=indent, default=float))
    return 0
