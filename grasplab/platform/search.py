"""Equal budgets in one Tune experiment: a searcher and a scheduler that keep planners apart.

All planner variants of a stage share ONE ``Tuner`` (one set of trial actors, a pool that stays
busy across planners instead of idling at the tail of each planner's search), yet each variant
is searched and pruned on its own:

- :class:`PlannerSearch` gives every variant exactly the same number of trials (assigned
  round-robin, so variants run side by side) and asks each variant's own seeded Optuna TPE for
  its configs;
- :class:`PerPlannerScheduler` runs one ASHA per variant, so a trial is only ever compared with
  trials of its own planner (a weak planner is not starved by a strong one).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

LABEL = "label"
"""Config key carrying a trial's planner variant."""


class PlannerSearch(Searcher):
    """Round-robin over planner variants, one seeded Optuna TPE per variant.

    Args:
        spaces: Variant label -> ``ray.tune`` search space (may be empty).
        num_samples: Trials per variant with a search space (a variant with nothing to search
            gets one trial: more would repeat the same config).
        metric: Metric to optimise.
        mode: ``max`` or ``min``.
        seed: Base seed; variant ``i`` uses ``seed + i``.
        n_startup_trials: Random trials before TPE models the results.
    """

    def __init__(
        self,
        spaces: Mapping[str, Mapping[str, Any]],
        num_samples: int,
        metric: str,
        mode: str,
        seed: int = 0,
        n_startup_trials: int = 3,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        import optuna

        self.labels = list(spaces)
        self.budget = {label: num_samples if spaces[label] else 1 for label in self.labels}
        self.assigned = dict.fromkeys(self.labels, 0)
        self.owner: dict[str, str] = {}
        self.searchers: dict[str, OptunaSearch | None] = {}
        for i, label in enumerate(self.labels):
            sampler = optuna.samplers.TPESampler(seed=seed + i, n_startup_trials=n_startup_trials)
            self.searchers[label] = (
                OptunaSearch(
                    space=OptunaSearch.convert_search_space(dict(spaces[label])),
                    metric=metric,
                    mode=mode,
                    sampler=sampler,
                )
                if spaces[label]
                else None
            )

    @property
    def total(self) -> int:
        """Trials over all variants."""
        return sum(self.budget.values())

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Accept Tune's call (metric, mode and spaces are fixed at construction)."""
        return not config

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next trial's config: the least-served variant with budget left."""
        open_labels = [lb for lb in self.labels if self.assigned[lb] < self.budget[lb]]
        if not open_labels:
            return Searcher.FINISHED
        label = min(open_labels, key=lambda lb: self.assigned[lb])
        inner = self.searchers[label]
        config = inner.suggest(trial_id) if inner is not None else {}
        if config is None or config == Searcher.FINISHED:
            return config
        self.assigned[label] += 1
        self.owner[trial_id] = label
        return {LABEL: label, **config}

    def _inner(self, trial_id: str) -> OptunaSearch | None:
        label = self.owner.get(trial_id)
        return self.searchers.get(label) if label else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Forward to the variant's searcher."""
        inner = self._inner(trial_id)
        if inner is not None:
            inner.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Forward to the variant's searcher (TPE learns from the trial's last report)."""
        inner = self._inner(trial_id)
        if inner is not None:
            inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        """Pickle the whole state (Optuna studies included) for ``Tuner.restore``."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        """Inverse of :meth:`save`."""
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class PerPlannerScheduler(FIFOScheduler):
    """One trial scheduler (ASHA) per planner variant, made on first sight by ``factory``.

    Args:
        factory: Builds a scheduler with its metric and mode already set.
    """

    def __init__(self, factory: Callable[[], TrialScheduler]) -> None:
        super().__init__()
        self.factory = factory
        self.schedulers: dict[str, TrialScheduler] = {}

    def _of(self, trial: Any) -> TrialScheduler:
        label = trial.config.get(LABEL, "")
        if label not in self.schedulers:
            self.schedulers[label] = self.factory()
        return self.schedulers[label]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept Tune's call (each inner scheduler has its metric and mode)."""
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """Forward to the variant's scheduler."""
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """Forward to the variant's scheduler."""
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """The variant's scheduler decides CONTINUE or STOP."""
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """Forward to the variant's scheduler."""
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        """Forward to the variant's scheduler."""
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        """One line per variant."""
        return "\n".join(f"{k}: {s.debug_string()}" for k, s in self.schedulers.items())
