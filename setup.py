"""Build hook: the wheel ships ``tune_configs/`` inside the package, as ``grasplab/tune_configs/``.

``tune_configs/`` stays at the top of the repository (where users read and edit it); an
installed grasplab finds the copy through :func:`grasplab.config_files.config_dir`. Everything
else about the build is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "tune_configs"


class BuildPy(build_py):
    """``build_py`` that also copies ``tune_configs/`` into the built package."""

    def run(self) -> None:
        """Build the package, then add the configs (an editable install reads the checkout's)."""
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "grasplab" / "tune_configs"
        shutil.copytree(CONFIGS, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*~"))


setup(cmdclass={"build_py": BuildPy})
