"""A grasplab plug-in: a patch-token world model, a random-shooting planner and their configs.

Nothing here is part of grasplab: grasplab finds it by import path (``byo_patch.model:make_model``,
``byo_patch.planner:ShootingPlanner``) and its configs through
``hydra.searchpath=[pkg://byo_patch.configs]``.
"""
