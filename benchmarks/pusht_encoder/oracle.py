"""How well can a ridge probe read the state from a pixel-level 1,024-d code (no learning)?"""

import json

import torch

from grasplab.bench.quality_pusht import fit_state_probe
from grasplab.world_models.data import load_episodes
from grasplab.world_models.training import background

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
bg = background(data.images[0:900, 0])


class Pix(torch.nn.Module):
    """A fixed pixel code: 32x32 grey or 16x16x3 pooled difference from the background."""

    state_dim = 1024

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def encode(self, obs):
        """Frames -> codes (+ tiny noise: constant pixels make the ridge singular)."""
        x = obs.float() / 255 - bg  # (N, 64, 64, 3)
        x = x.permute(0, 3, 1, 2)
        if self.pool == "grey32":
            x = torch.nn.functional.avg_pool2d(x.abs().sum(1, keepdim=True), 2)  # 32x32 = 1024
        else:
            x = torch.nn.functional.avg_pool2d(x, 4)  # 16x16x3 = 768
        x = x.flatten(1)
        return x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(len(x)))


for pool in ["grey32", "rgb16"]:
    p = fit_state_probe(Pix(pool), data, range(0, 810), range(810, 900), count=8000)
    print(pool, json.dumps(p.heldout), p.penalty, flush=True)
