"""Moved: each command's parser is ``parser()`` of its module in :mod:`grasplab.cli`."""

from __future__ import annotations

from grasplab.moved import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "sweep_parser": "grasplab.cli.sweep.parser",
        "ablate_parser": "grasplab.cli.ablate.parser",
        "report_parser": "grasplab.cli.report.parser",
        "train_parser": "grasplab.cli.train.parser",
        "collect_parser": "grasplab.cli.collect.parser",
        "bench_planners_parser": "grasplab.cli.bench_planners.parser",
        "long_horizon_parser": "grasplab.cli.bench_long_horizon.parser",
        "wall_crossing_parser": "grasplab.cli.bench_wall_crossing.parser",
        "bench_platform_parser": "grasplab.cli.bench_platform.parser",
        "bench_sims_parser": "grasplab.cli.bench_sims.parser",
        "PARSERS": "grasplab.cli.COMMANDS (each module's parser())",
        "config_dir": "grasplab.config_files.config_dir",
        "module_doc": "grasplab.cli.common.module_doc",
        "sweep_epilog": "grasplab.cli.common.sweep_epilog",
        "train_epilog": "grasplab.cli.common.train_epilog",
        "LONG_HORIZONS": "grasplab.cli.bench_long_horizon.LONG_HORIZONS",
        "PLANNER_ORDER": "grasplab.cli.common.PLANNER_ORDER",
    },
)
