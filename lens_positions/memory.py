"""Large CPU tensors that page in faster: a transparent-huge-page hint for the attention cache.

``run_with_cache`` keeps every layer's attention scores and pattern, [batch, head, query, key]
float32 tensors: 32 MiB each at batch 4 x 512 tokens with 8 heads. glibc serves blocks that large
straight from ``mmap``, so each is fresh memory that the kernel zeroes and maps one 4 KiB page at
a time when it is first written. On the CPU this project measures on, that first touch took
14 ms per 32 MiB tensor, as long as the q·k product written into it (benchmarks/RESULTS.md,
issue 15). Advising the kernel to back the block with 2 MiB pages (``MADV_HUGEPAGE``, honoured
when ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``, the common
default) takes 512 times fewer faults: 4-5 ms for the same tensor.

`large_empty` is ``torch.empty`` plus that hint for CPU tensors of at least `HINT_BYTES` on
Linux; anywhere else (another OS, a GPU, no libc, THP disabled) it is plain ``torch.empty``.
Values are unaffected: the hint changes only how the memory is mapped.
"""

from __future__ import annotations

import ctypes
import sys

import torch
from torch import Tensor

#: Tensors smaller than this come from glibc's heap (already mapped): the hint would do nothing.
HINT_BYTES = 8 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14  # from <sys/mman.h> (Linux)
_madvise = None


def _libc_madvise():
    """libc's ``madvise`` with its argument types, or None where there is none."""
    global _madvise
    if _madvise is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
            _madvise = fn
        except (OSError, AttributeError):
            _madvise = False
    return _madvise or None


def advise_huge_pages(t: Tensor) -> bool:
    """Ask for 2 MiB pages under the whole 2 MiB-aligned interior of ``t``'s memory (before it is
    first written); True when the kernel accepted the advice."""
    madvise = _libc_madvise()
    if madvise is None:
        return False
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    lo = (start + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    hi = end & ~(_HUGE_PAGE - 1)
    return hi > lo and madvise(lo, hi - lo, _MADV_HUGEPAGE) == 0


def large_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """``torch.empty(shape)``, with the huge-page hint for CPU tensors of `HINT_BYTES` or more."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if t.device.type == "cpu" and sys.platform.startswith("linux") and t.numel() * t.element_size() >= HINT_BYTES:
        advise_huge_pages(t)
    return t
