"""Ridge and MLP state probes and the decoded-foreground IoU of shipped patch checkpoints.

The same frames as ``stage1.py`` (ridge: 8,000 fitting frames of episodes 0-809, 2,000 held-out
of 810-899, seed 0) and ``mlpprobe.py`` (16,000 / 2,000), IoU as in ``iou.py`` (256 frames).
Usage: ``python checkpoint_probes.py pusht-patch-b1 pusht-patchres-b1``.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mlpprobe import frames, mlp_probe  # noqa: E402

from grasplab.bench.quality_pusht import fit_state_probe  # noqa: E402
from grasplab.world_models import checkpoint  # noqa: E402
from grasplab.world_models.checkpoint import CHECKPOINTS  # noqa: E402
from grasplab.world_models.data import load_episodes  # noqa: E402
from grasplab.world_models.training import background  # noqa: E402

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
bg = background(data.images[0:900, 0])
g = torch.Generator().manual_seed(5)
ep = 810 + torch.randint(90, (256,), generator=g)
t = torch.randint(101, (256,), generator=g)
iou_frames = data.images[ep, t]
fr = frames(data)


def iou(m, thr):
    """Mean IoU of the true and the decoded foreground (> ``thr`` off the background)."""
    with torch.no_grad():
        rec = m.decode(m.encode(iou_frames))
    a = (iou_frames.float() / 255 - bg).abs().amax(-1) > thr
    b = (rec - bg).abs().amax(-1) > thr
    return round(float(((a & b).sum((1, 2)).float() / (a | b).sum((1, 2)).clamp_min(1)).mean()), 3)


for name in sys.argv[1:]:
    m = checkpoint.load(CHECKPOINTS / name)
    ridge = fit_state_probe(m, data, range(0, 810), range(810, 900), count=8000)
    res = {
        "name": name,
        "ridge": {k: round(v, 3) for k, v in ridge.heldout.items()},
        "ridge_penalty": ridge.penalty,
        "mlp": mlp_probe(m.encode, fr),
        "iou": [iou(m, thr) for thr in (0.1, 0.15, 0.25)],
    }
    print(json.dumps(res), flush=True)
