"""The equal-budget searcher: its resumable state is JSON (never a pickle) and restores TPE."""

from __future__ import annotations

import json

import pytest
from ray import tune

from grasplab.platform.search import LABEL, PlannerSearch


def make(high: float = 1.0) -> PlannerSearch:
    spaces = {"a": {"x": tune.uniform(0, high)}, "b": {"y": tune.randint(0, 100)}, "c": {}}
    return PlannerSearch(spaces, 4, "success_rate", "max", seed=0, n_startup_trials=2)


def test_planner_search_state_is_json_and_restores_history(tmp_path):
    search = make()
    configs = {f"t{i}": search.suggest(f"t{i}") for i in range(5)}
    for i in range(3):  # t3, t4 still running when the driver "dies"
        search.on_trial_complete(f"t{i}", {"success_rate": 0.1 * i})
    search.on_trial_result("t3", {"success_rate": 0.5, "training_iteration": 1})
    path = tmp_path / "searcher-state.pkl"  # Tune's file name; the content is JSON
    search.save(str(path))
    state = json.loads(path.read_text())
    assert state["assigned"] == {"a": 2, "b": 2, "c": 1}
    assert set(state["sampled"]) == {"t3", "t4"}

    restored = make()
    restored.restore(str(path))
    studies = {lb: s._ot_study for lb, s in restored.searchers.items() if s is not None}
    done = {lb: [t.params for t in st.get_trials()] for lb, st in studies.items()}
    assert done == {"a": [{"x": configs["t0"]["x"]}], "b": [{"y": configs["t1"]["y"]}]}
    # trials in flight at the crash: their reports are dropped, their completions told
    restored.on_trial_result("t3", {"success_rate": 0.5, "training_iteration": 2})
    restored.on_trial_complete("t3", {"success_rate": 0.7})
    restored.on_trial_complete("t4", None, error=True)
    restored.on_trial_complete("t0", {"success_rate": 0.9})  # already told: ignored
    a = [(t.params, t.value, t.state.name) for t in studies["a"].get_trials()]
    assert a[-1] == ({"x": configs["t3"]["x"]}, 0.7, "COMPLETE") and len(a) == 2
    assert studies["b"].get_trials()[-1].state.name == "FAIL"
    # the budget goes on where it stopped, and new trials are asked of the restored TPE
    labels = []
    while (config := restored.suggest(f"n{len(labels)}")) != PlannerSearch.FINISHED:
        labels.append(config[LABEL])
        restored.on_trial_complete(f"n{len(labels) - 1}", {"success_rate": 0.2})
    assert sorted(labels) == ["a", "a", "b", "b"]
    assert len(studies["a"].get_trials()) == 4


def test_restore_refuses_a_changed_search_space(tmp_path):
    path = tmp_path / "state"
    make().save(str(path))
    with pytest.raises(ValueError, match="search space of 'a' has changed"):
        make(high=2.0).restore(str(path))
