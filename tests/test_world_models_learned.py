"""Learned world models: shapes on CPU and meta, training, checkpoints, and the shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from grasplab.bench.quality import guard_task_set, hashes, planning_success
from grasplab.world_models import checkpoint
from grasplab.world_models.base import WorldModel
from grasplab.world_models.checkpoint import CHECKPOINTS, CheckpointError
from grasplab.world_models.data import collect
from grasplab.world_models.mlp import MLPConfig, MLPModel
from grasplab.world_models.pixel import PixelConfig, PixelModel
from grasplab.world_models.training import train
from grasplab.world_models.training.patch import SPREAD_FLOOR

torch.set_num_threads(1)

BATCHES = [(), (3,), (2, 5)]


def make_model(kind: str) -> MLPModel | PixelModel:
    if kind == "mlp":
        return MLPModel(MLPConfig(state_dim=4, env_action_dim=2, action_block=3, width=32))
    return PixelModel(
        PixelConfig(
            env_action_dim=2,
            action_block=3,
            latent_dim=8,
            memory_dim=2,
            channels=4,
            keypoints=4,
            width=32,
        )
    )


def observation(model, batch: tuple[int, ...], device: str) -> torch.Tensor:
    if model.observation == "pixels":
        return torch.zeros((*batch, 64, 64, 3), dtype=torch.uint8, device=device)
    return torch.zeros((*batch, model.state_dim), device=device)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p + 0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("kind", ["mlp", "pixel"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("batch", BATCHES)
def test_encode_step_shapes(kind, device, batch):
    with torch.device(device):
        model = make_model(kind)
    assert isinstance(model, WorldModel)
    z = model.encode(observation(model, batch, device))
    assert z.shape == (*batch, model.state_dim) and z.device.type == device
    a = torch.zeros((*batch, model.action_dim), device=device)
    z2 = model.step(z, a)
    assert z2.shape == z.shape and z2.device.type == device


@pytest.mark.parametrize("kind", ["mlp", "pixel"])
def test_step_is_differentiable_and_rejects_bad_shapes(kind):
    model = make_model(kind)
    randomize(model)
    z = torch.randn(4, model.state_dim, requires_grad=True)
    a = torch.randn(4, model.action_dim, requires_grad=True)
    model.step(z, a).square().sum().backward()
    assert z.grad.abs().sum() > 0 and a.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="action"):
        model.step(z, torch.zeros(4, model.action_dim + 1))
    with pytest.raises(ValueError):
        model.encode(torch.zeros(4, 7))


def test_pixel_memory_is_zero_at_encode_and_float_images_match_uint8():
    model = make_model("pixel")
    randomize(model)
    images = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    z = model.encode(images)
    raw = z * model.latent_scale + model.latent_loc
    assert torch.equal(raw[:, model.latent_dim :], torch.zeros(3, model.memory_dim))
    assert torch.allclose(model.encode(images.float() / 255.0), z, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "pixel"])
def test_checkpoint_roundtrip_identical(kind, tmp_path):
    model = make_model(kind)
    randomize(model)
    checkpoint.save(model, tmp_path / "ck", info={"note": "test"})
    loaded = checkpoint.load(tmp_path / "ck")
    assert type(loaded) is type(model) and loaded.config == model.config
    obs = observation(model, (5,), "cpu")
    if kind == "pixel":
        obs = torch.randint(0, 256, obs.shape, dtype=torch.uint8)
    else:
        obs = torch.randn(obs.shape)
    a = torch.randn(5, model.action_dim)
    with torch.no_grad():
        assert torch.equal(loaded.encode(obs), model.encode(obs))
        z = model.encode(obs)
        assert torch.equal(loaded.step(z, a), model.step(z, a))
    assert checkpoint.info(tmp_path / "ck") == {"note": "test"}
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.fixture
def saved(tmp_path) -> Path:
    model = make_model("mlp")
    randomize(model)
    return checkpoint.save(model, tmp_path / "ck")


def test_tampered_checkpoint_is_refused(saved):
    weights = saved / checkpoint.WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(saved)


def test_truncated_checkpoint_is_refused(saved):
    weights = saved / checkpoint.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load(saved)


def test_bad_config_is_refused(saved):
    config = saved / checkpoint.CONFIG_FILE
    record = json.loads(config.read_text())
    config.write_text(json.dumps({**record, "kind": "transformer"}))
    with pytest.raises(CheckpointError, match="unknown model kind"):
        checkpoint.load(saved)
    config.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(saved)
    config.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.load(saved)


def test_weights_that_do_not_fit_the_config_are_refused(saved):
    config = saved / checkpoint.CONFIG_FILE
    record = json.loads(config.read_text())
    record["config"]["width"] = 16
    config.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoint.load(saved)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    collect(
        "pointmaze",
        episodes=24,
        steps=12,
        seed=0,
        out_dir=out,
        action_block=2,
        shard_episodes=12,
        progress=False,
    )
    return out


@pytest.mark.parametrize(
    "kind, steps, options",
    [
        ("mlp", 150, {"model": {"width": 64, "depth": 2}}),
        ("pixel", 60, {"model": {"channels": 4, "keypoints": 8, "width": 64}}),
    ],
)
def test_training_loss_decreases_and_resumes(kind, steps, options, tiny_data, tmp_path):
    history: list[dict[str, float]] = []
    common = {
        "batch": 16,
        "window": 3,
        "eval_every": steps // 3,
        "val_windows": 16,
        "progress": False,
        **options,
    }
    out = tmp_path / kind
    summary = train(
        kind,
        tiny_data,
        out,
        steps=steps // 3,
        lr=3e-3,
        log=lambda m, s: history.append(m),
        **common,
    )
    assert summary["steps_done"] == steps // 3
    summary = train(
        kind, tiny_data, out, steps=steps, lr=3e-3, log=lambda m, s: history.append(m), **common
    )
    assert [h["step"] for h in history] == [steps // 3 * i for i in (1, 2, 3)]
    assert history[-1]["val_loss"] < 0.8 * history[0]["val_loss"]
    model = checkpoint.load(out)
    info = checkpoint.info(out)
    assert info["env"] == "pointmaze" and info["steps_done"] == steps
    assert model.action_dim == 4
    # the unit of GRASP's state step sizes: latents' per-dimension std on the training data
    spread = model.latent_spread
    assert spread.shape == (model.state_dim,) and bool((spread > 0).all())
    assert info["latent_spread"] == pytest.approx(spread.tolist(), rel=1e-5)


def test_resume_refuses_a_different_run(tiny_data, tmp_path):
    common = {
        "batch": 8,
        "window": 2,
        "eval_every": 5,
        "val_windows": 8,
        "progress": False,
        "model": {"width": 16, "depth": 1},
    }
    train("mlp", tiny_data, tmp_path, steps=5, **common)
    with pytest.raises(ValueError, match="different run"):
        train("mlp", tiny_data, tmp_path, steps=10, **{**common, "window": 3})


def _shipped() -> list[str]:
    floors = CHECKPOINTS / "floors.json"
    return sorted(json.loads(floors.read_text())) if floors.is_file() else []


def test_latent_spread_is_checked_on_load(saved):
    record = json.loads((saved / "config.json").read_text())
    record["info"]["latent_spread"] = [1.0]  # the model's D is larger
    (saved / "config.json").write_text(json.dumps(record))
    with pytest.raises(checkpoint.CheckpointError, match="latent_spread"):
        checkpoint.load(saved)


@pytest.mark.parametrize("name", _shipped())
def test_shipped_checkpoints_declare_their_latent_spread(name):
    model = checkpoint.load(CHECKPOINTS / name)
    spread = model.latent_spread
    assert spread.shape == (model.state_dim,)
    if model.kind == "patch":
        # latents are unit-scale per channel over all patches; most patches (the layout) barely
        # vary, so most dims sit at the floor (training.patch.SPREAD_FLOOR), the agent's do not
        assert float(spread.min()) >= SPREAD_FLOOR - 1e-6 and float(spread.max()) < 3.0
        assert float(spread.max()) > 2 * SPREAD_FLOOR
    else:
        assert 0.5 < float(spread.min()) and float(spread.max()) < 1.5


def test_shipped_checkpoints_match_the_manifest():
    manifest = json.loads((CHECKPOINTS / "manifest.json").read_text())
    assert set(_shipped()) <= set(manifest) and manifest
    for name, files in manifest.items():
        assert hashes(CHECKPOINTS / name) == files, name


@pytest.mark.parametrize("name", _shipped())
def test_shipped_model_plans_above_its_floor(name):
    record = json.loads((CHECKPOINTS / "floors.json").read_text())[name]
    model = checkpoint.load(CHECKPOINTS / name)
    assert model.kind == record["kind"]
    protocol = record["planning"]["protocol"]
    result = planning_success(
        model,
        record["env"],
        record["env_overrides"],
        horizon=protocol["horizon"],
        episodes=protocol["test_episodes"],
        indices=record["test"]["indices"],
        planner=record["planning"]["planner"],
        planner_config=record["test"].get("planner_config", record["planning"]["planner_config"]),
        seed=protocol["seed"],
        task_set=guard_task_set(record),
        random_repeats=1,  # the recorded floor used 5; one keeps the guard cheap
    )
    rate = result["summary"]["success_rate"]
    assert record["test"]["floor"] > result["random_success_rate"], "floor must beat random"
    assert rate >= record["test"]["floor"], f"{name}: {rate:.2f} < floor {record['test']['floor']}"
