"""World models: the :class:`WorldModel` protocol, the serial :func:`rollout`, and models.

``OracleModel`` exposes a torch-native environment's true dynamics; ``LinearModel`` has
closed-form answers for tests.
"""

from grasplab.world_models.base import WorldModel, check_step_inputs, rollout
from grasplab.world_models.linear import LinearModel
from grasplab.world_models.oracle import OracleModel

__all__ = ["LinearModel", "OracleModel", "WorldModel", "check_step_inputs", "rollout"]
