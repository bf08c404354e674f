"""Resolve a world-model spec (``oracle`` or a checkpoint directory) for a protocol."""

from __future__ import annotations

from pathlib import Path

import torch

from grasplab.eval.protocol import EvalProtocol, env_action_size
from grasplab.world_models import OracleModel, WorldModel

ORACLE = "oracle"


def load_model(spec: str, protocol: EvalProtocol, device: str | torch.device = "cpu") -> WorldModel:
    """The world model named by ``spec`` for ``protocol``, on ``device``.

    Args:
        spec: ``"oracle"`` (the protocol env's own dynamics at its action block) or the path of
            a checkpoint directory written by ``grasplab train``. MLflow ``models:/`` URIs are
            resolved to a local directory by ``grasplab.platform`` before calling this.
        protocol: The protocol the model must fit (env, action block).
        device: Where the model computes.

    Raises:
        ValueError: Unknown spec or a model that does not fit the protocol.
    """
    if spec == ORACLE:
        return OracleModel(protocol.make_env(), protocol.action_block)
    path = Path(spec)
    if path.is_dir():
        from grasplab.world_models import checkpoint  # issue 3: learned models

        model = checkpoint.load(path, device=device)
        env_action_dim = env_action_size(protocol)
        if model.action_dim != protocol.action_block * env_action_dim:
            raise ValueError(
                f"world model {spec!r} has action_dim {model.action_dim}; protocol needs "
                f"{protocol.action_block} x {env_action_dim}"
            )
        return model
    raise ValueError(
        f"unknown world model {spec!r}: expected 'oracle' or an existing checkpoint directory"
    )
