"""grasplab.malloc: glibc keeps freed tensor memory for reuse (fewer page faults)."""

import platform
import sys

import pytest

from grasplab import malloc

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_keep_freed_memory_is_accepted_by_glibc_once(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.delenv("GRASPLAB_MALLOC", raising=False)
    assert malloc.keep_freed_memory() is True
    assert malloc.keep_freed_memory() is True  # cached: applied once per process


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.setenv("GRASPLAB_MALLOC", "system")
    assert malloc.keep_freed_memory() is False


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not glibc, reason="malloc_trim is glibc's")
def test_release_free_memory_gives_freed_heap_pages_back(monkeypatch):
    import ctypes

    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.delenv("GRASPLAB_MALLOC", raising=False)
    malloc.keep_freed_memory()  # the worst case: glibc keeps up to 512 MB of freed heap
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # 160 MB of small heap blocks
    for block in blocks:
        libc.memset(block, 1, 4096)  # touched: resident
    keep = blocks.pop()  # the heap's top stays in use: freeing alone returns nothing
    for block in blocks:
        libc.free(block)
    held = _rss()
    assert malloc.release_free_memory() is True
    assert held - _rss() > 100 * 2**20
    libc.free(keep)


def test_release_free_memory_is_a_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert malloc.release_free_memory() is False
    monkeypatch.setattr(malloc, "_applied", None)
    monkeypatch.delenv("GRASPLAB_MALLOC", raising=False)
    assert malloc.keep_freed_memory() is False
