"""Equal budgets in one Tune experiment: a searcher and a scheduler that keep planners apart.

All planner variants of a stage share ONE ``Tuner`` (one set of trial actors, a pool that stays
busy across planners instead of idling at the tail of each planner's search), yet each variant
is searched and pruned on its own:

- :class:`PlannerSearch` gives every variant exactly the same number of trials (assigned
  round-robin, so variants run side by side) and asks each variant's own seeded Optuna TPE for
  its configs, the first of which is the variant's default config (Tune's
  ``points_to_evaluate``, i.e. an Optuna enqueued trial): a search never ends without having
  scored the defaults;
- :class:`PerPlannerScheduler` runs one ASHA per variant, so a trial is only ever compared with
  trials of its own planner (a weak planner is not starved by a strong one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from optuna.distributions import distribution_to_json, json_to_distribution
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

LABEL = "label"
"""Config key carrying a trial's planner variant."""


class PlannerSearch(Searcher):
    """Round-robin over planner variants, one seeded Optuna TPE per variant.

    The state Tune checkpoints (:meth:`save` / :meth:`restore`) is JSON, never a pickle: the
    round-robin counters, which variant owns which trial, the configs of trials still in
    flight, and per variant the finished trials (params, Optuna distributions, value, state),
    which :meth:`restore` adds back to the fresh studies. Trials in flight when the driver died
    are unknown to the restored Optuna searchers; their results are told to the study when they
    complete (as evaluated points), and their intermediate reports are dropped.

    Args:
        spaces: Variant label -> ``ray.tune`` search space (may be empty).
        num_samples: Trials per variant with a search space (a variant with nothing to search
            gets one trial: more would repeat the same config).
        metric: Metric to optimise.
        mode: ``max`` or ``min``.
        seed: Base seed; variant ``i`` uses ``seed + i``.
        n_startup_trials: Random trials before TPE models the results.
        defaults: Variant label -> its default config in its search space's names (see
            :meth:`grasplab.platform.config.PlannerSpec.default_point`), evaluated as the
            variant's first trial; a variant missing here (or ``None``) starts with TPE's own.
    """

    STATE_VERSION = 1

    def __init__(
        self,
        spaces: Mapping[str, Mapping[str, Any]],
        num_samples: int,
        metric: str,
        mode: str,
        seed: int = 0,
        n_startup_trials: int = 3,
        defaults: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.labels = list(spaces)
        self.seed, self.n_startup_trials = seed, n_startup_trials
        self.defaults = {
            label: dict(point)
            for label, point in (defaults or {}).items()
            if point and spaces.get(label)
        }
        self.budget = {label: num_samples if spaces[label] else 1 for label in self.labels}
        self.assigned = dict.fromkeys(self.labels, 0)
        self.owner: dict[str, str] = {}
        self.sampled: dict[str, dict[str, Any]] = {}
        self.completed: set[str] = set()
        self.history: dict[str, list[dict[str, Any]]] = {label: [] for label in self.labels}
        self.asked: set[str] = set()
        self.distributions: dict[str, dict[str, Any]] = {}
        self.searchers: dict[str, OptunaSearch | None] = {}
        for label in self.labels:
            space = OptunaSearch.convert_search_space(dict(spaces[label])) if spaces[label] else {}
            self.distributions[label] = space
            self.searchers[label] = self._searcher(label, start_with_default=True)

    def _searcher(self, label: str, start_with_default: bool) -> OptunaSearch | None:
        """A fresh seeded TPE for ``label``, with its default config enqueued if asked."""
        import optuna

        space = self.distributions[label]
        if not space:
            return None
        i = self.labels.index(label)
        sampler = optuna.samplers.TPESampler(
            seed=self.seed + i, n_startup_trials=self.n_startup_trials
        )
        default = self.defaults.get(label) if start_with_default else None
        return OptunaSearch(
            space=space,
            metric=self.metric,
            mode=self.mode,
            sampler=sampler,
            points_to_evaluate=[dict(default)] if default else None,
        )

    @property
    def total(self) -> int:
        """Trials over all variants."""
        return sum(self.budget.values())

    @property
    def remaining(self) -> int:
        """Trials not yet suggested (the next experiment of a stage run in parts gets these)."""
        return sum(max(0, self.budget[lb] - self.assigned[lb]) for lb in self.labels)

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
        self.sampled[trial_id] = dict(config)
        if inner is not None:
            self.asked.add(trial_id)
        return {LABEL: label, **config}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Forward to the variant's searcher (when it asked for this trial itself)."""
        inner = self.searchers.get(self.owner.get(trial_id, ""))
        if inner is not None and trial_id in self.asked and trial_id not in self.completed:
            inner.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Tell the variant's study the trial's outcome (TPE learns from its last report).

        A trial the variant's searcher did not ask for in this process (it was in flight when
        a previous driver died) is added to the study as an evaluated point instead.
        """
        label = self.owner.get(trial_id)
        if label is None or trial_id in self.completed:
            return
        self.completed.add(trial_id)
        params = self.sampled.pop(trial_id, {})
        inner = self.searchers.get(label)
        if inner is None:
            return
        record = self._record(params, result, error)
        self.history[label].append(record)
        if trial_id in self.asked:
            inner.on_trial_complete(trial_id, result=result, error=error)
        else:
            self._tell(label, record)

    def _record(self, params: dict[str, Any], result: dict | None, error: bool) -> dict[str, Any]:
        """A finished trial as Optuna sees it (``OptunaSearch.on_trial_complete``'s rules)."""
        value = (result or {}).get(self.metric)
        finite = isinstance(value, int | float) and math.isfinite(value)
        state = "COMPLETE" if finite else ("FAIL" if error or value is not None else "PRUNED")
        return {"params": params, "value": float(value) if finite else None, "state": state}

    def _tell(self, label: str, record: Mapping[str, Any]) -> None:
        """Add a finished trial to the variant's study (restore, or a trial from a past driver)."""
        inner = self.searchers[label]
        assert inner is not None
        inner.add_evaluated_point(
            dict(record["params"]),
            record["value"],
            error=record["state"] == "FAIL",
            pruned=record["state"] == "PRUNED",
        )

    def state_dict(self) -> dict[str, Any]:
        """The JSON-able state: counters, owners, in-flight configs, per-variant history."""
        return {
            "version": self.STATE_VERSION,
            "labels": self.labels,
            "assigned": self.assigned,
            "owner": self.owner,
            "sampled": self.sampled,
            "completed": sorted(self.completed),
            "distributions": {
                label: {k: distribution_to_json(d) for k, d in space.items()}
                for label, space in self.distributions.items()
            },
            "history": self.history,
            "defaults": self.defaults,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`: replay the history into this searcher's fresh studies.

        Raises:
            ValueError: A state of another version, other variants or other search spaces.
        """
        self._check_compatible(state)
        self.assigned = {label: int(state["assigned"][label]) for label in self.labels}
        self.owner = dict(state["owner"])
        self.sampled = {k: dict(v) for k, v in state["sampled"].items()}
        self.completed = set(state["completed"])
        self.asked = set()
        self.history = {label: list(state["history"].get(label, [])) for label in self.labels}
        for label in self.labels:  # fresh studies: restoring twice never tells a trial twice
            # a default already asked (its variant's first trial) is not enqueued again
            first = not self.assigned[label]
            self.searchers[label] = self._searcher(label, start_with_default=first)
        for label, records in self.history.items():
            for record in records:
                self._tell(label, record)

    def _check_compatible(self, state: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` was saved by a searcher like this one."""
        if state.get("version") != self.STATE_VERSION:
            raise ValueError(f"searcher state version {state.get('version')!r} is not supported")
        if list(state.get("labels", [])) != self.labels:
            raise ValueError(
                f"searcher state has variants {state.get('labels')}, not {self.labels}"
            )
        for label, space in self.distributions.items():
            saved = {
                k: json_to_distribution(v) for k, v in state["distributions"].get(label, {}).items()
            }
            if saved != space:
                raise ValueError(f"searcher state: the search space of {label!r} has changed")

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (Tune names the file; it is never unpickled)."""
        with open(checkpoint_path, "w") as f:
            json.dump(self.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Inverse of :meth:`save`."""
        with open(checkpoint_path) as f:
            self.load_state_dict(json.load(f))


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
