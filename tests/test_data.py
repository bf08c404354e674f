"""Episode collection: format, resumability after an interruption, verified loading, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from grasplab.cli import collect as cli_collect
from grasplab.world_models.data import DatasetError, collect, load_episodes

torch.set_num_threads(1)

ARGS = {
    "env_name": "wall",
    "episodes": 8,
    "steps": 6,
    "seed": 3,
    "action_block": 2,
    "shard_episodes": 2,
    "progress": False,
}


def test_collect_format_and_bounds(tmp_path):
    manifest = collect(out_dir=tmp_path, **ARGS)
    assert manifest["complete"] and len(manifest["shards"]) == 4
    assert manifest["env"] == "wall" and manifest["action_block"] == 2
    assert manifest["env_config"]["size"] == 64.0
    ep = load_episodes(tmp_path)
    assert ep.images.shape == (8, 7, 64, 64, 3) and ep.images.dtype == torch.uint8
    assert ep.states.shape == (8, 7, 2) and ep.actions.shape == (8, 6, 2)
    assert float(ep.actions.abs().max()) <= 1.0
    # the stored transitions are the env's own
    from grasplab.envs import make

    env = make("wall")
    assert torch.allclose(env.step(ep.states[:, :-1], ep.actions), ep.states[:, 1:], atol=1e-5)
    assert torch.equal(env.render(ep.states[:, 3]), ep.images[:, 3])


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    collect(out_dir=tmp_path / "full", **ARGS)
    full = load_episodes(tmp_path / "full")
    part = tmp_path / "part"
    manifest = collect(out_dir=part, max_shards=2, **ARGS)
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    # a crash mid-write leaves a half-written temp shard; a crash between rename and manifest
    # update leaves an unlisted shard: neither may be read as valid
    (part / ".shard-00002.safetensors.tmp").write_bytes(b"half a shard")
    (part / "shard-00003.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="incomplete"):
        load_episodes(part)
    partial = load_episodes(part, require_complete=False)
    assert len(partial) == 4
    manifest = collect(out_dir=part, **ARGS)
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == [0, 1, 2, 3]
    assert not list(part.glob(".*.tmp"))
    resumed = load_episodes(part)
    for key in ("images", "states", "actions"):
        assert torch.equal(getattr(resumed, key), getattr(full, key)), key
    written = json.loads((part / "manifest.json").read_text())
    assert written["bytes"] == sum(s["bytes"] for s in written["shards"])


def test_tampered_shard_is_refused(tmp_path):
    collect(out_dir=tmp_path, **ARGS)
    shard = tmp_path / "shard-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="shard-00001"):
        load_episodes(tmp_path)


def test_resume_refuses_a_different_collection(tmp_path):
    collect(out_dir=tmp_path, max_shards=1, **ARGS)
    with pytest.raises(DatasetError, match="seed"):
        collect(out_dir=tmp_path, **{**ARGS, "seed": 4})


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_collect.main(
        [
            "env=wall",
            "episodes=2",
            "steps=4",
            "seed=1",
            f"out={out}",
            "shard_episodes=1",
            "progress=false",
            "max_step=2.0",
        ]
    )
    assert code == 0
    assert "2/2 episodes" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["env_overrides"] == {"max_step": 2.0}
    assert cli_collect.main(["env=wall", "episodes=2", "steps=4", f"out={out}", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert cli_collect.main(["env=nowhere", "episodes=2", "steps=4", f"out={out}"]) == 2
    assert cli_collect.main(["env=wall", "episodes=2"]) == 2
