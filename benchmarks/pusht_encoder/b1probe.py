"""Ridge state probe of the shipped pusht-patch-b1 on the frames stage1.py probes."""

import json

import torch

from grasplab.bench.quality_pusht import fit_state_probe
from grasplab.world_models import checkpoint
from grasplab.world_models.checkpoint import CHECKPOINTS
from grasplab.world_models.data import load_episodes

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
m = checkpoint.load(CHECKPOINTS / "pusht-patch-b1")
p = fit_state_probe(m, data, range(0, 810), range(810, 900), count=8000)
print(json.dumps({"name": "b1-shipped", "probe": p.heldout, "penalty": p.penalty}))
val = data.images[810:900:9, ::10].reshape(-1, 64, 64, 3)[:60]
with torch.no_grad():
    rec = m.decode(m.encode(val[:8]))
    print("old decode sha-ish", float(rec.sum()))
