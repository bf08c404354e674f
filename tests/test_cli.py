"""CLI manners: help without heavy imports, did-you-mean for commands and override keys."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from grasplab import cli
from grasplab.cli import common
from grasplab.eval import EvalProtocol
from grasplab.platform import config
from grasplab.platform.config import ConfigError, compose, load

BIN = Path(sys.executable).parent
EXPERIMENTS = sorted(p.stem for p in (config.config_dir() / "experiment").glob("*.yaml"))
COMMON_OVERRIDES = [
    "experiment=",
    "env=ballnav|pointmaze*|pointmaze_sim|pusht|wall",
    "tasks=dataset|env*",
    "world_model=checkpoint|oracle*",
    "protocol=default*|long|tiny",
    "sweep.num_samples=N",
    "cluster.address=",
    "mlflow.tracking_uri=URI",
    "--resume",
]
HELPS = [
    ["--help"],
    ["help", "sweep"],
    ["sweep", "experiment=ablation", "-h"],
    ["bench"],
    ["bench", "--help"],
    ["bench", "wall-crossing", "-h"],
    *([*words, "--help"] for words in cli.COMMANDS),
]
HEAVY = ("ray", "torch", "mlflow", "hydra", "omegaconf", "optuna", "numpy")


def grasplab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "grasplab"), *args], capture_output=True, text=True, timeout=60
    )


def test_experiments_exist():
    assert {"ablation", "grasp_vs_baselines", "long_horizon"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["bench", "platform", "-h"]])
def test_help_lists_experiments_and_common_overrides(args):
    done = grasplab(*args)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    listed = [line.strip().removesuffix(" (default)") for line in lines if line.startswith("  ")]
    assert set(EXPERIMENTS) <= set(listed)
    assert "  grasp_vs_baselines (default)" in lines
    for override in COMMON_OVERRIDES:
        assert any(
            line.lstrip().startswith(override) or f" {override}" in line for line in lines
        ), override


def test_top_level_help_lists_every_command():
    done = grasplab("--help")
    assert done.returncode == 0
    for words in cli.COMMANDS:
        assert any(line.split()[: len(words)] == list(words) for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    "args", [["bench"], ["bench", "--help"], ["bench", "-h"], ["help", "bench"]]
)
def test_bench_lists_its_subcommands(args):
    done = grasplab(*args)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: grasplab bench <command>")
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == [words[1] for words in cli.COMMANDS if words[0] == "bench"]
    assert {"planners", "long-horizon", "wall-crossing", "platform"} <= set(listed)


@pytest.mark.parametrize("args", HELPS, ids=" ".join)
def test_help_imports_no_heavy_module(args):
    code = (
        "import contextlib, io, sys\n"
        "from grasplab.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    code = main({args!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(code, heavy, len(out.getvalue().splitlines()) > 5)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0 [] True", done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["swep"], "grasplab: unknown command 'swep'; did you mean 'sweep'?"),
        (["trian", "env=wall"], "grasplab: unknown command 'trian'; did you mean 'train'?"),
        (["bnech"], "grasplab: unknown command 'bnech'; did you mean 'bench'?"),
        (
            ["bench", "plners"],
            "grasplab: unknown command 'bench plners'; did you mean 'bench planners'?",
        ),
        (
            ["bnech", "long-horizon"],
            "grasplab: unknown command 'bnech long-horizon'; did you mean 'bench long-horizon'?",
        ),
        (
            ["bench", "zzz"],
            "grasplab: unknown command 'bench zzz'; bench commands: "
            + ", ".join(words[1] for words in cli.COMMANDS if words[0] == "bench"),
        ),
        (
            ["xyz"],
            "grasplab: unknown command 'xyz'; commands: "
            + ", ".join(dict.fromkeys(words[0] for words in cli.COMMANDS)),
        ),
        (["swep", "--help"], "grasplab: unknown command 'swep'; did you mean 'sweep'?"),
    ],
)
def test_mistyped_command_suggests_the_right_one(args, message):
    done = grasplab(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [message]


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("grasplab.bench.long_horizon", ["bench", "long-horizon", "--help"]),
        ("grasplab.bench.planners", ["bench", "planners", "--help"]),
        ("grasplab.bench.wall_crossing", ["bench", "wall-crossing", "--help"]),
        ("grasplab.platform.bench", ["bench", "platform", "--help"]),
        ("grasplab.world_models.data", ["collect", "--help"]),
    ],
)
def test_help_prints_the_module_docstring_as_written(module, args):
    doc = common.module_doc(module)
    assert doc.count("\n") >= 3  # argparse's default formatter would re-wrap these lines
    done = grasplab(*args)
    assert done.returncode == 0
    assert doc in done.stdout  # line breaks and bullets kept, not re-wrapped


def test_each_command_module_holds_its_parser_and_main():
    from grasplab.bench import long_horizon, planners
    from grasplab.cli import bench_long_horizon, bench_planners

    assert bench_long_horizon.parser().get_default("planners") == ",".join(long_horizon.ORDER)
    assert bench_long_horizon.LONG_HORIZONS == long_horizon.HORIZONS
    assert bench_planners.parser().get_default("planners") == ",".join(planners.ORDER)
    assert common.config_dir() == config.config_dir()
    for words, (name, _) in cli.COMMANDS.items():
        module = importlib.import_module(name)
        assert module.parser().prog == f"grasplab {' '.join(words)}"
        assert callable(module.main) and common.module_doc(name), words


@pytest.mark.parametrize(
    ("old", "name", "home"),
    [
        ("grasplab.platform.sweep", "main", "grasplab.cli.sweep.main"),
        ("grasplab.platform.study", "main", "grasplab.cli.ablate.main"),
        ("grasplab.platform.reporting", "main", "grasplab.cli.report.main"),
        (
            "grasplab.platform.reporting",
            "write_report",
            "grasplab.platform.report.document.write_report",
        ),
        (
            "grasplab.platform.readback",
            "load_sweep",
            "grasplab.platform.report.readback.load_sweep",
        ),
        ("grasplab.platform.report", "verdict", "grasplab.platform.report.tables.verdict"),
        ("grasplab.platform.study", "bars_png", "grasplab.platform.report.study.bars_png"),
        ("grasplab.platform.report", "episode_gif", "grasplab.platform.report.figures.episode_gif"),
        ("grasplab.platform.train", "parse_args", "grasplab.cli.train.parser"),
        ("grasplab.world_models.data", "main", "grasplab.cli.collect.main"),
        ("grasplab.bench.long_horizon", "parse", "grasplab.cli.bench_long_horizon.parse"),
        ("grasplab.cli_parsers", "sweep_parser", "grasplab.cli.sweep.parser"),
        ("grasplab.platform.jobs", "run_job", "grasplab.cli.jobs.run_job"),
        ("grasplab.envs.geometry", "PlanarEnv", "grasplab.envs.planar.PlanarEnv"),
        (
            "grasplab.world_models.training",
            "mlp_loss",
            "grasplab.world_models.training.state_pixel.mlp_loss",
        ),
        (
            "grasplab.world_models.patch_training",
            "_frames",
            "grasplab.world_models.training.patch.sample_frames",
        ),
    ],
)
def test_moved_names_fail_naming_their_new_home(old, name, home):
    module = importlib.import_module(old)
    with pytest.raises(ImportError) as error:
        getattr(module, name)
    assert str(error.value) == f"{old}.{name} moved to {home}"
    new_module, _, new_name = home.rpartition(".")
    assert callable(getattr(importlib.import_module(new_module), new_name))


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("grasplab.world_models.training", "grasplab train"),
        ("grasplab.bench.quality", "grasplab bench quality"),
        ("grasplab.bench.decoded_probe", "grasplab bench decoded-probe"),
    ],
)
def test_retired_module_entry_points_name_the_command(module, command):
    done = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and command in done.stderr


def test_key_value_bench_command_refuses_bad_keys_in_one_line():
    done = grasplab("bench", "quality", "name=wall-mlp", "bogus=1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "grasplab bench quality: unknown keys ['bogus'], missing keys ['data']; see grasplab "
        "bench quality --help"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--trials 0", "--trials must be at least 1, got 0"),
        ("--trials 999999999", "--trials 999999999 is more than this machine can hold ("),
        ("--store-runs 5", "--store-runs needs --trials, got 5"),
        ("--trials 10 --store-runs 0", "--store-runs must be at least 1, got 0"),
    ],
)
def test_bench_platform_refuses_a_trial_count_out_of_range_in_one_line(args, message):
    done = grasplab("bench", "platform", *args.split())
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"grasplab bench platform: error: {message}")


@pytest.mark.parametrize(
    ("command", "name", "collect"),
    [
        ("bench_quality", "wall-mlp", "grasplab collect env=wall episodes=1000"),
        ("bench_quality_pusht", "pusht-mlp-b1", "grasplab collect env=sim:pusht behaviour=pusher"),
        ("bench_decoded_probe", "pointmaze-patch-b1", "grasplab collect env=pointmaze layout="),
    ],
)
def test_a_command_missing_its_dataset_names_the_command_that_makes_it(
    command, name, collect, tmp_path, capsys
):
    module = importlib.import_module(f"grasplab.cli.{command}")
    missing = tmp_path / "none"
    assert module.main([f"name={name}", f"data={missing}"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"no dataset at {missing}; make it (" in line and f"{collect}" in line
    assert line.endswith(f"out={missing}") and ("min" in line or " s " in line)


def test_commands_parse_with_their_parsers(capsys):
    from grasplab.cli import bench_long_horizon, bench_wall_crossing, collect, train

    assert train.parser().parse_args(["env=wall", "train.steps=3"]).overrides == [
        "env=wall",
        "train.steps=3",
    ]
    assert bench_long_horizon.parse(["--quick"]).horizons == "10,50"
    assert bench_wall_crossing.parse(["--episodes", "3"]).episodes == 3
    assert collect.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: grasplab collect env=<pointmaze|wall|ballnav|sim:SIMULATOR>")
    assert common.module_doc("grasplab.world_models.data") in out


def test_bad_option_is_one_line_and_exit_code_2(capsys):
    from grasplab.cli import bench_long_horizon

    with pytest.raises(SystemExit) as done:
        bench_long_horizon.parse(["--envs", "nowhere"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "grasplab bench long-horizon: error: unknown env 'nowhere'; known: "
        "['pointmaze', 'pusht', 'wall']"
    )


# --- unknown override keys name the nearest valid key --------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["protocol.horizn=5"],
            "Could not override 'protocol.horizn': no such key; did you mean 'protocol.horizon'?",
        ),
        (
            ["env.layout=umaze"],
            "Could not override 'env.layout': no such key; did you mean 'env.overrides.layout'?",
        ),
        (
            ["env.layot=umaze"],
            "Could not override 'env.layot': no such key; did you mean 'env.overrides.layout'?",
        ),
        (
            ["sweep.num_sample=3"],
            "Could not override 'sweep.num_sample': no such key; did you mean 'sweep.num_samples'?",
        ),
        (
            ["horizon=3"],
            "Could not override 'horizon': no such key; did you mean 'protocol.horizon'?",
        ),
        (
            ["mlflow.trackinguri=x"],
            "Could not override 'mlflow.trackinguri': no such key; did you mean "
            "'mlflow.tracking_uri'?",
        ),
        (["protoco=tiny"], "Could not override 'protoco': no such key; did you mean 'protocol'?"),
        (
            ["experiment=ablation", "planners.grasp_no_sync.config.n_step=3"],
            "Could not override 'planners.grasp_no_sync.config.n_step': no such key; did you mean "
            "'planners.grasp_no_sync.config.n_steps'?",
        ),
        (
            ["env.overrides.nope=1"],
            "Could not override 'env.overrides.nope': no such key (a new key needs "
            "+env.overrides.nope=1)",
        ),
        (
            ["~protocol.horizn"],
            "Could not delete from config. 'protocol.horizn' does not exist; did you mean "
            "'protocol.horizon'?",
        ),
        (
            ["experiment=ablaton"],
            "In 'config': Could not find 'experiment/ablaton'; did you mean 'experiment=ablation'?",
        ),
        (
            ["experiment=nope"],
            "In 'config': Could not find 'experiment/nope'; available: " + ", ".join(EXPERIMENTS),
        ),
    ],
)
def test_unknown_override_names_the_nearest_valid_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        compose(overrides)
    assert str(error.value) == message


def test_suggested_keys_exist():
    keys = config.dotted_keys(compose([]))
    assert {"protocol.horizon", "env.overrides.layout", "sweep.num_samples"} <= set(keys)
    assert config.nearest_key("protocol.horizn", keys) == "protocol.horizon"
    assert config.nearest_key("zzzzzz.qqqq", keys) is None


# --- a sweep needs tasks in both splits ----------------------------------------------------


@pytest.mark.parametrize("field", ["tune_episodes", "test_episodes"])
def test_empty_split_is_refused_when_the_config_is_validated(field):
    with pytest.raises(ConfigError) as error:
        load([f"protocol.{field}=0"])
    assert str(error.value) == (
        f"protocol: EvalProtocol.{field} must be >= 1 to tune and then test, got 0"
    )
    assert load([f"protocol.{field}=1", "protocol=tiny"]).protocol.episodes("tune") >= 1


def test_protocol_without_tuning_split_is_still_allowed_outside_sweeps():
    protocol = EvalProtocol(env="wall", horizon=10, tune_episodes=0, test_episodes=4)
    assert protocol.episodes("tune") == 0  # the benchmarks' test-only protocols
    with pytest.raises(ValueError, match="tune_episodes must be >= 1"):
        protocol.check_splits()
    EvalProtocol(env="wall", horizon=10, tune_episodes=1, test_episodes=1).check_splits()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "protocol.horizn=5",
            "grasplab sweep: error: Could not override 'protocol.horizn': no such key; did you "
            "mean 'protocol.horizon'?",
        ),
        (
            "protocol.test_episodes=0",
            "grasplab sweep: error: protocol: EvalProtocol.test_episodes must be >= 1 to tune and "
            "then test, got 0",
        ),
    ],
)
def test_cli_bad_override_is_one_line_and_exit_code_2(tmp_path, override, message):
    done = subprocess.run(
        [str(BIN / "grasplab"), "sweep", override],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "mlflow.db").exists()
