"""The scripted Push-T pusher: its geometry matches gym-pusht's T, and it moves the block."""

from __future__ import annotations

import numpy as np
import pytest

from grasplab.envs.pusht_policy import (
    COG,
    VERTICES,
    PusherConfig,
    ScriptedPusher,
    block_geometry,
    moved,
    random_states,
)

REASON = 'needs the `sims` extra: pip install -e ".[sims]"'


@pytest.fixture(scope="module")
def pusht_mod():
    for package in ("gymnasium", "gym_pusht", "pymunk"):
        pytest.importorskip(package, reason=REASON)
    import grasplab.envs.sim_pusht as module

    return module


def test_the_t_outline_and_centre_are_gym_pushts(pusht_mod):
    env = pusht_mod.make_env()
    np.testing.assert_allclose(np.array(env.block.center_of_gravity), COG, atol=1e-9)
    shapes = [np.array([tuple(v) for v in s.get_vertices()]) for s in env._block_shapes]
    corners = {tuple(np.round(v, 6)) for s in shapes for v in s}
    assert {tuple(v) for v in VERTICES} <= corners  # the outline's 8 corners are the shapes'
    # world frame: the centre of gravity pymunk reports for a posed block
    state = np.array([100.0, 100.0, 250.0, 260.0, 1.1])
    pusht_mod.set_state(env, state)
    cog, _ = block_geometry(state[None])
    np.testing.assert_allclose(cog[0], np.array(env.block.local_to_world(tuple(COG))), atol=1e-6)


def test_moved_counts_block_motion_only():
    states = np.zeros((1, 4, 5))
    states[0, :, :2] = [[0, 0], [50, 0], [100, 0], [150, 0]]  # the agent moves every step
    states[0, 2, 2] = 3.0  # the block shifts at step 2 ...
    states[0, 3, 2] = 3.0
    states[0, 3, 4] = 0.2  # ... and turns at step 3
    assert moved(states).tolist() == [[False, True, True]]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="push_steps"):
        PusherConfig(push_steps=(5, 2))
    pusher = ScriptedPusher(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        pusher.act(np.zeros((3, 5)))


def test_the_pusher_moves_the_block_in_most_short_episodes(pusht_mod):
    rng = np.random.default_rng(0)
    n, steps = 8, 60
    with pusht_mod.make() as sim:
        states = [random_states(rng, n)]
        sim.reset_to(states[0])
        pusher = ScriptedPusher(n, rng)
        for _ in range(steps):
            action = pusher.act(states[-1])
            assert ((action >= 20) & (action <= 492)).all()
            states.append(np.asarray(sim.step(action)))
    states = np.stack(states, axis=1)
    cog0, _ = block_geometry(states[:, 0])
    cog1, _ = block_geometry(states[:, -1])
    shift = np.linalg.norm(cog1 - cog0, axis=-1)
    turn = np.abs((states[:, -1, 4] - states[:, 0, 4] + np.pi) % (2 * np.pi) - np.pi)
    assert ((shift > 10) | (turn > 0.1)).sum() >= 6, (shift, turn)
    assert moved(states).mean() > 0.1  # a tenth of all steps push the block already


def test_collect_with_the_pusher_records_it_and_moves_the_block(pusht_mod, tmp_path):
    import json

    from grasplab.world_models.data import collect, load_episodes

    out = tmp_path / "pusht"
    collect(
        "sim:pusht", episodes=4, steps=40, seed=3, out_dir=out, progress=False, behaviour="pusher"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["behaviour"] == "pusher"
    data = load_episodes(out)
    assert data.states.shape == (4, 41, 5) and data.actions.shape == (4, 40, 2)
    assert moved(data.states.double().numpy()).any(axis=1).sum() >= 3
    # resuming with another behaviour is a different collection: refused, not mixed
    with pytest.raises(ValueError):
        collect("sim:pusht", episodes=4, steps=40, seed=3, out_dir=out, progress=False)
    with pytest.raises(ValueError, match="Push-T only"):
        collect("wall", episodes=2, steps=4, seed=0, out_dir=tmp_path / "w", behaviour="pusher")
