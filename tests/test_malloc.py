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
