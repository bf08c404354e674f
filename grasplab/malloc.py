"""Keep freed tensor memory in the process (glibc's allocator), instead of unmapping it.

On Linux, PyTorch's CPU tensors come from glibc's ``malloc``. By default glibc serves a block
larger than its mmap threshold (128 KiB at start, raised adaptively) with a fresh ``mmap`` and
returns it to the kernel on ``free``; the next tensor of that size then touches fresh pages, one
page fault per 4 KiB. A planner iteration on a 1,024-d patch model (50 problems x 50 steps)
creates and frees many ~10 MB tensors; its benchmark process measured ~13-19 million minor page
faults against ~0.3-0.7 million with the setting below, and GRASP's iteration on `wall-patch-b1`
took 22-26% less time (BENCHMARKS section 7). Raising the mmap threshold to glibc's maximum (32 MiB)
and the trim threshold keeps such blocks in the heap for reuse.

The cost is memory held by the process: up to ``TRIM_THRESHOLD`` of freed heap is kept rather
than returned to the system. ``GRASPLAB_MALLOC=system`` leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 512 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the setting once per process; True when glibc accepted it.

    A no-op (False) off Linux/glibc, or with ``GRASPLAB_MALLOC=system``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("GRASPLAB_MALLOC") == "system":
        return False
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    _applied = (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    return _applied


def release_free_memory() -> bool:
    """Give the free pages of every glibc heap arena back to the system (``malloc_trim(0)``).

    Freed memory in the middle of an arena stays resident until the arena's top is freed or
    this is called; a long-lived coordinating process (the sweep driver, between two Tune
    experiments of a stage) calls it after freeing many objects at once. Milliseconds; True
    when some memory was released, False off glibc.
    """
    trim = _glibc("malloc_trim", [ctypes.c_size_t])
    return trim is not None and trim(0) == 1


def _glibc(function: str, argtypes: list[Any]) -> Any:
    """The C library function ``function`` (int result) via ctypes; None off Linux, or absent."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        found = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):  # musl and other libcs have no mallopt / malloc_trim
        return None
    found.argtypes, found.restype = argtypes, ctypes.c_int
    return found
