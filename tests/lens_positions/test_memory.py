"""The huge-page hint of large CPU tensors: accepted, and the same tensors with or without it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lens_positions import memory

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_large_empty_is_torch_empty_with_the_asked_shape_and_dtype():
    for shape, dtype in [((3, 5), torch.float32), ((4, 8, 512, 512), torch.float32), ((2, 1 << 22), torch.bfloat16)]:
        t = memory.large_empty(shape, dtype, "cpu")
        assert t.shape == shape and t.dtype == dtype and t.is_contiguous()
        t.fill_(1.5)
        assert float(t.float().mean()) == 1.5


def test_the_hint_is_accepted_and_changes_no_value():
    """Whether the kernel then backs the block with 2 MiB pages depends on how fragmented memory
    is, not on this code: that is measured by ``benchmarks.first_touch``, never asserted here.
    What is asserted: the advice covers only the tensor's own aligned interior, is accepted
    (or cleanly declined where there is no libc), and values are those of ``torch.empty``."""
    t = memory.large_empty((8 << 20,), torch.float32, "cpu")  # 32 MiB
    accepted = memory.advise_huge_pages(t)
    assert isinstance(accepted, bool)
    if sys.platform.startswith("linux") and THP.is_file() and "[never]" not in THP.read_text():
        assert accepted
    t.copy_(torch.arange(t.numel(), dtype=torch.float32))
    assert torch.equal(t[:5], torch.arange(5.0)) and float(t[-1]) == float(t.numel() - 1)


def test_a_tensor_without_a_whole_aligned_huge_page_gets_no_advice():
    t = torch.empty(1000)
    assert memory.advise_huge_pages(t) is False


def test_small_tensors_get_no_advice(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "advise_huge_pages", lambda t: calls.append(t.numel()) or True)
    memory.large_empty((1000,), torch.float32, "cpu")
    memory.large_empty((memory.HINT_BYTES // 4,), torch.float32, "cpu")
    assert calls == [memory.HINT_BYTES // 4]
