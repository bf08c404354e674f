"""Small timing helpers for benchmarks (never for timed tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def wall_times(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu"
) -> list[float]:
    """Wall times of ``repeats`` runs of ``fn()`` (seconds) after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median_time(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu"
) -> float:
    """Median wall time of ``fn()`` in seconds."""
    return statistics.median(wall_times(fn, repeats, warmup, device))


def best_time(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu"
) -> float:
    """Fastest wall time of ``fn()`` in seconds.

    Robust to other load on a shared machine: interference only ever adds time.
    """
    return min(wall_times(fn, repeats, warmup, device))
