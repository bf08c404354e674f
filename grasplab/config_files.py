"""Where the Hydra config files (``tune_configs/``) are found (stdlib only: ``--help`` uses it).

``tune_configs/`` lives at the top of the repository. A wheel ships it inside the package, as
``grasplab/tune_configs/`` (``setup.py`` copies it at build time), so an installed grasplab finds
its configs wherever it runs. In order:

1. ``$GRASPLAB_CONFIG_DIR``: your own complete config folder instead of grasplab's.
2. The copy inside the installed package (a wheel, or ``pip install .``).
3. ``tune_configs/`` beside the ``grasplab/`` package folder: a source checkout, an editable
   install, or a Ray job's working dir.

To add config groups of your own without replacing grasplab's, put your folder (or package) on
Hydra's search path: ``hydra.searchpath=[file:///abs/dir]`` or ``[pkg://your_pkg.configs]``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

CONFIG_DIR_ENV = "GRASPLAB_CONFIG_DIR"
FOLDER = "tune_configs"


class ConfigFilesMissing(FileNotFoundError):
    """No ``tune_configs/`` folder where grasplab looks for one."""


def config_dir() -> Path:
    """The ``tune_configs/`` folder in use (see the module docstring for the order).

    Raises:
        ConfigFilesMissing: None of the places holds a ``config.yaml``.
    """
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    package = Path(str(resources.files("grasplab")))
    for candidate in (package / FOLDER, package.parent / FOLDER):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigFilesMissing(
        f"no {FOLDER}/config.yaml inside the installed package ({package / FOLDER}) or beside it "
        f"({package.parent / FOLDER}); reinstall grasplab from a wheel, or set {CONFIG_DIR_ENV}"
    )
