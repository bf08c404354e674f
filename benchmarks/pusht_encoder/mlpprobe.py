"""A nonlinear (MLP) state probe on frozen latents: a measurement only (the encoder is not touched).

Fitted on frames of episodes 0-809, scored on 2,000 frames of 810-899 (the same frames for
every encoder: seed 0). Targets (agent xy, block xy, sin, cos) standardised; 1024-256-256-6 GELU
MLP, AdamW lr 1e-3 cosine, wd 1e-4, 3000 steps of 256.
"""

import math

import torch

from grasplab.bench.quality_pusht import (
    _frames,
    from_targets,
    state_errors,
    targets,
)


def frames(data, fit=16000, held=2000, seed=0):
    """Fitting frames of 0-809 and held-out frames of 810-899, with their states."""
    g = torch.Generator().manual_seed(seed)
    fi, fs = _frames(data, range(0, 810), fit, g)
    hi, hs = _frames(data, range(810, 900), held, g)
    return fi, fs, hi, hs


def mlp_probe(encode, fr, steps=3000, seed=0):
    """Held-out errors of an MLP fitted on ``encode``'s latents of ``fr``."""
    fi, fs, hi, hs = fr
    with torch.no_grad():
        zf = torch.cat([encode(fi[i : i + 512]) for i in range(0, len(fi), 512)]).float()
        zh = torch.cat([encode(hi[i : i + 512]) for i in range(0, len(hi), 512)]).float()
    mu, sd = zf.mean(0), zf.std(0).clamp_min(1e-3)
    zf, zh = (zf - mu) / sd, (zh - mu) / sd
    y = targets(fs).float()
    ym, ys = y.mean(0), y.std(0)
    y = (y - ym) / ys
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(zf.shape[1], 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 6),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for s in range(steps):
        for gr in opt.param_groups:
            gr["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * s / steps))
        i = torch.randint(len(zf), (256,), generator=g)
        loss = (net(zf[i]) - y[i]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = from_targets(net(zh) * ys + ym)
    return {k: round(float(v.mean()), 3) for k, v in state_errors(pred, hs).items()}
