"""MLP probe of avg-pooled pixels (a lossy oracle) and of the shipped pusht-patch-b1."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mlpprobe import frames, mlp_probe

from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS
from grasplab.world_models.data import load_episodes
from grasplab.world_models.training import background

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
fr = frames(data)
bg = background(data.images[0:900, 0])


def pix(o):
    """16 x 16 x 3 average-pooled difference from the background."""
    return torch.nn.functional.avg_pool2d((o.float() / 255 - bg).permute(0, 3, 1, 2), 4).flatten(1)


print("pixels16x16x3", json.dumps(mlp_probe(pix, fr)), flush=True)
m = checkpoint.load(CHECKPOINTS / "pusht-patch-b1")
print("b1", json.dumps(mlp_probe(m.encode, fr)), flush=True)
