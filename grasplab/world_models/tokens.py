"""Structured latents (DINO-WM's patch tokens ``(P, C)``) presented as flat vectors to planners.

A world model may declare ``state_shape`` (e.g. ``(P, C)``: ``P`` patch tokens of ``C`` channels)
and then ``encode`` to ``(..., *state_shape)`` and ``step`` on ``(..., *state_shape)``. Planners
only know flat latents ``(..., D)``: :func:`as_flat` wraps such a model in :class:`FlatLatents`,
which reshapes at the model boundary (``D = prod(state_shape)``), so every planner runs on it
unchanged. The model's optional ``cost(z, goal)`` (e.g. MSE over patches, or a cosine distance
per patch) receives the structured shape too.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from grasplab.world_models.base import WorldModel


class FlatLatents:
    """A structured-latent model seen through flat latents ``(..., D)``, ``D = prod(state_shape)``.

    Args:
        model: Declares ``state_shape`` (a tuple of ints) and ``action_dim``; its ``encode``
            returns ``(..., *state_shape)``, its ``step`` maps ``(..., *state_shape), (..., A)``
            to ``(..., *state_shape)`` and its optional ``cost`` maps two structured latents to
            ``(...)``. Other attributes (``observation``, ``device``, ...) are the model's.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.state_shape = tuple(int(n) for n in model.state_shape)
        self.state_dim = math.prod(self.state_shape)
        self.action_dim = int(model.action_dim)
        if callable(getattr(model, "cost", None)):
            self.cost = self._cost

    def __getattr__(self, name: str) -> Any:
        if name == "model":  # not set yet (during unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.model, name)

    def unflatten(self, z: Tensor) -> Tensor:
        """``(..., D) -> (..., *state_shape)``."""
        if z.shape[-1] != self.state_dim:
            raise ValueError(f"latent has last dim {z.shape[-1]}, expected D={self.state_dim}")
        return z.reshape(*z.shape[:-1], *self.state_shape)

    def flatten(self, z: Tensor) -> Tensor:
        """``(..., *state_shape) -> (..., D)``."""
        n = len(self.state_shape)
        if tuple(z.shape[z.dim() - n :]) != self.state_shape:
            raise ValueError(
                f"latent {tuple(z.shape)} does not end in state_shape {self.state_shape}"
            )
        return z.reshape(*z.shape[: z.dim() - n], self.state_dim)

    def encode(self, obs: Tensor) -> Tensor:
        """Observations ``(..., *obs_shape)`` -> flat latents ``(..., D)``."""
        return self.flatten(self.model.encode(obs))

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """One model step on flat latents ``(..., D), (..., A) -> (..., D)``."""
        return self.flatten(self.model.step(self.unflatten(z), a))

    def _cost(self, z: Tensor, goal: Tensor) -> Tensor:
        """The model's cost on flat latents ``(..., D), (..., D) -> (...)`` (broadcasting)."""
        return self.model.cost(self.unflatten(z), self.unflatten(goal))


def as_flat(model: Any) -> WorldModel:
    """``model`` itself when its latents are flat, else a :class:`FlatLatents` view of it.

    A model is structured when it declares a ``state_shape`` of more than one dimension; a
    one-dimensional ``state_shape (D,)`` without ``state_dim`` gets ``state_dim = D``.
    """
    shape = getattr(model, "state_shape", None)
    if shape is None or isinstance(model, FlatLatents):
        return model
    if len(tuple(shape)) == 1 and getattr(model, "state_dim", None) == int(tuple(shape)[0]):
        return model
    return FlatLatents(model)
