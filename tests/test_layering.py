"""The layering rule of ARCHITECTURE.md, enforced: data flows down the layers.

Every module's source is parsed with :mod:`ast` (nothing is imported), so an import hidden inside
a function (a "lazy" import) counts as much as one at the top of the file; relative imports are
resolved against the module's package, and ``importlib.import_module("...")`` / ``__import__``
calls with a literal name count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import grasplab

ROOT = Path(grasplab.__file__).parent

SERVICES = ("ray", "mlflow", "optuna")
"""Only ``grasplab/platform/`` imports these (STYLE.md)."""

FORBIDDEN = {
    "world_models": (
        "grasplab.eval",
        "grasplab.planners",
        "grasplab.platform",
        "grasplab.bench",
        *SERVICES,
    ),
    "planners": (
        "grasplab.envs",
        "grasplab.eval",
        "grasplab.platform",
        "grasplab.bench",
        *SERVICES,
    ),
    "envs": (
        "grasplab.eval",
        "grasplab.planners",
        "grasplab.platform",
        "grasplab.bench",
        *SERVICES,
    ),
    "eval": ("grasplab.platform", "grasplab.bench", *SERVICES),
    "bench": ("grasplab.platform", *SERVICES),
}
"""Per package under ``grasplab/``: the packages none of its modules may import (ARCHITECTURE.md:
planners know only the ``WorldModel`` protocol; eval sits above planners, world models and envs;
the measurement tools in ``bench/`` use eval but not the platform)."""


def module_name(path: Path) -> str:
    """Dotted name of a module file under ``grasplab/`` (``__init__``: the package's name)."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Absolute name of the module a ``from ... import`` reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import anywhere in ``source``, lazy ones included.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module`` or ``__import__``."""
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``file:line imports name`` for each forbidden import in the module at ``path``."""
    module = module_name(path)
    names = imported_names(path.read_text(), module, path.name == "__init__.py")
    bad = {
        f"{path.relative_to(ROOT.parent)}:{line} imports {f}"
        for line, name in names
        for f in forbidden
        if name == f or name.startswith(f + ".")
    }
    return sorted(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 5, f"no modules found under grasplab/{package}/"
    bad = [v for path in files for v in violations(path, FORBIDDEN[package])]
    assert bad == [], "layering violated (see ARCHITECTURE.md):\n" + "\n".join(bad)


LAZY = '''
import torch

def floor():
    """Imports inside a function count too."""
    from grasplab.eval import evaluate
    return evaluate
'''


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        (LAZY, "grasplab.world_models.x", "grasplab.eval"),
        ("import grasplab.planners.cem as cem\n", "grasplab.world_models.x", "grasplab.planners"),
        ("from grasplab import bench\n", "grasplab.world_models.x", "grasplab.bench"),
        ("from ..platform import pool\n", "grasplab.world_models.x", "grasplab.platform"),
        ("from .. import eval\n", "grasplab.world_models.x", "grasplab.eval"),
        ("from ...eval import run\n", "grasplab.world_models.sub.x", "grasplab.eval"),
        ("import importlib\nimportlib.import_module('grasplab.eval.x')\n", "m", "grasplab.eval"),
    ],
)
def test_the_checker_sees_every_form_of_import(source, module, expected):
    names = [name for _, name in imported_names(source, module)]
    assert any(n == expected or n.startswith(expected + ".") for n in names), names


@pytest.mark.parametrize(
    "source",
    [
        "from grasplab.world_models import checkpoint\n",
        "from grasplab.envs import make\n",
        "from . import data\n",
        "import grasplab.evaluation_tools\n",  # a name that merely starts like a forbidden one
    ],
)
def test_the_checker_allows_lower_layers(source):
    names = [name for _, name in imported_names(source, "grasplab.world_models.x")]
    forbidden = FORBIDDEN["world_models"]
    assert not any(n == f or n.startswith(f + ".") for n in names for f in forbidden), names
