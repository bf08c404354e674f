"""World models: the :class:`WorldModel` protocol, the serial :func:`rollout`, and models.

``OracleModel`` exposes a torch-native environment's true dynamics; ``LinearModel`` has
closed-form answers for tests; ``MLPModel`` (state space) and ``PixelModel`` (64x64 RGB -> latent)
are learned from data collected in-house (:mod:`grasplab.world_models.data`), trained by
:mod:`grasplab.world_models.training` and stored by :mod:`grasplab.world_models.checkpoint`
(safetensors + JSON, never a pickle). A model with structured latents (patch tokens ``(P, C)``,
declared as ``state_shape``) is seen by planners through :func:`as_flat`.
"""

from grasplab.world_models.base import WorldModel, check_step_inputs, rollout
from grasplab.world_models.linear import LinearModel
from grasplab.world_models.mlp import MLPConfig, MLPModel
from grasplab.world_models.oracle import OracleModel
from grasplab.world_models.pixel import PixelConfig, PixelModel
from grasplab.world_models.tokens import FlatLatents, as_flat

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
