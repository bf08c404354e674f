"""k-step latent MSE of patch checkpoints on their held-out episodes, beside no motion.

Usage: python kstep_cmp.py DATA_DIR OUT.json CHECKPOINT [CHECKPOINT ...]
(here: /work/data/wall-b1, the wall dataset of RECIPE.md section 4, episodes 900-999 held out).
"""

import json
import sys

import torch

from grasplab.bench.quality import kstep_errors
from grasplab.world_models import checkpoint
from grasplab.world_models.data import load_episodes

KS = (1, 5, 20, 40, 60, 80)


def main(data_dir: str, out: str, paths: list[str]) -> None:
    """Print and write the k-step errors of every checkpoint in ``paths``."""
    torch.set_num_threads(1)
    data = load_episodes(data_dir, images=True)
    results = {}
    for path in paths:
        model, meta = checkpoint.load(path), checkpoint.info(path)
        with torch.no_grad():
            r = kstep_errors(model, data, range(*meta["val_episodes"]), KS)
        results[path] = r
        mse = [round(x, 4) for x in r["latent_mse"]]
        still = [round(x, 4) for x in r["latent_mse_no_motion"]]
        print(path, "k =", KS, "mse", mse, "no motion", still, flush=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
