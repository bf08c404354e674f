"""The ``Simulator`` protocol: execute plans in a REAL simulator, N episodes in lockstep.

Where :class:`grasplab.envs.Env` is a differentiable torch model of an environment, a
``Simulator`` is the environment itself (MuJoCo, pymunk, ...): it is judged, never
differentiated. It holds ``N`` live simulators, one per episode, and is driven in lockstep:

- ``reset_to(states (N, S))`` puts simulator ``i`` in state ``i`` and returns its observation;
- ``step(actions (N, A))`` advances every live simulator by one env step;
- ``render(states (N, S))`` draws states without touching the live simulators;
- ``success`` / ``distance`` judge states against goals (pure functions of the arrays);
- ``execute(start, goal, actions (N, T, k * A))`` does all of it for a chunk of episodes in one
  call, the way :func:`grasplab.eval.runner.execute` does for a torch ``Env``.

Arrays are ``numpy.ndarray`` or ``torch.Tensor``; every method returns the kind it was given
(tensors on the input's device; floating results in the input's dtype). States, goals and
actions are in the simulator's own units. A plan runs its full length: a simulator ignores the
underlying env's ``terminated`` / ``truncated`` flags.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch

Array: TypeAlias = np.ndarray | torch.Tensor
"""A numpy array or a torch tensor (results follow the input's kind, device and dtype)."""


class Execution(NamedTuple):
    """Plans executed in a real simulator (``T_env = T * action_block`` env steps).

    Attributes:
        distances: Goal distance after every env step ``(N, T_env)`` (see
            :meth:`Simulator.distance`).
        states: Visited states ``(N, T_env + 1, S)``, the state after the reset first.
        success: Success judged after every env step ``(N, T_env)`` bool (see
            :meth:`Simulator.success`).
    """

    distances: Array
    states: Array
    success: Array


@runtime_checkable
class Simulator(Protocol):
    """A real simulator executing ``N`` episodes in lockstep.

    Attributes:
        name: Registry name.
        state_dim: ``S``.
        action_dim: ``A`` (one env step).
        action_low: Lower action bounds ``(A,)`` float64.
        action_high: Upper action bounds ``(A,)`` float64.
        action_block: ``k``, env steps per model step: :meth:`execute` takes actions
            ``(N, T, k * A)`` and runs ``T * k`` env steps.
        image_size: Side of the square RGB images of :meth:`reset_to` and :meth:`render`.
    """

    name: str
    state_dim: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    action_block: int
    image_size: int

    def reset_to(self, states: Array) -> Array:
        """Put live simulator ``i`` in ``states[i]`` (``(N, S)``); there are now ``N``.

        Returns:
            Their observations, RGB images ``(N, image_size, image_size, 3)`` uint8.

        Raises:
            ValueError: On a shape other than ``(N, S)`` with ``N >= 1``, or non-finite states.
        """
        ...

    def step(self, actions: Array) -> Array:
        """Advance every live simulator one env step with ``actions (N, A)``.

        Returns:
            The new states ``(N, S)``.

        Raises:
            ValueError: Before any ``reset_to``, on a batch other than the live ``N``, a
                shape other than ``(N, A)``, or actions outside the bounds or non-finite.
        """
        ...

    def render(self, states: Array) -> Array:
        """RGB images ``(N, image_size, image_size, 3)`` uint8 of ``states (N, S)``.

        The live simulators are left as they are.
        """
        ...

    def distance(self, states: Array, goals: Array) -> Array:
        """Goal distance ``(...)`` of ``states`` and ``goals`` ``(..., S)``, env units."""
        ...

    def success(self, states: Array, goals: Array) -> Array:
        """Whether ``states`` reach ``goals`` (``(..., S)`` each), bool ``(...)``."""
        ...

    def execute(self, start: Array, goal: Array, actions: Array) -> Execution:
        """Run plans ``actions (N, T, k * A)`` from ``start (N, S)``, judged against ``goal``.

        Equivalent to ``reset_to(start)`` then ``T * k`` calls of ``step``, without rendering;
        afterwards the live simulators hold the final states, so ``step`` continues from them.
        Episode ``i`` does not depend on the other episodes of the batch.

        Raises:
            ValueError: On mismatched shapes or actions outside the bounds.
        """
        ...

    def close(self) -> None:
        """Release the simulators (worker processes, rendering contexts)."""
        ...


def numpy(x: Array, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``x`` as a numpy array of ``dtype`` (a copy only where needed).

    Raises:
        ValueError: When ``x`` is not numeric.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__}") from err


def like(y: np.ndarray, ref: Array) -> Array:
    """``y`` as the kind of ``ref``: numpy, or a tensor on its device (floats in its dtype)."""
    if not isinstance(ref, torch.Tensor):
        return y
    t = torch.from_numpy(np.ascontiguousarray(y))
    if t.is_floating_point() and ref.is_floating_point():
        t = t.to(ref.dtype)
    return t.to(ref.device)


def check_states(states: np.ndarray, state_dim: int, name: str) -> None:
    """Raise ``ValueError`` unless ``states`` is ``(N, state_dim)``, ``N >= 1``, finite."""
    if states.ndim != 2 or states.shape[0] < 1 or states.shape[1] != state_dim:
        raise ValueError(f"{name}: expected shape (N, {state_dim}) with N >= 1, got {states.shape}")
    if not np.isfinite(states).all():
        raise ValueError(f"{name}: states must be finite")


def check_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray, name: str) -> np.ndarray:
    """Actions ``(..., A)`` clipped into ``[low, high]``; ``ValueError`` when outside.

    A rounding slack of ``1e-6 * (high - low)`` is tolerated (float32 plans of float64 bounds).
    """
    if actions.ndim < 1 or actions.shape[-1] != low.shape[0]:
        raise ValueError(f"{name}: expected actions (..., {low.shape[0]}), got {actions.shape}")
    if not np.isfinite(actions).all():
        raise ValueError(f"{name}: actions must be finite")
    slack = 1e-6 * (high - low)
    outside = (actions < low - slack) | (actions > high + slack)
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"{name}: action {actions[index]:.6g} at index {index} lies outside the bounds "
            f"[{low[index[-1]]:.6g}, {high[index[-1]]:.6g}]"
        )
    return np.clip(actions, low, high)


def episode_success(success: Array, rule: str) -> Array:
    """Success per episode ``(N,)`` from per-step success ``(N, T)`` under a protocol rule.

    Args:
        success: :attr:`Execution.success`.
        rule: ``ever`` (at any step, the paper's rule) or ``final`` (after the last step).
    """
    if rule not in ("ever", "final"):
        raise ValueError(f"rule: must be 'ever' or 'final', got {rule!r}")
    if rule == "ever":
        return success.any(1) if isinstance(success, torch.Tensor) else success.any(axis=1)
    return success[:, -1]
