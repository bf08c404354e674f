"""grasplab: planning with learned world models (GRASP and its baselines), swept and tracked.

Sub-packages, bottom up: ``world_models``, ``envs``, ``planners`` (torch only), ``eval`` (joins
them into an explicit evaluation protocol) and ``platform`` (the only layer importing Ray/MLflow).
"""

__version__ = "0.1.0"
