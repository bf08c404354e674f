"""The wheel carries the configs, and an installed grasplab finds them (tune_configs/ stays at
the top of the repository). .ci/run installs the wheel in a fresh venv and sweeps from outside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grasplab import config_files

REPO = Path(__file__).resolve().parents[1]


def make_tree(root: Path, *folders: str) -> None:
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "config.yaml").write_text("{}\n")


def test_config_dir_order(tmp_path, monkeypatch):
    package = tmp_path / "site" / "grasplab"
    monkeypatch.setattr(config_files.resources, "files", lambda name: package)
    monkeypatch.delenv(config_files.CONFIG_DIR_ENV, raising=False)
    with pytest.raises(config_files.ConfigFilesMissing, match="reinstall grasplab"):
        config_files.config_dir()
    make_tree(tmp_path / "site", "tune_configs")  # a checkout: beside the package
    assert config_files.config_dir() == tmp_path / "site" / "tune_configs"
    make_tree(package, "tune_configs")  # an installed wheel: inside the package
    assert config_files.config_dir() == package / "tune_configs"
    monkeypatch.setenv(config_files.CONFIG_DIR_ENV, str(tmp_path / "mine"))
    assert config_files.config_dir() == tmp_path / "mine"


def test_the_checkout_finds_its_own_configs(monkeypatch):
    monkeypatch.delenv(config_files.CONFIG_DIR_ENV, raising=False)
    assert config_files.config_dir() == REPO / "tune_configs"


def test_the_wheel_ships_every_config_inside_the_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("grasplab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"grasplab/{p.relative_to(REPO).as_posix()}"
        for p in (REPO / "tune_configs").rglob("*.yaml")
    }
    assert len(configs) > 30 and configs <= names, sorted(configs - names)
    assert not any(name.startswith("tune_configs/") for name in names)  # no top-level folder
