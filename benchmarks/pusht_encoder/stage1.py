"""Stage-1-only experiment: train the PatchModel autoencoder on episodes 0-809, probe on 810-899."""

import json
import math
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from grasplab.bench.quality_pusht import fit_state_probe
from grasplab.world_models.data import load_episodes
from grasplab.world_models.patch import freeze_encoder
from grasplab.world_models.patch_training import PatchTrainConfig, _frames, build_model, recon_loss
from grasplab.world_models.training import background

torch.set_num_threads(1)
args = json.loads(sys.argv[1])
name = args.pop("name")
steps = args.pop("steps")
lr = args.pop("lr", 1e-3)
batch = args.pop("batch", 32)
fgw = args.pop("foreground_weight", 100.0)
mode = args.pop("foreground", "mask")
model_over = args.pop("model", {})
assert not args, args
out = Path("/work/enc-runs") / name
out.mkdir(parents=True, exist_ok=True)
data = globals().get("DATA") or load_episodes("/work/data/pusht-pusher", images=True)
train_eps = range(0, 810)
torch.manual_seed(0)
model = build_model(PatchTrainConfig(model=model_over), data.manifest, 1)
bg = background(data.images[0:900, 0])
if model.config.residual_decoder:
    model.set_background(bg)
opt = torch.optim.AdamW([*model.encoder.parameters(), *model.decoder.parameters()], lr=lr)
g = torch.Generator().manual_seed(0)
val = data.images[810:900:9, ::10].reshape(-1, 64, 64, 3)[:60]
t0 = time.process_time()
w0 = time.time()
log = []
for step in range(steps):
    for grp in opt.param_groups:
        grp["lr"] = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
    loss = recon_loss(model, _frames(data, train_eps, batch, g), bg, fgw, mode)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for gr in opt.param_groups for p in gr["params"]], 1.0)
    opt.step()
    if (step + 1) % 250 == 0:
        with torch.no_grad():
            v = float(recon_loss(model, val, bg, fgw, mode))
        print(
            f"{step + 1} loss {float(loss):.4f} val {v:.4f} "
            f"cpu {time.process_time() - t0:.0f}s wall {time.time() - w0:.0f}s",
            flush=True,
        )
cpu, wall = time.process_time() - t0, time.time() - w0
freeze_encoder(model)
with torch.no_grad():
    gg = torch.Generator().manual_seed(1)
    fr = data.images[
        torch.randint(810, (512,), generator=gg), torch.randint(101, (512,), generator=gg)
    ]
    model.set_latent_normalization(
        torch.cat([model.features(fr[i : i + 64]) for i in range(0, 512, 64)])
    )
    probe = fit_state_probe(model, data, range(0, 810), range(810, 900), count=8000)
    rec = model.decode(model.encode(val[:8]))


def row(a):
    """Frames side by side."""
    return torch.cat(list(a), 1)


img = torch.cat([row(val[:8].float() / 255), row(rec)], 0)
Image.fromarray((img * 255).byte().numpy()).resize((8 * 64 * 3, 2 * 64 * 3), Image.NEAREST).save(
    f"/tmp/enc-{name}.png"
)
res = {
    "name": name,
    "steps": steps,
    "lr": lr,
    "batch": batch,
    "foreground_weight": fgw,
    "foreground": mode,
    "model": model_over,
    "cpu_s": round(cpu),
    "wall_s": round(wall),
    "probe": probe.heldout,
    "penalty": probe.penalty,
}
print(json.dumps(res), flush=True)
with open("/work/enc-runs/results.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
save_file(dict(model.state_dict()), out / "model.safetensors")
json.dump(model.config_dict(), open(out / "config.json", "w"))
