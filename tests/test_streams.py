"""One random stream per episode: an episode's plan does not depend on how the work is cut.

The invariance tests fail on the code before per-episode streams (one generator per chunk,
seeded by the chunk's first index): there CEM, GRASP and MPPI flipped 1-4 of 64 outcomes
between chunks of 8 and one chunk of 64.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from grasplab.bench import invariance
from grasplab.eval import EvalProtocol, evaluate, random_floor
from grasplab.eval.results import EpisodeResults
from grasplab.planners import (
    CEMConfig,
    GDConfig,
    GRASPConfig,
    LatCoConfig,
    MPPIConfig,
    make_planner,
    streams,
)
from grasplab.planners.base import randn, randn_into
from grasplab.planners.streams import EpisodeStreams, mix64, mix64_int, stream_key
from grasplab.world_models import OracleModel

DETERMINISTIC = ("index", *invariance.DETERMINISTIC)

# Small budgets (the invariance does not depend on them); GD with action noise so that it
# draws too, GRASP with the CEM sync so that the sync's samples are covered.
PLANNERS = {
    "cem": ("cem", CEMConfig(n_iterations=4, n_samples=48, n_elites=6, probe_every=1)),
    "mppi": ("mppi", MPPIConfig(n_iterations=3, n_samples=48, n_elites=8)),
    "gd": ("gd", GDConfig(n_steps=30, action_noise=0.05, probe_every=5)),
    "latco": ("latco", LatCoConfig(n_steps=40, probe_every=10)),
    "grasp": ("grasp", GRASPConfig(n_steps=60, sync_interval=20, probe_every=10)),
    "grasp_cem_sync": (
        "grasp",
        GRASPConfig(n_steps=40, sync_interval=20, sync_mode="cem", sync_samples=16),
    ),
    "grasp_reference": ("grasp", GRASPConfig.reference(n_steps=60, sync_interval=20)),
}


def _protocol(n: int, **overrides) -> EvalProtocol:
    values = dict(
        env="pointmaze",
        env_overrides={"layout": "medium"},
        horizon=10,
        seed=3,
        tune_episodes=0,
        test_episodes=n,
    )
    values.update(overrides)
    return EvalProtocol(**values)


def _chunked(protocol, planner, model, n: int, size: int) -> EpisodeResults:
    parts = [
        evaluate(protocol, planner, model, "test", list(range(s, min(s + size, n))))
        for s in range(0, n, size)
    ]
    return EpisodeResults.concat(parts)


def assert_same_episodes(a: EpisodeResults, b: EpisodeResults, what: str) -> None:
    oa, ob = np.argsort(a.index), np.argsort(b.index)
    for field in DETERMINISTIC:
        x, y = getattr(a, field)[oa], getattr(b, field)[ob]
        assert np.array_equal(x, y, equal_nan=True), f"{what}: {field} differs"


# --- the generator ----------------------------------------------------------------------------


def test_mix64_matches_the_integer_reference():
    values = [0, 1, 2**63 - 1, -(2**63), -5, 12345678901234567, 0x9E3779B97F4A7C15 - 2**64]
    got = mix64(torch.tensor(values, dtype=torch.int64)).tolist()
    assert [g & (2**64 - 1) for g in got] == [mix64_int(v) for v in values]


def test_rows_do_not_depend_on_the_batch_or_on_their_position():
    keys = [stream_key(0, 2, i, 0) for i in range(9)]
    whole = EpisodeStreams(keys)
    alone = EpisodeStreams(keys[4:5])
    reordered = EpisodeStreams(keys[::-1])
    for shape, dim in [((9, 7, 3), 0), ((5, 9, 33), 1)]:
        a = whole.normal(shape, batch_dim=dim)
        row_shape = list(shape)
        row_shape[dim] = 1
        b = alone.normal(row_shape, batch_dim=dim)
        c = reordered.normal(shape, batch_dim=dim)
        assert torch.equal(a.select(dim, 4), b.select(dim, 0))
        assert torch.equal(a.flip(dim), c)
    u = whole.uniform((9, 1000), dtype=torch.float64)
    assert torch.equal(u[4], alone.uniform((1, 1000), dtype=torch.float64)[0])
    assert not torch.equal(u[3], u[4])
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0


def test_draws_advance_and_streams_differ():
    s = EpisodeStreams([stream_key(1, 2, i, 0) for i in range(2)])
    first, second = s.normal((2, 64)), s.normal((2, 64))
    assert not torch.equal(first, second)  # the counter moved
    assert not torch.equal(first[0], first[1])  # two episodes, two streams
    assert s.draws == 2


def test_blocks_of_repeated_draws_change_no_number(monkeypatch):
    """GRASP's per-iteration noise is generated in blocks: the same numbers as one by one."""
    keys = [stream_key(3, 2, i, 0) for i in range(6)]

    def run() -> list[torch.Tensor]:
        s, rows, out = EpisodeStreams(keys), 6, []
        for i in range(40):
            if i == 25:
                s, rows = s.select([4, 1, 2]), 3  # rows dropped mid-block
            out.append(s.normal((rows, 5, 3)))
            if i == 9:
                out.append(s.uniform((rows, 4)))  # another kind: the block is dropped
            if i == 20:
                out.append(s.normal((rows, 7), dtype=torch.float64))  # another shape
        return out

    blocked = run()
    monkeypatch.setattr(streams, "BLOCK_DRAWS", 1)
    single = run()
    assert len(blocked) == len(single) == 42
    assert all(torch.equal(a, b) for a, b in zip(blocked, single, strict=True))


def test_normals_are_standard_normal():
    z = EpisodeStreams([stream_key(7, i) for i in range(64)]).normal((64, 20_000))
    from scipy.stats import kstest

    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert kstest(z[:4].flatten().numpy(), "norm").pvalue > 1e-3
    z64 = EpisodeStreams([1, 2]).normal((2, 50_000), dtype=torch.float64)
    assert z64.dtype == torch.float64 and abs(float(z64.std()) - 1) < 0.02


def test_planner_helpers_route_draws_to_the_streams():
    s, t = EpisodeStreams([11, 12, 13]), EpisodeStreams([11, 12, 13])
    like = torch.zeros(3, 4)
    assert torch.equal(randn((3, 4), like, s), t.normal((3, 4)))
    out = torch.empty(5, 3, 2)
    assert torch.equal(randn_into(out, s, batch_dim=1), t.normal((5, 3, 2), batch_dim=1))
    with pytest.raises(ValueError, match="B=3 at dim 0"):
        s.normal((4, 2))
    with pytest.raises(ValueError, match="split"):
        EpisodeStreams.for_episodes(0, "train", [0])


# --- episodes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PLANNERS))
def test_episode_results_do_not_depend_on_the_chunk_size(name):
    kind, config = PLANNERS[name]
    n = 64
    protocol = _protocol(n)
    model = OracleModel(protocol.make_env(), protocol.action_block)
    planner = make_planner(kind, config)
    whole = evaluate(protocol, planner, model, "test")
    for size in (8, 5):
        assert_same_episodes(_chunked(protocol, planner, model, n, size), whole, f"chunk {size}")
    picked = [0, 17, 42, 63]  # alone: chunks of 1 (four of them keep the test short)
    alone = EpisodeResults.concat([evaluate(protocol, planner, model, "test", [i]) for i in picked])
    assert_same_episodes(alone, whole.select(picked), "chunk 1")


def test_mpc_episodes_do_not_depend_on_the_chunk_size():
    protocol = _protocol(12, mode="mpc", mpc_execute=5)
    model = OracleModel(protocol.make_env(), protocol.action_block)
    planner = make_planner("grasp", GRASPConfig(n_steps=30, sync_interval=10))
    whole = evaluate(protocol, planner, model, "test")
    assert_same_episodes(_chunked(protocol, planner, model, 12, 5), whole, "mpc chunk 5")


def test_planner_seed_is_part_of_the_key():
    protocol = _protocol(8)
    model = OracleModel(protocol.make_env(), protocol.action_block)
    planner = make_planner("cem", PLANNERS["cem"][1])
    a = evaluate(protocol, planner, model, "test", seed=0)
    b = evaluate(protocol, planner, model, "test", seed=1)
    assert not np.array_equal(a.final_distance, b.final_distance)


def test_random_floor_of_an_episode_does_not_depend_on_the_other_tasks():
    small, large = _protocol(8), _protocol(32)
    a, b = random_floor(small, "test", repeats=2), random_floor(large, "test", repeats=2)
    # the first 8 tasks of both splits are the same goals; each rollout has its own stream
    assert np.array_equal(small.tasks("test").goal, large.tasks("test").goal[:8])
    for r in range(2):
        ra, rb = slice(8 * r, 8 * r + 8), slice(32 * r, 32 * r + 8)
        assert np.array_equal(a.final_distance[ra], b.final_distance[rb])


def test_steps_to_success_is_the_episodes_own():
    protocol = _protocol(16)
    model = OracleModel(protocol.make_env(), protocol.action_block)
    config = CEMConfig(n_iterations=6, n_samples=48, n_elites=6, probe_every=1)
    res = evaluate(protocol, make_planner("cem", config), model, "test")
    per_iteration = config.n_samples * protocol.horizon
    solved = res.success
    assert solved.any()
    steps = res.model_steps_to_success[solved]
    assert np.all(steps % per_iteration == 0) and np.all(steps <= 6 * per_iteration)
    assert np.isnan(res.model_steps_to_success[~solved]).all()
    assert np.all(res.model_steps[solved] == steps)
    summary = res.summary()
    assert summary["median_steps_to_success"] == float(np.median(steps))
    assert not math.isnan(summary["median_time_to_success"])


def test_old_records_without_steps_to_success_still_load():
    protocol = _protocol(4)
    records = random_floor(protocol, "test").to_records()
    for r in records:
        del r["model_steps_to_success"]
    back = EpisodeResults.from_records(records)
    assert np.isnan(back.model_steps_to_success).all() and len(back) == 4


def test_select_keeps_every_field():
    res = random_floor(_protocol(6), "test")
    part = res.select([1, 3])
    assert [f.name for f in dataclasses.fields(part)] == [f.name for f in dataclasses.fields(res)]
    assert part.index.tolist() == [1, 3]


def test_bench_invariance_counts_no_flips(tmp_path, capsys):
    from grasplab.cli import bench_invariance

    out = tmp_path / "inv.json"
    argv = ["--episodes", "5", "--chunks", "2,5", "--planners", "mppi,latco", "--json", str(out)]
    assert bench_invariance.main(argv) == 0
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["planner"] for r in rows] == ["mppi", "latco"]
    assert all(
        r["versus"]["5"] == {"flips": 0, "identical": True, "differing_fields": []} for r in rows
    )
    assert "0 of 5 flip, bit-identical" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        bench_invariance.main(["--chunks", "0,8"])
    assert bad.value.code == 2
