"""Giving freed memory back between a tiled step's phases (nst/allocator.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nst import allocator

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process (the heap's state is the test's own): freeing a 16 MiB tensor raises glibc's
# mmap threshold to 16 MiB, so the next 1 MiB tensors come from the heap; all but the last are freed
# (the last pins the heap's top, so glibc's own trimming of the top cannot return them); the resident
# memory then stays until release_freed gives the free blocks back.
_SCRIPT = """
import json, os, torch
from nst.allocator import release_freed

def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

big = torch.ones(4 * 1024 * 1024)
del big
blocks = [torch.ones(256 * 1024) for _ in range(300)]
del blocks[:-1]
held = rss()
done = release_freed(torch.device("cpu"))
print(json.dumps({"done": done, "held": held, "after": rss()}))
"""


def test_other_devices_are_left_to_their_own_allocators():
    assert allocator.release_freed("cuda") is False and allocator.release_freed("mps") is False


@pytest.mark.skipif(allocator._malloc_trim() is None, reason="no glibc malloc_trim on this platform")
def test_freed_heap_blocks_go_back_to_the_system():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["done"] is True
    # 299 freed MiB were resident; most of them are returned
    assert result["held"] - result["after"] > 200 * 1024**2, result
