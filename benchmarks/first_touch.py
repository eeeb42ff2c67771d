"""First touch of fresh memory: what the huge-page hint of `lens_positions.memory` saves.

``run_with_cache`` keeps every layer's attention scores and pattern, [batch, head, query, key]
float32: 32 MiB each at batch 4 x 512 with 8 heads, blocks glibc maps fresh for every call, which
the kernel zeroes and maps page by page when first written. Candidates, interleaved round by round,
all under ``torch.no_grad()``:

- ``torch.empty + fill`` against ``large_empty + fill``: one [4, 8, 512, 512] float32 tensor
  written once (the first touch alone);
- one paper-size attention layer's materialised path (as ``run_with_cache`` runs it: scores,
  pattern, values), with the hint switched off (``lens_positions.components.large_empty``
  replaced by ``torch.empty`` for that candidate) and on.

'time vs plain' is the median per-round ratio to the same operation on plain memory (lower is
faster). On a system without transparent huge pages (or not Linux) both sides are the same.

    python -m benchmarks.first_touch --threads 1 --repeats 11
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
    Report,
    Setup,
    Skipped,
    Target,
    add_common_args,
    fmt_ratio,
    interleaved_times,
    median,
    model_config,
    paired_ratio,
    spread,
    with_attribute,
)
from lens_positions import components, memory
from lens_positions.components import Attention

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
TARGET = 0.9  # the hinted attention layer at most 0.9 x the plain one where huge pages are on


def _plain_empty(shape, dtype, device):
    return torch.empty(shape, dtype=dtype, device=device)


def _with_hint(enabled: bool, fn):
    """``fn`` run with the attention's allocator hinted (the library's) or plain ``torch.empty``."""
    return with_attribute(components, "large_empty", memory.large_empty if enabled else _plain_empty, fn)


def run(args: argparse.Namespace) -> Report:
    if args.device != "cpu":
        raise Skipped("first_touch measures how fresh CPU memory pages in: run it with --device cpu")
    setup = Setup.from_args(args)
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    batch, seq = (2, 32) if args.quick else (4, 512)
    repeats = args.repeats or (1 if args.quick else 9)
    cfg = model_config("none", dims, seq, setup.seed)
    cfg.use_sdpa = False  # the materialised path, as any hook on the pattern selects
    attn = Attention(cfg).eval()
    g = torch.Generator().manual_seed(setup.seed)
    x = torch.randn(batch, seq, cfg.d_model, generator=g)
    positions = torch.arange(1, seq + 1, dtype=torch.float32).expand(batch, seq)
    shape = (batch, cfg.n_heads, seq, seq)

    def layer():
        return attn(x, positions)

    candidates = {
        "torch.empty + fill": lambda: torch.empty(shape).fill_(0.0),
        "large_empty + fill": lambda: memory.large_empty(shape, torch.float32, "cpu").fill_(0.0),
        "attention layer, plain memory": _with_hint(False, layer),
        "attention layer, hinted memory": _with_hint(True, layer),
    }
    with torch.no_grad():
        same = torch.equal(candidates["attention layer, plain memory"](),
                           candidates["attention layer, hinted memory"]())
        times = interleaved_times(candidates, repeats, setup)
    pairs = {"large_empty + fill": "torch.empty + fill",
             "attention layer, hinted memory": "attention layer, plain memory"}
    rows = []
    for name, t in times.items():
        ratio = paired_ratio(t, times[pairs[name]]) if name in pairs else 1.0
        rows.append([name, f"{median(t) * 1e3:.2f}", fmt_ratio(ratio), f"{spread(t):.0%}"])
    thp = THP.read_text().strip() if THP.is_file() else "absent"
    mib = batch * cfg.n_heads * seq * seq * 4 / 2**20
    setting = (f"One [{batch}, {cfg.n_heads}, {seq}, {seq}] float32 tensor ({mib:.1f} MiB) and one "
               f"{dims['d_model']}d/{dims['n_heads']}h attention layer's materialised path on "
               f"{batch} x {seq} tokens, no_grad, median of {repeats} interleaved rounds; "
               f"{setup.describe()}; transparent huge pages: {thp}. 'time vs plain' is the median "
               "per-round ratio to the same operation on plain torch.empty memory.")
    notes = [f"the attention layer's output is {'bit-identical' if same else 'NOT identical'} with and without the hint"]
    targets = []
    if not args.quick and "[never]" not in thp and thp != "absent":
        ratio = paired_ratio(times["attention layer, hinted memory"], times["attention layer, plain memory"])
        targets.append(Target("hinted / plain attention layer time", ratio, TARGET, False))
    return Report("First touch of fresh memory (huge-page hint)", setting,
                  ["candidate", "ms", "time vs plain", "spread"], rows, notes, targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
