"""Argument parsers of every ``grasplab`` sub-command, stdlib only.

The sub-command modules import Ray, torch, MLflow or Hydra at the top; their parsers live here so
that ``grasplab <command> --help`` answers without importing any of them (the CLI builds the
parser from this module when it sees ``-h``/``--help``). Each module parses its arguments with the
same builder, so the help always matches what the command accepts. Module docstrings are read
from the source (never imported) and printed as written, bullet lists included.
"""

from __future__ import annotations

import argparse
import ast
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from grasplab.config_files import config_dir

PACKAGE_DIR = Path(__file__).resolve().parent
PLANNER_ORDER = "cem,gd,mppi,latco,grasp"
"""Default ``--planners`` of the planner benchmarks (table columns, left to right)."""
LONG_HORIZONS = "10,20,30,40,50,60,70,80"
"""Default ``--horizons`` of ``grasplab bench long-horizon``."""

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


def sweep_parser() -> argparse.ArgumentParser:
    """``grasplab sweep [overrides...] [--resume] [--quiet]``."""
    parser = new_parser(
        "grasplab sweep",
        "Tune + Optuna sweep of planners, tracked in MLflow (Hydra overrides of "
        "tune_configs/config.yaml).",
        sweep_epilog(),
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=ablation")
    parser.add_argument(
        "--resume", action="store_true", help="continue the latest unfinished sweep of this name"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final report")
    return parser


def ablate_parser() -> argparse.ArgumentParser:
    """``grasplab ablate [overrides...] [--resume] [--quiet]``."""
    parser = new_parser(
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
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. study=learned")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest unfinished study of this name (finished sweeps are kept)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final report")
    return parser


def report_parser() -> argparse.ArgumentParser:
    """``grasplab report <sweep name | parent run id> [more ...] [--out DIR] [--tracking-uri]``."""
    parser = new_parser("grasplab report", module_doc("grasplab.platform.reporting"))
    parser.add_argument(
        "sweeps",
        nargs="+",
        metavar="SWEEP",
        help="sweep name (its latest finished sweep), sweep id or parent run id; several are "
        "lined up side by side",
    )
    parser.add_argument("--out", help="output folder (default: ./reports/<first sweep id>)")
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default: sqlite:///./mlflow.db, the sweep default)"
    )
    return parser


def train_parser() -> argparse.ArgumentParser:
    """``grasplab train [overrides...]``."""
    parser = new_parser(
        "grasplab train",
        "Train a world model (collecting its dataset first if needed), tracked and registered "
        "in MLflow.\nHydra overrides of tune_configs/train/config.yaml.",
        train_epilog(),
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides")
    return parser


def collect_parser() -> argparse.ArgumentParser:
    """``grasplab collect key=value ...`` (help only: the command parses ``key=value`` itself)."""
    parser = new_parser("grasplab collect", module_doc("grasplab.world_models.data"))
    parser.usage = (
        "grasplab collect env=<pointmaze|wall|ballnav|sim:SIMULATOR> episodes=N steps=T seed=S "
        "out=DIR\n"
        "       [action_block=k shard_episodes=n max_shards=m behaviour=<default|pusher>\n"
        "        <env config field>=value ...]   (behaviour=pusher: scripted pusher, sim:pusht)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="collection settings")
    return parser


def bench_sims_parser() -> argparse.ArgumentParser:
    """``grasplab bench sims [options]`` (built without importing the simulators)."""
    parser = new_parser("grasplab bench sims", module_doc("grasplab.bench.sims"))
    parser.add_argument(
        "--sims", default="", help="comma-separated simulator names (default: every registered)"
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per execute call")
    parser.add_argument("--steps", type=int, default=100, help="env steps per episode")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (the best counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the rows to this file")
    return parser


def bench_platform_parser() -> argparse.ArgumentParser:
    """``grasplab bench platform [overrides...] [options]``."""
    parser = new_parser(
        "grasplab bench platform", module_doc("grasplab.platform.bench"), sweep_epilog()
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the benchmarked sweep")
    parser.add_argument("--workers", default="1,2", help="worker counts for scaling (1,2)")
    parser.add_argument("--chunks", type=int, default=16, help="chunks per scaling run")
    parser.add_argument(
        "--sweep-workers",
        type=int,
        default=None,
        help="workers of the overhead sweep (default: one per CPU)",
    )
    parser.add_argument("--skip-sweep", action="store_true", help="scaling only")
    parser.add_argument("--skip-scaling", action="store_true", help="overhead only")
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="simulated cluster instead: episodes/s with 1..N worker nodes (ray.cluster_utils), "
        "and the time to place --gpu-nodes autoscaled GPU workers (fake_multinode); skips the "
        "rest",
    )
    parser.add_argument(
        "--gpu-nodes",
        type=int,
        default=2,
        help="GPU workers the fake autoscaler must launch for --nodes (default 2; 3 fake nodes "
        "failed to host workers on a 2-core machine)",
    )
    return parser


def bench_planners_parser() -> argparse.ArgumentParser:
    """``grasplab bench planners [options]``."""
    p = new_parser("grasplab bench planners", module_doc("grasplab.bench.planners"))
    p.add_argument("--envs", default="pointmaze,wall")
    p.add_argument("--horizons", default="10,25,50,80")
    p.add_argument("--episodes", type=int, default=50, help="test episodes per cell")
    p.add_argument("--planners", default=PLANNER_ORDER)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: like the Ray workers; stable)"
    )
    p.add_argument("--quick", action="store_true", help="pointmaze, H in {10, 25}, 10 episodes")
    p.add_argument("--skip-table", action="store_true", help="only the speed ratios")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="speed ratios on this checkpoint instead of the oracle (no table, no batching)",
    )
    p.add_argument("--ratio-batch", type=int, default=50, help="problems B of the ratios")
    p.add_argument("--ratio-horizon", type=int, default=50, help="horizon H of the ratios")
    p.add_argument("--grasp-budgets", default="50,250", help="GRASP iterations LO,HI timed")
    p.add_argument("--cem-budgets", default="2,12", help="CEM iterations LO,HI timed")
    p.add_argument("--cem-samples", type=int, default=300, help="CEM samples S of its ratio")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (the best counts)")
    p.add_argument(
        "--ratios", default="grasp,cem", help="speed ratios to measure: grasp, cem or both"
    )
    p.add_argument(
        "--grasp-compile",
        action="store_true",
        help="time GRASP with compile_losses=True (torch.compile; compiled in the warm-up)",
    )
    return p


def long_horizon_parser() -> argparse.ArgumentParser:
    """``grasplab bench long-horizon [options]``."""
    p = new_parser("grasplab bench long-horizon", module_doc("grasplab.bench.long_horizon"))
    p.add_argument("--envs", default="pointmaze,wall")
    p.add_argument("--horizons", default=None, help=f"model steps (default {LONG_HORIZONS})")
    p.add_argument("--episodes", type=int, default=None, help="test episodes per cell (100)")
    p.add_argument(
        "--model",
        default="pixel",
        choices=["pixel", "mlp", "patch", "oracle"],
        help="shipped checkpoint <env>-<model>-b1 (patch: the 1024-d patch-latent model)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a world-model checkpoint directory instead of the shipped <env>-<model>-b1 (one env)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="pusht: the recorded dataset the tasks come from (default data/pusht-pusher)",
    )
    p.add_argument(
        "--splits",
        default="900:950,950:1000",
        help="pusht: tuning and test episode ranges of --data (the test range is used)",
    )
    p.add_argument(
        "--planners",
        default=f"{PLANNER_ORDER},grasp_reference",
        help="columns; grasp_reference = GRASP with GRASPConfig.reference() (the authors' "
        "solver step for step, actions clamped)",
    )
    p.add_argument(
        "--budget", type=float, default=1.0, help="scale of every planner's iteration count"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PLANNER.FIELD=VALUE",
        help="override a planner's config field (repeatable), e.g. grasp.goal_weight=0.1",
    )
    p.add_argument("--floor-repeats", type=int, default=5, help="random rollouts per task")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="H in {10, 50}, 16 episodes per cell")
    p.add_argument(
        "--final-plan",
        action="store_true",
        help="score only each planner's final plan (no freezing of iterates the true env's probe "
        "saw succeed: the env's success signal never selects a plan)",
    )
    p.add_argument(
        "--mpc",
        type=int,
        default=0,
        metavar="E",
        help="receding horizon instead of open loop: execute E model steps per replan, replan "
        "over the remaining steps, ceil(H/E) plans per episode (the open-loop env-step budget)",
    )
    p.add_argument(
        "--probe",
        default="auto",
        choices=["auto", "linear", "decoded"],
        help="pixel models' position read-out: linear (ridge latent -> position) or decoded "
        "(decode the latent, locate the agent; models whose decode returns images); auto: "
        "decoded where the model decodes to images (patch), else linear",
    )
    p.add_argument("--json", default=None, help="write all figures here (after every row)")
    return p


def wall_crossing_parser() -> argparse.ArgumentParser:
    """``grasplab bench wall-crossing [options]``."""
    p = new_parser("grasplab bench wall-crossing", module_doc("grasplab.bench.wall_crossing"))
    p.add_argument("--horizon", type=int, default=50, help="model steps (<= 68)")
    p.add_argument("--episodes", type=int, default=100, help="held-out test tasks")
    p.add_argument("--model", default="pixel", choices=["pixel", "mlp", "oracle"])
    p.add_argument("--planners", default="cem,gd,grasp")
    p.add_argument("--margin", type=float, default=6.0, help="env units beyond the door's edge")
    p.add_argument("--set", action="append", default=[], metavar="PLANNER.FIELD=VALUE")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    return p


PARSERS: dict[tuple[str, ...], Callable[[], argparse.ArgumentParser]] = {
    ("sweep",): sweep_parser,
    ("ablate",): ablate_parser,
    ("report",): report_parser,
    ("train",): train_parser,
    ("collect",): collect_parser,
    ("bench", "planners"): bench_planners_parser,
    ("bench", "long-horizon"): long_horizon_parser,
    ("bench", "wall-crossing"): wall_crossing_parser,
    ("bench", "platform"): bench_platform_parser,
    ("bench", "sims"): bench_sims_parser,
}
"""The parser of each command (keys: the words of :data:`grasplab.cli.COMMANDS`)."""
