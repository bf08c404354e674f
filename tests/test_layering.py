"""The layering of ARCHITECTURE.md, enforced by import-linter's contracts in pyproject.toml.

``lint-imports`` checks them (CI runs it through this test). The contracts are also shown to
bite: the same configuration on a copy of the package with one bad import added is broken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts on the ``grasplab`` package under root."""
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PATH": str(LINT.parent), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_are_kept():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in done.stdout


LAZY_UPWARD = "\n\ndef _lazy():\n    from grasplab.platform import sweep\n\n    return sweep\n"


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        ("planners/gd.py", LAZY_UPWARD, "Layers: each imports only the ones below it"),
        ("bench/timing.py", "\nfrom grasplab.platform import sweep\n", "Layers: each imports"),
        ("eval/metrics.py", "\nimport ray\n", "Only grasplab.platform imports Ray"),
        ("planners/gd.py", "\nfrom grasplab.envs import base\n", "Planners know only"),
        ("platform/tracking.py", "\nfrom grasplab.platform import sweep\n", "No import cycles"),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path, module, added, broken):
    skip = shutil.ignore_patterns("__pycache__", "checkpoints")
    shutil.copytree(REPO / "grasplab", tmp_path / "grasplab", ignore=skip)
    path = tmp_path / "grasplab" / module
    path.write_text(path.read_text() + added)
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert broken in done.stdout.split("Broken contracts")[1]
