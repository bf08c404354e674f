"""Ridge + MLP probes of a stage-1 run saved by stage1.py (or a checkpoint dir)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from mlpprobe import frames, mlp_probe

from grasplab.world_models.data import load_episodes
from grasplab.world_models.patch import PatchModel

torch.set_num_threads(1)
data = load_episodes("/work/data/pusht-pusher", images=True)
fr = frames(data)
for name in sys.argv[1:]:
    cfg = json.load(open(f"/work/enc-runs/{name}/config.json"))
    m = PatchModel.from_config_dict(cfg)
    m.load_state_dict(load_file(f"/work/enc-runs/{name}/model.safetensors"))
    res = {"name": name, "mlp_probe": mlp_probe(m.encode, fr)}
    print(json.dumps(res), flush=True)
    with open("/work/enc-runs/mlp_results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
