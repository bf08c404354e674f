"""The decoded position read-out (``grasplab.bench.decoded_probe``) on the shipped patch models."""

from __future__ import annotations

import pytest
import torch

from grasplab.bench.decoded_probe import DecodedPositionProbe, decodes_images, fit_decoded_probe
from grasplab.bench.long_horizon import position_readout
from grasplab.envs import make
from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS

torch.set_num_threads(1)

CASES = {
    # env: (layout, tolerance on true renders in env units; success radius 4.5 / 0.5)
    "wall": ({}, 3.0),
    "pointmaze": ({"layout": "medium"}, 0.2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request: pytest.FixtureRequest) -> tuple[str, object, object, DecodedPositionProbe]:
    name = request.param
    model = checkpoint.load(CHECKPOINTS / f"{name}-patch-b1")
    env = make(name, **CASES[name][0])
    return name, model, env, fit_decoded_probe(model, env, count=256, heldout=128, seed=3)


def test_reads_true_renders_within_tolerance(fitted) -> None:
    name, model, env, probe = fitted
    tolerance = CASES[name][1]
    assert probe.heldout_error < tolerance
    assert probe.r2 > 0.9
    states = env.reset(torch.Generator().manual_seed(11), 64)  # not the fitting states
    with torch.no_grad():
        z = model.encode(env.render(states))
    error = (probe(z) - states[:, :2]).norm(dim=-1)
    assert error.mean() < tolerance
    assert torch.isfinite(error).all()


def test_wrong_position_reads_differently(fitted) -> None:
    name, model, env, probe = fitted
    tolerance = CASES[name][1]
    pool = env.reset(torch.Generator().manual_seed(5), 32)
    far = torch.cdist(pool[:, :2], pool[:, :2])
    i, j = divmod(int(far.argmax()), len(pool))  # the two free states farthest apart
    states = pool[[i, j]]
    with torch.no_grad():
        read = probe(model.encode(env.render(states)))
    truth = states[:, :2].to(read)
    assert (read - truth).norm(dim=-1).max() < 2 * tolerance
    # each image reads near its own position, far from the other one's
    assert (read[0] - truth[1]).norm() > 5 * tolerance
    assert (read[1] - truth[0]).norm() > 5 * tolerance
    # the same image with its agent moved reads the move
    moved = states[:1].clone()
    moved[0, :2] = states[1, :2]
    with torch.no_grad():
        again = probe(model.encode(env.render(moved)))
    assert (again[0] - read[1]).norm() < 2 * tolerance


@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_batched_shapes_and_no_mutation(fitted, lead: tuple[int, ...]) -> None:
    _, model, env, probe = fitted
    n = max(1, int(torch.tensor(lead).prod()) if lead else 1)
    with torch.no_grad():
        z = model.encode(env.render(env.reset(torch.Generator().manual_seed(7), n)))
    z = z.reshape(*lead, z.shape[-1]) if lead else z[0]
    before = z.clone()
    out = probe(z)
    assert out.shape == (*lead, 2)
    assert torch.equal(z, before)
    flat = probe(z.reshape(-1, z.shape[-1]))
    torch.testing.assert_close(out.reshape(-1, 2), flat)
    assert probe.summary()["kind"] == "decoded"


def test_readout_choice_by_decoder() -> None:
    env = make("wall")
    one = env.render(env.reset(torch.Generator().manual_seed(0), 1))
    patch = checkpoint.load(CHECKPOINTS / "wall-patch-b1")
    keypoint = checkpoint.load(CHECKPOINTS / "wall-pixel-b1")
    assert decodes_images(patch, one)
    assert not decodes_images(keypoint, one)  # its decode returns heatmaps
    with pytest.raises(ValueError, match="decode returns images"):
        position_readout("decoded", keypoint, env, 0)
