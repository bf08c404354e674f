"""``python -m grasplab.world_models.training`` is gone: ``grasplab train`` trains (one line)."""

from __future__ import annotations

import sys

MESSAGE = (
    "python -m grasplab.world_models.training is gone; train with: grasplab train "
    "world_model=<mlp|pixel|patch> env=ENV data.dir=DIR train.out=DIR [train.steps=N ...] "
    "(grasplab train --help)"
)

if __name__ == "__main__":
    print(MESSAGE, file=sys.stderr)
    sys.exit(2)
