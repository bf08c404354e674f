"""The distributed experiment platform: the only layer that imports Ray and MLflow.

- :mod:`~grasplab.platform.config`: Hydra composition of ``tune_configs/`` and validation.
- :mod:`~grasplab.platform.workers`: ``WorldModelWorker`` actors and their dispatcher.
- :mod:`~grasplab.platform.trial`: the Tune trial (dispatches episode chunks, aggregates).
- :mod:`~grasplab.platform.search`: equal budgets, TPE and ASHA per planner in one Tuner.
- :mod:`~grasplab.platform.tracking`: MLflow parent/child runs, logged by the driver.
- :mod:`~grasplab.platform.sweep`: ``grasplab sweep`` (the main job).
- :mod:`~grasplab.platform.bench`: ``grasplab bench platform``.

Submodules are imported lazily by the CLI (Ray and MLflow take seconds to import).
"""
