"""The huge-page hint of large CPU tensors: same tensors, and huge pages where the kernel allows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lens_positions import memory

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _huge_kib_at(address: int) -> int:
    """AnonHugePages (kB) of the mapping of this process that holds ``address``."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def test_large_empty_is_torch_empty_with_the_asked_shape_and_dtype():
    for shape, dtype in [((3, 5), torch.float32), ((4, 8, 512, 512), torch.float32), ((2, 1 << 22), torch.bfloat16)]:
        t = memory.large_empty(shape, dtype, "cpu")
        assert t.shape == shape and t.dtype == dtype and t.is_contiguous()
        t.fill_(1.5)
        assert float(t.float().mean()) == 1.5


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not THP.is_file() or "[never]" in THP.read_text(),
    reason="needs Linux with transparent huge pages in 'always' or 'madvise' mode",
)
def test_a_large_tensor_is_backed_by_huge_pages_once_written():
    t = memory.large_empty((8 << 20,), torch.float32, "cpu")  # 32 MiB
    t.fill_(0.0)
    assert _huge_kib_at(t.data_ptr() + t.numel() * 2) >= 2048


def test_small_tensors_get_no_advice(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "advise_huge_pages", lambda t: calls.append(t.numel()) or True)
    memory.large_empty((1000,), torch.float32, "cpu")
    memory.large_empty((memory.HINT_BYTES // 4,), torch.float32, "cpu")
    assert calls == [memory.HINT_BYTES // 4]
