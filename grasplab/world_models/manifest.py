"""Datasets' manifests and identities, and where the shipped checkpoints live.

The commands that make the shipped models' datasets (:data:`RECIPES`) are here too. Torch-free
(:mod:`grasplab.world_models.data` and ``checkpoint`` re-export these names): a sweep's driver
fingerprints a protocol whose tasks come from a dataset (:meth:`grasplab.eval.protocol.
EvalProtocol.fingerprint`) and resolves a shipped checkpoint's path without loading torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""The shipped checkpoints folder (``floors.json``, ``manifest.json``, models, the Push-T
held-out episodes; docs/recipes.md); ``checkpoint.CHECKPOINTS`` re-exports it."""
FORMAT = "grasplab-episodes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class DatasetError(ValueError):
    """A dataset that cannot be trusted or does not match the requested collection."""


def dataset_identity(manifest: dict[str, Any]) -> str:
    """A dataset's identity: 16 hex digits of the hash of its shards' SHA-256, in order."""
    digests = [str(s["sha256"]) for s in manifest.get("shards", [])]
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()[:16]


RECIPES: dict[str, tuple[str, str]] = {
    "sim:pusht": (
        "grasplab collect env=sim:pusht behaviour=pusher episodes=1000 steps=100 seed=0",
        "1.24 GB, 1372 s = about 23 min on 2 shared cores",
    ),
    "pointmaze": (
        "grasplab collect env=pointmaze layout=medium episodes=1000 steps=100 seed=0 "
        "action_block=5",
        "1.19 GiB, about 40 s on 2 shared cores; action_block=1 for the -patch-b1 model's",
    ),
    "wall": (
        "grasplab collect env=wall episodes=1000 steps=100 seed=0 action_block=5",
        "1.19 GiB, about 20 s on 2 shared cores; action_block=1 for the -patch-b1 model's",
    ),
}
"""Per env: the command that collects the shipped models' dataset (docs/recipes.md sections 1,
5 and 6), and what it took there (size, wall clock)."""


def require_dataset(data_dir: str | Path, env: str) -> None:
    """Refuse, in one line, a ``data_dir`` holding no dataset, naming how to make ``env``'s.

    Raises:
        DatasetError: No manifest in ``data_dir``; the message names the command that collects
            the shipped models' dataset of ``env`` (:data:`RECIPES`) and what that costs.
    """
    if (Path(data_dir) / MANIFEST).is_file():
        return
    command, cost = RECIPES.get(env, (f"grasplab collect env={env} episodes=N steps=T seed=S", ""))
    cost = f" ({cost})" if cost else ""
    raise DatasetError(f"no dataset at {data_dir}; make it{cost} with: {command} out={data_dir}")


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The validated manifest of a dataset.

    Raises:
        DatasetError: Missing, unparsable or foreign manifest.
    """
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"dataset {data_dir}: missing {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"dataset {data_dir}: {MANIFEST} is not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"dataset {data_dir}: not a {FORMAT} v{FORMAT_VERSION} manifest")
    return manifest
