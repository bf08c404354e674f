"""Push-T world models: the MLP's angle features, training on an episode range, the held-out
excerpt the shipped models' guards plan on, and the k-step state errors.

The shipped Push-T checkpoints' planning floors are guarded with the others in
``tests/test_world_models_learned.py`` (their records name the excerpt's task set).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from grasplab.bench.quality_pusht import (
    angle_error,
    heldout_excerpt,
    kstep_errors,
    shifted,
    task_set,
)
from grasplab.world_models import checkpoint
from grasplab.world_models.data import collect, load_episodes
from grasplab.world_models.mlp import MLPConfig, MLPModel
from grasplab.world_models.training import train

torch.set_num_threads(1)


def angle_model() -> MLPModel:
    model = MLPModel(MLPConfig(state_dim=5, env_action_dim=2, width=16, angle_dims=(4,)))
    g = torch.Generator().manual_seed(0)
    states = torch.rand(64, 5, generator=g) * torch.tensor([512, 512, 512, 512, 2 * math.pi])
    model.fit_normalization(states, torch.rand(64, 2, generator=g), states + 1.0)
    return model


def test_angle_enters_the_latent_as_sin_cos_and_wraps_around():
    model = angle_model()
    assert model.state_dim == 6 and model.obs_dim == 5
    near_zero = torch.tensor([[100.0, 200, 300, 400, 0.01]])
    near_two_pi = torch.tensor([[100.0, 200, 300, 400, 2 * math.pi - 0.01]])
    z0, z1 = model.encode(near_zero), model.encode(near_two_pi)
    assert torch.allclose(z0[:, :4], z1[:, :4])
    assert (z0 - z1).norm() == pytest.approx(2 * math.sin(0.01), rel=1e-3)  # the chord, not 2 pi
    assert torch.allclose(z0[:, 4:], torch.tensor([[math.sin(0.01), math.cos(0.01)]]))
    assert torch.equal(model.state_loc[4:], torch.zeros(2))  # sin, cos stay on the unit circle
    assert torch.equal(model.state_scale[4:], torch.ones(2))
    states = torch.cat([near_zero, near_two_pi])
    back = model.decode(model.encode(states))
    assert torch.allclose(back[:, :4], states[:, :4], atol=1e-3)
    assert angle_error(back[:, 4], states[:, 4]).max() < 1e-5
    assert model.step(z0, torch.zeros(1, 2)).shape == (1, 6)


def test_angle_features_survive_a_checkpoint(tmp_path):
    model = angle_model()
    loaded = checkpoint.load(checkpoint.save(model, tmp_path / "ck"))
    assert loaded.config.angle_dims == (4,) and loaded.state_dim == 6
    states = torch.tensor([[10.0, 20, 30, 40, 6.0]])
    assert torch.equal(loaded.encode(states), model.encode(states))


def test_bad_angle_dims_are_refused():
    with pytest.raises(ValueError, match="angle_dims"):
        MLPConfig(state_dim=5, env_action_dim=2, angle_dims=(5,))
    with pytest.raises(ValueError, match="angle_dims"):
        MLPConfig(state_dim=5, env_action_dim=2, angle_dims=(4, 4))


@pytest.fixture(scope="module")
def pusht_data(tmp_path_factory) -> Path:
    """10 random-policy Push-T episodes of 12 env steps, collected in the real simulator."""
    pytest.importorskip("gym_pusht", reason='needs the `sims` extra: pip install -e ".[sims]"')
    out = tmp_path_factory.mktemp("pusht") / "data"
    collect(
        "sim:pusht", episodes=10, steps=12, seed=0, out_dir=out, shard_episodes=5, progress=False
    )
    return out


def test_training_reads_only_its_episode_range_and_sees_the_angle(pusht_data, tmp_path):
    out = tmp_path / "mlp"
    train(
        "mlp",
        pusht_data,
        out,
        steps=2,
        batch=8,
        eval_every=2,
        val_windows=8,
        window=2,
        episodes=[0, 6],
        val_fraction=0.2,
        progress=False,
        model={"width": 16, "depth": 1},
    )
    info = checkpoint.info(out)
    assert info["train_episodes"] == [0, 4] and info["val_episodes"] == [4, 6]
    model = checkpoint.load(out)
    assert model.config.angle_dims == (4,) and model.state_dim == 6  # Push-T's default
    errors = kstep_errors(model, load_episodes(pusht_data, images=False), range(8, 10), (1, 3))
    for name in ("agent_error", "block_error", "position_error", "angle_error"):
        assert len(errors[name]) == 2 and all(math.isfinite(e) for e in errors[name])
        assert errors[f"{name}_no_motion"][0] >= 0.0
    with pytest.raises(ValueError, match="beyond the dataset"):
        train("mlp", pusht_data, tmp_path / "x", steps=1, episodes=[0, 11], progress=False)


def test_grasplab_train_composes_for_pusht_on_an_episode_range(tmp_path):
    from grasplab.platform import train as platform_train

    pytest.importorskip("gym_pusht", reason='needs the `sims` extra: pip install -e ".[sims]"')
    spec = platform_train.load(
        ["env=pusht", "world_model=mlp", "train.episodes=[0,900]", "train.action_block=1"],
        tmp_path,
    )
    assert spec.env == "sim:pusht" and spec.train_kwargs()["episodes"] == [0, 900]


def test_heldout_excerpt_gives_the_same_tasks_as_the_dataset(pusht_data, tmp_path):
    from grasplab.eval import EvalProtocol

    splits = {"tune": (6, 8), "test": (8, 10)}
    excerpt = heldout_excerpt(pusht_data, tmp_path / "excerpt", (6, 10))
    full = load_episodes(pusht_data, images=False)
    part = load_episodes(excerpt, images=False)
    assert part.images is None and torch.equal(part.states, full.states[6:10])
    tasks = [
        EvalProtocol(env="sim:pusht", horizon=4, test_episodes=3, task_set=spec).tasks("test")
        for spec in (
            task_set(str(pusht_data), splits, 4),
            task_set(str(excerpt), shifted(splits, 6), 4),
        )
    ]
    assert torch.equal(tasks[0].start, tasks[1].start)
    assert torch.equal(tasks[0].goal, tasks[1].goal)


def test_pixel_models_of_pusht_normalise_the_actions():
    from grasplab.world_models.pixel import PixelConfig, PixelModel
    from grasplab.world_models.training.state_pixel import TrainConfig, build_model

    manifest = {"env": "sim:pusht", "state_dim": 5, "action_dim": 2, "image_size": 64}
    model = build_model(
        TrainConfig(kind="pixel", model={"width": 16, "memory_dim": 0}), manifest, 1
    )
    assert (model.config.action_loc, model.config.action_scale) == (256.0, 128.0)
    torch.manual_seed(0)
    plain = PixelModel(PixelConfig(env_action_dim=2, width=16))
    plain.predictor[-1].weight.data.normal_()  # not the identity
    model.load_state_dict(plain.state_dict())
    z, a = torch.randn(3, 16), torch.rand(3, 2) * 512
    assert torch.allclose(model.step(z, a), plain.step(z, (a - 256.0) / 128.0), atol=1e-6)
    with pytest.raises(ValueError, match="action_scale"):
        PixelConfig(env_action_dim=2, action_scale=0.0)


def test_mlp_loss_units_divide_by_a_power_of_the_increment_scale():
    from grasplab.world_models.training import TrainConfig, Windows
    from grasplab.world_models.training.state_pixel import mlp_loss

    model = angle_model()
    g = torch.Generator().manual_seed(1)
    states = torch.rand(4, 3, 5, generator=g) * 100
    w = Windows(states, torch.rand(4, 2, 2, generator=g), None)
    z = model.encode(states)
    first = model.step(z[:, 0], w.actions[:, 0]) - z[:, 1]
    for units, power in (("increment", 1.0), ("geometric", 0.5), ("latent", 0.0)):
        _, metrics = mlp_loss(model, w, units)
        expected = (first / model.delta_scale**power).square().mean().detach()
        assert metrics["one_step"] == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="loss_units"):
        TrainConfig(loss_units="pixels")


def test_patch_models_of_pusht_normalise_the_actions():
    from grasplab.world_models.patch import PatchConfig, PatchModel
    from grasplab.world_models.training.patch import PatchTrainConfig, build_model

    manifest = {"env": "sim:pusht", "state_dim": 5, "action_dim": 2, "image_size": 64}
    model = build_model(PatchTrainConfig(model={"hidden": 8}), manifest, 1)
    assert (model.config.action_loc, model.config.action_scale) == (256.0, 128.0)
    wall = build_model(PatchTrainConfig(model={"hidden": 8}), {**manifest, "env": "wall"}, 1)
    assert (wall.config.action_loc, wall.config.action_scale) == (0.0, 1.0)
    torch.manual_seed(0)
    plain = PatchModel(PatchConfig(env_action_dim=2, hidden=8))
    plain.predictor.out.weight.data.normal_()  # not the identity
    model.load_state_dict(plain.state_dict())
    z, a = torch.randn(3, 1024), torch.rand(3, 2) * 512
    assert torch.allclose(model.step(z, a), plain.step(z, (a - 256.0) / 128.0), atol=1e-5)
    assert not torch.allclose(model.step(z, a), plain.step(z, a), atol=1e-3)
    # checkpoints written before the fields existed load with the identity normalisation
    old = {k: v for k, v in plain.config_dict().items() if not k.startswith("action_")}
    assert PatchModel.from_config_dict(old).config.action_scale == 1.0
    with pytest.raises(ValueError, match="action_scale"):
        PatchConfig(env_action_dim=2, action_scale=-1.0)


def test_bench_planners_times_a_pusht_patch_checkpoint_on_rendered_tasks(tmp_path):
    pytest.importorskip("gym_pusht", reason='needs the `sims` extra: pip install -e ".[sims]"')
    from grasplab.bench import planners
    from grasplab.world_models.patch import PatchConfig, PatchModel

    torch.manual_seed(0)
    model = PatchModel(
        PatchConfig(env_action_dim=2, hidden=8, action_loc=256.0, action_scale=128.0)
    )
    info = {"env": "sim:pusht", "env_overrides": {}, "latent_spread": [1.0] * 1024}
    checkpoint.save(model, tmp_path / "ck", info=info)
    problem = planners._problem(
        "pusht", 3, 4, "cpu", planners.load_model(str(tmp_path / "ck"), "cpu")
    )
    assert problem.z0.shape == problem.goal.shape == (3, 1024)
    assert not torch.equal(problem.z0[0], problem.z0[1])  # rendered frames of different tasks
    # planners see actions in [-1, 1]; the model gets the simulator's pixels back
    assert torch.equal(problem.action_low, -torch.ones(2))
    assert torch.equal(problem.action_high, torch.ones(2))
    u = torch.tensor([[0.5, -0.25]])
    z = problem.z0[:1]
    assert torch.equal(problem.model.step(z, u), model.step(z, problem.model.env.raw(u)))


def _decoded_foreground_iou(model, images: torch.Tensor, bg: torch.Tensor) -> float:
    """Mean IoU of the pixels off ``bg`` (by > 0.15) in ``images`` and in their reconstructions."""
    with torch.no_grad():
        recon = model.decode(model.encode(images))
    true = (images.float() / 255 - bg).abs().amax(-1) > 0.15
    drawn = (recon - bg).abs().amax(-1) > 0.15
    inter, union = (true & drawn).sum((1, 2)), (true | drawn).sum((1, 2)).clamp_min(1)
    return float((inter / union).mean())


PATCHRES_IOU_FLOOR = 0.5
"""Floor of ``pusht-patchres-b1``'s decoded-foreground IoU on the guard's 125 rendered held-out
states (docs/recipes.md 6.2: 0.65 when recorded, as on 256 dataset frames of episodes 810-899;
``pusht-patch-b1``'s blobs: 0.24)."""


def test_pusht_patchres_b1_draws_the_block_where_and_as_it_lies():
    """The frozen encoder of ``pusht-patchres-b1`` keeps the T's shape and orientation.

    Its reconstructions of rendered held-out states cover the true foreground (the T and the
    agent) with an IoU above the floor; the blob-drawing ``pusht-patch-b1`` stays below it, so
    the guard can fail.
    """
    pytest.importorskip("gym_pusht", reason='needs the `sims` extra: pip install -e ".[sims]"')
    from grasplab.bench.quality_pusht import HELDOUT
    from grasplab.envs import sim_pusht
    from grasplab.world_models.checkpoint import CHECKPOINTS

    states = load_episodes(CHECKPOINTS / HELDOUT, images=False).states  # episodes 900-999
    states = states[::4, ::25].reshape(-1, 5)  # 25 episodes x 5 steps = 125 states
    sim = sim_pusht.make(image_size=64)
    try:
        images = torch.as_tensor(sim.render(states))
    finally:
        sim.close()
    model = checkpoint.load(CHECKPOINTS / "pusht-patchres-b1")
    assert model.config.residual_decoder
    bg = model.background
    old = checkpoint.load(CHECKPOINTS / "pusht-patch-b1")
    assert _decoded_foreground_iou(model, images, bg) >= PATCHRES_IOU_FLOOR
    assert _decoded_foreground_iou(old, images, bg) < PATCHRES_IOU_FLOOR
