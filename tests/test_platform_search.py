"""The equal-budget searcher: its resumable state is JSON (never a pickle) and restores TPE."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from ray import tune

from grasplab.eval import EpisodeResults
from grasplab.platform import pick
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
    # a stage in parts: Tune restores a part's copy of the searcher, which already holds the
    # earlier parts' trials; restoring again tells none of them twice
    restored.restore(str(path))
    assert restored.remaining == 4  # of 9: the next part's size
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


# --- the default config as each variant's first trial --------------------------------------


def test_each_variant_starts_with_its_default_config(tmp_path):
    from grasplab.platform.config import load

    spaces = {
        "a": {"x": tune.uniform(0, 1), "o": tune.choice(["adam", "sgd"])},
        "b": {"y": tune.randint(0, 100)},
        "c": {},
    }
    defaults = {"a": {"x": 0.25, "o": "sgd"}, "b": {"y": 42}, "c": None}
    search = PlannerSearch(spaces, 3, "success_rate", "max", seed=0, defaults=defaults)
    first = [search.suggest(f"t{i}") for i in range(3)]
    assert first[0] == {LABEL: "a", "x": 0.25, "o": "sgd"} and first[1] == {LABEL: "b", "y": 42}
    for i in range(3):
        search.on_trial_complete(f"t{i}", {"success_rate": 0.5})
    later = search.suggest("t3")
    assert later[LABEL] == "a" and later != first[0]  # TPE's own from the second trial on
    # a resumed driver does not run the default again ...
    path = tmp_path / "state"
    search.save(str(path))
    restored = PlannerSearch(spaces, 3, "success_rate", "max", seed=0, defaults=defaults)
    restored.restore(str(path))
    assert restored.suggest("t4")[LABEL] == "b"
    assert restored.searchers["b"]._ot_study.get_trials()[0].params == {"y": 42}
    # ... but one that died before asking a variant's first trial does
    fresh = PlannerSearch(spaces, 3, "success_rate", "max", seed=0, defaults=defaults)
    fresh.save(str(path))
    again = PlannerSearch(spaces, 3, "success_rate", "max", seed=0, defaults=defaults)
    again.restore(str(path))
    assert again.suggest("u0") == first[0]
    # every shipped planner's default lies inside its shipped search space
    extra = [
        f"+{group}@planners.{name}{suffix}={option}"
        for name, option in [("mppi", "mppi"), ("latco", "latco"), ("ref", "grasp_reference")]
        for group, suffix in [("planner", ""), ("search_space", ".search_space")]
    ]
    extra = [e.replace("search_space=grasp_reference", "search_space=grasp") for e in extra]
    planners = load(extra).planners
    assert {p.label for p in planners} == {"grasp", "cem", "gd", "mppi", "latco", "ref"}
    for planner in planners:
        point, why = planner.default_point()
        assert why == "" and point == {
            k: v for k, v in planner.default_config().items() if k in planner.search_space
        }


def test_a_default_outside_a_narrowed_space_is_said_and_not_enqueued():
    from grasplab.platform.config import load

    spec = load(
        [
            "~planners.gd",
            "planners.cem.search_space.var_scale.low=0.01",
            "planners.cem.search_space.var_scale.high=0.5",
        ]
    )
    cem = next(p for p in spec.planners if p.label == "cem")
    point, why = cem.default_point()
    assert point is None and why == "default var_scale=1.0 outside [0.01, 0.5]"
    grasp = next(p for p in spec.planners if p.label == "grasp")
    assert grasp.default_point()[0]["sync_optimizer"] == grasp.default_config()["sync_optimizer"]


# --- the re-score before the pick --------------------------------------------------------------


def trial(tid: str, rate: float, x: float, chunks: int = 4, steps: float = 100.0):
    metrics = {"trial_id": tid, "success_rate": rate, "n": 8, "chunks": chunks}
    metrics |= {"median_time_to_success": 1.0, "model_steps": steps}
    return SimpleNamespace(config={LABEL: "a", "x": x}, metrics=metrics, error=None)


def fresh(successes: list[bool], steps: float = 100.0) -> EpisodeResults:
    return EpisodeResults.from_records(
        [
            {
                "index": 8 + i,
                "success": s,
                "time_to_success": 1.0 if s else math.nan,
                "final_distance": 0.0,
                "min_distance": 0.0,
                "model_steps": steps,
                "model_cost": 0.0,
                "plan_time": 1.0,
            }
            for i, s in enumerate(successes)
        ]
    )


def test_the_pick_is_the_best_re_scored_config_not_the_luckiest_search_score():
    # three trials tie at the top of the search (6/8); a fourth was stopped early by ASHA
    ranked = pick.ranked_results(
        [
            trial("t0", 0.75, 0.1),
            trial("t1", 0.75, 0.2),
            trial("t2", 1.0, 0.9, chunks=2),  # complete trials first: this one ranks last
            trial("t3", 0.75, 0.3),
            trial("t4", 0.5, 0.4),
        ],
        n_chunks=4,
    )
    assert [r.metrics["trial_id"] for r in ranked] == ["t0", "t1", "t3", "t4", "t2"]
    asked = []

    def score(configs):  # a fake scorer: the fresh goals favour x = 0.3
        asked.extend(configs)
        return [fresh([c["x"] == 0.3] * 6 + [False, True]) for c in configs]

    best, rows, note = pick.rescore_and_pick(ranked, 3, 4, score)
    assert asked == [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}]  # the top 3 complete trials only
    assert note == "" and best.metrics["trial_id"] == "t3"
    assert [(r["trial"], r["fresh_successes"], r["picked"]) for r in rows] == [
        ("t0", 1, False),
        ("t1", 1, False),
        ("t3", 7, True),
    ]
    assert rows[2]["pooled_success_rate"] == (6 + 7) / 16
    # ties on the pooled figure: fewer model steps, then the search's order
    tie = [{"search_successes": 6, "fresh_successes": 4, "search_rank": i} for i in range(3)]
    costs = zip(tie, [300.0, 200.0, 200.0], strict=True)
    assert pick.pick_rescored([{**t, "model_steps": s} for t, s in costs]) == 1
    # no re-score: the search's best, and why
    assert pick.rescore_and_pick(ranked, 1, 4, score)[1:] == ([], "no re-score: rescore_top < 2")
    skipped = pick.rescore_and_pick(ranked, 3, 4, "no fresh tuning goals (x)")
    assert skipped[0] is ranked[0] and skipped[2] == "no re-score: no fresh tuning goals (x)"


def test_fresh_tuning_goals_extend_the_tuning_split_and_leave_the_test_goals_alone():
    from grasplab.eval import EvalProtocol
    from grasplab.eval.protocol import fresh_tuning_goals

    protocol = EvalProtocol(env="pointmaze", horizon=6, tune_episodes=4, test_episodes=4)
    extended, indices = fresh_tuning_goals(protocol, 3)
    assert indices == [4, 5, 6] and extended.tune_episodes == 7
    assert extended.test_episodes == 4 and extended.seed == protocol.seed
    seen, more = protocol.tasks("tune"), extended.tasks("tune")
    assert torch.equal(more.goal[:4], seen.goal) and not torch.equal(more.goal[4:5], seen.goal[:1])
    test = protocol.tasks("test").goal
    assert not any(torch.equal(g, t) for g in more.goal[4:] for t in test)
