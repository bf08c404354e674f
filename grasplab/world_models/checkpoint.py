"""World-model checkpoints: safetensors weights plus a JSON config, verified by SHA-256.

A checkpoint is a directory::

    <path>/config.json          {"format", "format_version", "kind", "config", "weights", "info"}
    <path>/weights.safetensors  tensors only (never a pickle)

``config.json`` records the weights file's size and SHA-256; :func:`load` refuses a checkpoint
whose weights were truncated, tampered with or replaced, raising :class:`CheckpointError` (a
``ValueError``) that names the problem. ``torch.load`` is not used anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from grasplab.world_models.manifest import CHECKPOINTS as CHECKPOINTS

FORMAT = "grasplab-world-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read (missing, tampered, truncated, unknown)."""


class SavableModel(Protocol):
    """What :func:`save` needs: an ``nn.Module`` with a ``kind`` and a JSON-able config."""

    kind: str

    def config_dict(self) -> dict[str, Any]:
        """The constructor config as a plain JSON-able dict."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters and buffers."""
        ...


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temp file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_tensors_atomic(path: str | Path, tensors: dict[str, Tensor]) -> None:
    """Write ``tensors`` to a safetensors file via a temp file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.chmod(tmp, 0o644)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _registry() -> dict[str, Any]:
    """Model kind -> class (imported lazily to keep this module light)."""
    from grasplab.world_models.mlp import MLPModel
    from grasplab.world_models.patch import PatchModel
    from grasplab.world_models.pixel import PixelModel

    return {"mlp": MLPModel, "pixel": PixelModel, "patch": PatchModel}


def save(model: SavableModel, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a checkpoint directory (weights first, then the JSON naming their hash).

    Args:
        model: An :class:`~grasplab.world_models.mlp.MLPModel` or
            :class:`~grasplab.world_models.pixel.PixelModel`.
        path: Checkpoint directory (created).
        info: Extra JSON-able metadata (training recipe, data manifest hash, metrics).

    Returns:
        The checkpoint directory.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = path / WEIGHTS_FILE
    save_tensors_atomic(weights, dict(model.state_dict()))
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config_dict(),
        "weights": {
            "file": WEIGHTS_FILE,
            "bytes": weights.stat().st_size,
            "sha256": sha256_file(weights),
        },
        "info": info or {},
    }
    write_json_atomic(path / CONFIG_FILE, record)
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of checkpoint directory ``path``.

    Raises:
        CheckpointError: Missing or unparsable file, wrong format or version, unknown kind.
    """
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path}: missing {CONFIG_FILE}")
    try:
        record = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path}: {CONFIG_FILE} is not valid JSON ({err})"
        ) from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: {CONFIG_FILE} is not a {FORMAT} record")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {record.get('format_version')!r} != "
            f"{FORMAT_VERSION} (this code's)"
        )
    if record.get("kind") not in _registry():
        raise CheckpointError(
            f"checkpoint {path}: unknown model kind {record.get('kind')!r}; "
            f"known: {sorted(_registry())}"
        )
    return record


def verify_weights(path: str | Path, record: dict[str, Any]) -> Path:
    """Check the weights file's presence, size and SHA-256 against ``record``.

    Raises:
        CheckpointError: Naming which check failed.
    """
    meta = record.get("weights") or {}
    name = meta.get("file", WEIGHTS_FILE)
    if Path(name).name != name:
        raise CheckpointError(f"checkpoint {path}: weights file name {name!r} is not a plain name")
    weights = Path(path) / name
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {path}: missing weights file {name}")
    size = weights.stat().st_size
    if size != meta.get("bytes"):
        raise CheckpointError(
            f"checkpoint {path}: {name} has {size} bytes, config.json records "
            f"{meta.get('bytes')} (truncated or replaced)"
        )
    digest = sha256_file(weights)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path}: {name} SHA-256 {digest[:16]}... does not match the recorded "
            f"{str(meta.get('sha256'))[:16]}... (tampered or corrupted)"
        )
    return weights


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load a verified checkpoint as a ready-to-plan world model (eval mode, frozen weights).

    Args:
        path: Checkpoint directory written by :func:`save`.
        device: Where the model computes.

    Returns:
        The model (an ``MLPModel`` or ``PixelModel``) on ``device``.

    Raises:
        CheckpointError: Missing, unparsable, tampered, truncated or incompatible checkpoint.
    """
    record = read_config(path)
    weights = verify_weights(path, record)
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: unreadable weights ({err})") from err
    cls = _registry()[record["kind"]]
    try:
        model = cls.from_config_dict(record["config"])
        model.load_state_dict(tensors, strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the config ({err})") from err
    spread = (record.get("info") or {}).get("latent_spread")
    if spread is not None:
        spread = torch.tensor(spread, dtype=torch.float32)
        if spread.shape != (model.state_dim,) or not bool((spread > 0).all()):
            raise CheckpointError(
                f"checkpoint {path}: info.latent_spread must be {model.state_dim} positive "
                f"numbers, got shape {tuple(spread.shape)}"
            )
        # the unit of GRASP's / LatCo's state step sizes (WorldModel.latent_spread)
        model.register_buffer("latent_spread", spread, persistent=False)
    model.requires_grad_(False)
    return model.eval().to(device)


def info(path: str | Path) -> dict[str, Any]:
    """The ``info`` metadata of a checkpoint (validated config, weights not read)."""
    return dict(read_config(path).get("info") or {})
