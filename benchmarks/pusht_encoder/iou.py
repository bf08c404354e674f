"""Decoded-foreground IoU (pixels > 0.1 / 0.15 / 0.25 off the background) of b1 and runs."""

import json
import sys

import torch
from safetensors.torch import load_file

from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS
from grasplab.world_models.data import load_episodes
from grasplab.world_models.patch import PatchModel
from grasplab.world_models.training import background

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
bg = background(data.images[0:900, 0])
g = torch.Generator().manual_seed(5)
ep = 810 + torch.randint(90, (256,), generator=g)
t = torch.randint(101, (256,), generator=g)
frames = data.images[ep, t]


def iou(m, thr=0.15):
    """Mean IoU of the true and the decoded foreground of ``frames``."""
    with torch.no_grad():
        rec = m.decode(m.encode(frames))
    true = frames.float() / 255
    a = (true - bg).abs().amax(-1) > thr
    b = (rec - bg).abs().amax(-1) > thr
    return float(((a & b).sum((1, 2)).float() / (a | b).sum((1, 2)).clamp_min(1)).mean())


models = {"b1": checkpoint.load(CHECKPOINTS / "pusht-patch-b1")}
for name in sys.argv[1:]:
    cfg = json.load(open(f"/work/enc-runs/{name}/config.json"))
    m = PatchModel.from_config_dict(cfg)
    m.load_state_dict(load_file(f"/work/enc-runs/{name}/model.safetensors"))
    models[name] = m
for k, m in models.items():
    print(k, [round(iou(m, thr), 3) for thr in (0.1, 0.15, 0.25)])
