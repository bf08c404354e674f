"""The patch-grid (DINO-WM-class) world model: shapes on CPU and meta, pluggable encoders."""

from __future__ import annotations

import math

import pytest
import torch

from grasplab.cli import bench_planners
from grasplab.planners import PlanProblem, make_planner
from grasplab.targets import import_target
from grasplab.world_models import WorldModel
from grasplab.world_models.patch import PatchConfig, PatchModel, freeze_encoder


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_shapes(device):
    config = PatchConfig(env_action_dim=2, action_block=5)
    with torch.device(device):
        model = PatchModel(config)
    assert isinstance(model, WorldModel)
    assert model.token_shape == (64, 16) and model.state_dim == 1024 and model.action_dim == 10
    images = torch.zeros(3, 4, 64, 64, 3, dtype=torch.uint8, device=device)
    z = model.encode(images)
    assert z.shape == (3, 4, 1024) and z.device.type == device
    a = torch.zeros(3, 4, 10, device=device)
    assert model.step(z, a).shape == (3, 4, 1024)
    assert model.decode(z).shape == (3, 4, 64, 64, 3)
    with pytest.raises(ValueError, match="last dim"):
        model.step(z[..., :-1], a)


def test_predictor_starts_as_identity_and_encoder_freezes():
    model = PatchModel(PatchConfig(env_action_dim=2))
    z = torch.randn(5, 1024)
    torch.testing.assert_close(model.step(z, torch.randn(5, 2)), z)
    freeze_encoder(model)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.predictor.parameters())


def test_bad_encoders_are_named():
    with pytest.raises(ValueError, match="pkg.module:name"):
        import_target("no colon", "PatchConfig.encoder")
    with pytest.raises(ValueError, match="cannot import"):
        PatchModel(PatchConfig(env_action_dim=2, encoder="not_a_module_xyz:Enc"))
    with pytest.raises(ValueError, match="no attribute"):
        PatchModel(PatchConfig(env_action_dim=2, encoder="grasplab.world_models.patch:Nope"))
    wrong = PatchConfig(env_action_dim=2, grid=4)  # the conv encoder then yields 4x4 = 16 tokens
    model = PatchModel(wrong)
    model.token_shape = (64, 16)  # claim more tokens than the encoder gives
    with pytest.raises(ValueError, match=r"expected \(P, C\)"):
        model.features(torch.zeros(1, 64, 64, 3))


def test_a_dinov2_small_shaped_vit_encoder_plugs_in_and_plans():
    # DINOv2-small's shape (patch 14, width 384, 12 blocks, 6 heads) on 224 px images: a 16x16
    # grid of 384-d tokens, D = 98,304. Random weights: shapes and a few planning iterations.
    config = PatchConfig(
        env_action_dim=2,
        image_size=224,
        grid=16,
        channels=384,
        hidden=16,
        encoder="grasplab.world_models.patch:ViTPatchEncoder",
    )
    torch.manual_seed(0)
    model = PatchModel(config)
    n_params = sum(p.numel() for p in model.encoder.parameters())
    assert 21e6 < n_params < 23e6  # DINOv2-small: 22M parameters
    model.requires_grad_(False)
    images = torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = model.encode(images)
    assert z.shape == (4, 256 * 384) and model.token_shape == (256, 384)
    z0, goal = z[:2], z[2:]
    bounds = torch.ones(2)
    problem = PlanProblem(model, z0, goal, 3, -bounds, bounds)
    for name, config in [
        ("grasp", {"n_steps": 3, "sync_interval": 2, "sync_steps": 1}),
        ("cem", {"n_iterations": 2, "n_samples": 8, "n_elites": 2}),
    ]:
        result = make_planner(name, config).plan(
            problem, generator=torch.Generator().manual_seed(0)
        )
        assert result.actions.shape == (2, 3, 2) and bool(result.cost.isfinite().all())


def test_checkpoint_roundtrip(tmp_path):
    from grasplab.world_models import checkpoint

    torch.manual_seed(0)
    model = PatchModel(PatchConfig(env_action_dim=2, action_block=2))
    torch.nn.init.normal_(model.predictor.out.weight, std=0.1)
    model.set_latent_normalization(torch.randn(10, 64, 16) * 3 + 1)
    checkpoint.save(model, tmp_path / "ck", info={"latent_spread": [1.0] * 1024})
    loaded = checkpoint.load(tmp_path / "ck")
    assert isinstance(loaded, PatchModel) and loaded.config == model.config
    images = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    a = torch.randn(3, 4)
    with torch.no_grad():
        z = model.encode(images)
        torch.testing.assert_close(loaded.encode(images), z)
        torch.testing.assert_close(loaded.step(z, a), model.step(z, a))
    assert loaded.latent_spread.shape == (1024,)


def test_two_stage_training_runs_resumes_and_records_what_it_trained_on(tmp_path):
    from grasplab.world_models import checkpoint
    from grasplab.world_models.data import collect
    from grasplab.world_models.training import STATE_DIR, train

    data = tmp_path / "data"
    collect("wall", episodes=20, steps=8, seed=0, out_dir=data, action_block=2, progress=False)
    logs = []
    options = {
        "encoder_steps": 40,
        "encoder_batch": 8,
        "batch": 8,
        "window": 2,
        "eval_every": 20,
        "val_windows": 8,
        "progress": False,
        "model": {"hidden": 16},
    }
    log = lambda m, s: logs.append(m)  # noqa: E731
    first = train("patch", data, tmp_path / "ck", steps=20, log=log, **options)
    assert first["steps_done"] == 60 and (tmp_path / "ck" / STATE_DIR / "state.json").is_file()
    # rerun with more steps: resumes in stage 2 (frozen encoder, restored normalisation)
    encoder_before = checkpoint.load(tmp_path / "ck").encoder.state_dict()
    summary = train("patch", data, tmp_path / "ck", steps=40, log=log, **options)
    assert [(x["stage"], x["step"]) for x in logs] == [(1, 20), (1, 40), (2, 60), (2, 80)]
    assert logs[1]["val_recon"] < logs[0]["val_recon"]  # the autoencoder learns
    assert summary["steps_done"] == 80
    model = checkpoint.load(tmp_path / "ck")
    info = checkpoint.info(tmp_path / "ck")
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name  # frozen in stage 2
    assert isinstance(model, PatchModel) and model.action_dim == 4
    assert info["val_episodes"] == [18, 20] and info["train_episodes"] == [0, 18]
    assert info["env"] == "wall" and info["data"]["identity"]
    assert len(info["latent_spread"]) == 1024 and model.latent_spread.shape == (1024,)
    assert not any(p.requires_grad for p in model.parameters())
    images = torch.zeros((1, 64, 64, 3), dtype=torch.uint8)
    assert model.encode(images).shape == (1, 1024)
    assert summary["k1"] < 2.0 and summary["copy_k1"] > 0  # finite, scored vs the copy baseline
    with pytest.raises(ValueError, match="different run"):
        train("patch", data, tmp_path / "ck", steps=40, **{**options, "window": 3})


def test_bench_measures_speed_ratios_on_a_patch_checkpoint(tmp_path):
    import json

    from grasplab.world_models import checkpoint

    torch.manual_seed(0)
    model = PatchModel(PatchConfig(env_action_dim=2, hidden=8))
    info = {"env": "wall", "env_overrides": {}, "latent_spread": [1.0] * 1024}
    checkpoint.save(model, tmp_path / "ck", info=info)
    argv = ["--model", str(tmp_path / "ck"), "--envs", "wall", "--ratio-batch", "3"]
    argv += ["--ratio-horizon", "4", "--grasp-budgets", "1,2", "--cem-budgets", "1,2"]
    argv += ["--cem-samples", "20", "--repeats", "1", "--json", str(tmp_path / "b.json")]
    assert bench_planners.main(argv) == 0
    figures = json.loads((tmp_path / "b.json").read_text())
    # timings are measured, not asserted: a ratio of two differences of tiny timed budgets can
    # come out negative on a loaded machine (seen once at -12); only that it was computed
    assert figures["grasp_ratio"]["step_fwd_bwd_single_s"] > 0
    assert math.isfinite(figures["grasp_ratio"]["ratio"])
    assert math.isfinite(figures["cem_ratio"]["ratio"])
    assert math.isfinite(figures["cem_ratio"]["ratio_single"])
    # per-episode streams against one generator, measured in the same run (not asserted)
    assert all(math.isfinite(figures["streams_cost"][f"{k}_ratio"]) for k in ("grasp", "cem"))
    assert "table" not in figures and "batching" not in figures
    assert len(figures["machine"]["loadavg"]) == 3


def test_paired_per_iteration_uses_one_estimator_interleaved(monkeypatch):
    # a fake clock that only the runs advance: a loop with a fixed cost of 5 and 2 per iteration
    # and a floor of 3 per iteration; the estimator removes the fixed cost, and the loops take
    # turns within each repeat (so both see the same stretch of machine load)
    from grasplab.bench import planners, timing

    clock, calls = [0.0], []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def loop(n):
        calls.append(("loop", n))
        clock[0] += 5 + 2 * n

    def floor(n):
        calls.append(("floor", n))
        clock[0] += 3 * n

    per = planners.paired_per_iteration({"loop": loop, "floor": floor}, 2, 6, "cpu", repeats=2)
    assert per == {"loop": 2.0, "floor": 3.0}
    timed = calls[2:]  # after one warm-up run each
    assert timed == [("loop", 2), ("loop", 6), ("floor", 2), ("floor", 6)] * 2


def test_bench_grasp_ratio_alone_and_compiled(tmp_path, monkeypatch):
    # --ratios grasp skips CEM's ratio (minutes on the patch models); --grasp-compile times GRASP
    # with compile_losses=True. Dynamo's eager backend stands in for inductor (seconds).
    import json

    import grasplab.planners.grasp as grasp_module
    from grasplab.world_models import checkpoint

    compiled, compile_ = [], torch.compile

    def recording_compile(fn):
        compiled.append(fn)
        return compile_(fn, backend="eager")

    monkeypatch.setattr(grasp_module.torch, "compile", recording_compile)
    torch.manual_seed(0)
    model = PatchModel(PatchConfig(env_action_dim=2, hidden=8))
    info = {"env": "wall", "env_overrides": {}, "latent_spread": [1.0] * 1024}
    checkpoint.save(model, tmp_path / "ck", info=info)
    argv = ["--model", str(tmp_path / "ck"), "--envs", "wall", "--ratio-batch", "3"]
    argv += ["--ratio-horizon", "4", "--grasp-budgets", "1,2", "--repeats", "1"]
    argv += ["--ratios", "grasp", "--json", str(tmp_path / "b.json")]
    assert bench_planners.main(argv) == 0
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["grasp_ratio"]["step_fwd_bwd_single_s"] > 0 and "cem_ratio" not in figures
    assert compiled == []
    assert bench_planners.main([*argv, "--grasp-compile"]) == 0
    assert compiled and all(fn is grasp_module._scaled_lifted_losses for fn in compiled)
    with pytest.raises(SystemExit):
        bench_planners.parse(["--ratios", "grasp,ddp"])


def test_residual_decoder_starts_from_the_background_and_survives_a_checkpoint(tmp_path):
    from grasplab.world_models import checkpoint

    torch.manual_seed(0)
    model = PatchModel(PatchConfig(env_action_dim=2, residual_decoder=True, decoder_width=8))
    assert model.config.decoder_width == 8
    background = torch.rand(64, 64, 3) * 0.9 + 0.05
    model.set_background(background)
    z = torch.randn(2, 5, 1024)
    assert model.decode(z).shape == (2, 5, 64, 64, 3)
    last = model.decoder.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # a zero residual: the decoded image is the background
    torch.testing.assert_close(model.decode(z[0]), background.expand(5, 64, 64, 3))
    torch.nn.init.normal_(last.weight, std=0.1)
    checkpoint.save(model, tmp_path / "ck", info={"latent_spread": [1.0] * 1024})
    loaded = checkpoint.load(tmp_path / "ck")
    torch.testing.assert_close(loaded.background, background)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z), model.decode(z))
    with pytest.raises(ValueError, match="no residual decoder"):
        PatchModel(PatchConfig(env_action_dim=2)).set_background(background)


def test_old_checkpoints_have_no_background_and_decode_as_before():
    from grasplab.world_models import checkpoint
    from grasplab.world_models.checkpoint import CHECKPOINTS

    model = checkpoint.load(CHECKPOINTS / "pusht-patch-b1")
    assert not model.config.residual_decoder and "background" not in model.state_dict()
    torch.manual_seed(0)
    z = torch.randn(3, 1024)
    raw = z.view(3, 64, 16) * model.latent_scale + model.latent_loc
    with torch.no_grad():
        before = torch.sigmoid(model.decoder(raw)).permute(0, 2, 3, 1)  # the decode of before
        torch.testing.assert_close(model.decode(z), before, rtol=0, atol=0)


def test_soft_foreground_weight_follows_the_distance_from_the_background():
    from grasplab.world_models.training.patch import PatchTrainConfig, recon_loss

    torch.manual_seed(0)
    model = PatchModel(PatchConfig(env_action_dim=2))
    bg = torch.zeros(64, 64, 3)
    images = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    images[:, :8, :8] = 255  # a white square on black: fg = 1 there, 0 elsewhere
    with torch.no_grad():
        mask = recon_loss(model, images, bg, 10.0, "mask")
        soft = recon_loss(model, images, bg, 10.0, "soft")
        torch.testing.assert_close(soft, mask)  # 0/1 distances: both weightings agree
        images[:, :8, :8] = 128  # half-way: the soft weight halves, the mask does not
        assert float(recon_loss(model, images, bg, 10.0, "soft")) != pytest.approx(
            float(recon_loss(model, images, bg, 10.0, "mask"))
        )
    with pytest.raises(ValueError, match="foreground"):
        PatchTrainConfig(foreground="colour")
