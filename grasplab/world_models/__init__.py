"""World models: the :class:`WorldModel` protocol, the serial :func:`rollout`, and models.

``OracleModel`` exposes a torch-native environment's true dynamics; ``LinearModel`` has
closed-form answers for tests; ``MLPModel`` (state space) and ``PixelModel`` (64x64 RGB -> latent)
are learned from data collected in-house (:mod:`grasplab.world_models.data`), trained by
:mod:`grasplab.world_models.training` and stored by :mod:`grasplab.world_models.checkpoint`
(safetensors + JSON, never a pickle). A model with structured latents (patch tokens ``(P, C)``,
declared as ``state_shape``) is seen by planners through :func:`as_flat`.

The names below load on first use: importing a torch-free module of this package (the dataset
manifest, :mod:`grasplab.world_models.manifest`) does not load torch, so a sweep's driver can.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grasplab.world_models.base import WorldModel, check_step_inputs, rollout
    from grasplab.world_models.linear import LinearModel
    from grasplab.world_models.mlp import MLPConfig, MLPModel
    from grasplab.world_models.oracle import OracleModel
    from grasplab.world_models.pixel import PixelConfig, PixelModel
    from grasplab.world_models.tokens import FlatLatents, as_flat

_HOMES = {
    "WorldModel": "base",
    "check_step_inputs": "base",
    "rollout": "base",
    "LinearModel": "linear",
    "MLPConfig": "mlp",
    "MLPModel": "mlp",
    "OracleModel": "oracle",
    "PixelConfig": "pixel",
    "PixelModel": "pixel",
    "FlatLatents": "tokens",
    "as_flat": "tokens",
}
"""Each exported name -> the submodule that defines it."""

__all__ = [
    "FlatLatents",
    "LinearModel",
    "MLPConfig",
    "MLPModel",
    "OracleModel",
    "PixelConfig",
    "PixelModel",
    "WorldModel",
    "as_flat",
    "check_step_inputs",
    "rollout",
]


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
