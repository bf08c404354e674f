"""A linear world model ``z' = A z + B a`` with closed-form answers, for tests."""

from __future__ import annotations

import torch
from torch import Tensor

from grasplab.world_models.base import check_step_inputs


class LinearModel:
    """Linear dynamics ``z' = A z + B a``; ``encode`` is the identity.

    Args:
        A: State matrix ``(D, D)``.
        B: Input matrix ``(D, A)``.
    """

    def __init__(self, A: Tensor, B: Tensor) -> None:  # noqa: N803 - the field's names
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square (D, D), got {tuple(A.shape)}")
        if B.dim() != 2 or B.shape[0] != A.shape[0]:
            raise ValueError(f"B must be (D, A) with D={A.shape[0]}, got {tuple(B.shape)}")
        self.A = A
        self.B = B
        self.state_dim = int(A.shape[0])
        self.action_dim = int(B.shape[1])

    def encode(self, obs: Tensor) -> Tensor:
        """Identity: observations already are ``(..., D)`` states."""
        if obs.shape[-1] != self.state_dim:
            raise ValueError(f"obs has last dim {obs.shape[-1]}, expected {self.state_dim}")
        return obs

    def step(self, z: Tensor, a: Tensor) -> Tensor:
        """``(..., D), (..., A) -> (..., D)``."""
        check_step_inputs(self, z, a)
        return z @ self.A.to(z).T + a @ self.B.to(z).T

    def controllability_rank(self, horizon: int) -> int:
        """Rank of ``[B, AB, ..., A^{H-1} B]``; ``D`` means every goal is reachable in ``H``."""
        blocks, M = [], self.B
        for _ in range(horizon):
            blocks.append(M)
            M = self.A @ M
        return int(torch.linalg.matrix_rank(torch.cat(blocks, dim=1)))
