"""Moved to :mod:`grasplab.world_models.training.patch` (``_frames`` is now ``sample_frames``)."""

from __future__ import annotations

from grasplab.moved import moved_module

__getattr__ = moved_module(
    __name__, "grasplab.world_models.training.patch", {"_frames": "sample_frames"}
)
