"""Cost of interpretability: ``run_with_cache`` against a plain forward pass.

For each variant, three calls on the same batch, interleaved round by round, all under
``torch.no_grad()`` in eval mode (as analyses run):

- ``forward``: ``model(tokens)``, no hooks (scaled_dot_product_attention);
- ``cache all``: ``model.run_with_cache(tokens)``, every hook cached, so the attention scores and
  pattern are materialised as TransformerLens does;
- ``cache few``: ``run_with_cache`` with a ``names_filter`` of four hooks that leave attention on
  its fast path: ``blocks.0.hook_delta``, ``blocks.{L/2}.hook_position``, ``blocks.{L/2}.attn.hook_z``
  and ``blocks.{L-1}.hook_resid_post``.

Targets: cache all within 2x of the forward, cache few within 1.2x. Hooks are Python callbacks,
so this script always runs eager (``--compile`` is ignored).

    python -m benchmarks.analysis                  # CPU, paper size, batch 4 x 512
    python -m benchmarks.analysis --device cuda    # bf16 autocast, batch 32 x 512
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
    VARIANTS,
    Report,
    Setup,
    Target,
    add_common_args,
    build_model,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    interleaved_times,
    median,
    mfu,
    paired_ratio,
    peak_memory_bytes,
    random_tokens,
    spread,
)

ALL_TARGET = 2.0
FEW_TARGET = 1.2
MODES = ("forward", "cache all", "cache few")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences (4 on CPU, 32 on CUDA)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (512)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=["none", "shared", "per-layer", "per-layer-per-head"])
    return parser.parse_args(argv)


def few_hook_names(n_layers: int) -> list[str]:
    mid = n_layers // 2
    return ["blocks.0.hook_delta", f"blocks.{mid}.hook_position", f"blocks.{mid}.attn.hook_z",
            f"blocks.{n_layers - 1}.hook_resid_post"]


def calls(model, tokens: torch.Tensor, setup: Setup) -> dict[str, callable]:
    few = few_hook_names(model.cfg.n_layers)

    def forward():
        with torch.no_grad(), setup.autocast():
            return model(tokens)

    def cache_all():
        with torch.no_grad(), setup.autocast():
            return model.run_with_cache(tokens)

    def cache_few():
        with torch.no_grad(), setup.autocast():
            return model.run_with_cache(tokens, names_filter=few)

    return dict(zip(MODES, (forward, cache_all, cache_few), strict=True))


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    setup.compile = False
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seq = args.seq or (32 if args.quick else 512)
    batch = args.batch or (2 if args.quick else (32 if setup.is_cuda else 4))
    repeats = args.repeats or (1 if args.quick else 5)
    tokens = random_tokens(batch, seq, setup)

    candidates, models = {}, {}
    for variant in args.variants:
        models[variant] = build_model(variant, dims, seq, setup).eval()
        for mode, fn in calls(models[variant], tokens, setup).items():
            candidates[(variant, mode)] = fn
    peaks = {key: peak_memory_bytes(fn, setup) for key, fn in candidates.items()}
    times = interleaved_times(candidates, repeats, setup, warmup=1)

    headers = ["model", "call", "ms", "tokens/s", "time vs forward", "spread", "peak MiB"]
    if setup.is_cuda:
        headers.append("MFU")
    rows, targets = [], []
    for variant in args.variants:
        base = times[(variant, "forward")]
        for mode in MODES:
            t = times[(variant, mode)]
            rate = batch * seq / median(t)
            ratio = paired_ratio(t, base)
            row = [variant, mode, f"{median(t) * 1e3:.1f}", fmt_rate(rate), fmt_ratio(ratio),
                   f"{spread(t):.0%}", fmt_mib(peaks[(variant, mode)])]
            if setup.is_cuda:
                row.append(f"{mfu(models[variant].cfg, seq, rate, False, setup.peak_tflops):.1%}")
            rows.append(row)
            if mode != "forward":
                limit = ALL_TARGET if mode == "cache all" else FEW_TARGET
                targets.append(Target(f"{variant} {mode} time vs forward", ratio, limit, False))
    setting = (f"Analysis calls under no_grad, eval mode, {dims['d_model']}d/{dims['n_heads']}h/"
               f"{dims['n_layers']}L/{dims['d_mlp']}, batch {batch} x {seq} tokens, median of {repeats} "
               f"interleaved rounds; {setup.describe()} (eager: hooks are Python callbacks). "
               "'time vs forward' is the median per-round ratio to the same model's plain forward "
               f"(lower is better). 'cache few' caches {', '.join(few_hook_names(dims['n_layers']))}. "
               "Peak MiB is the increase of live tensor memory during the call, cache included.")
    notes = []
    if not setup.is_cuda:
        notes.append("on CPU, 'cache all' also pays for paging in the cache's fresh memory (glibc "
                     "serves large blocks by mmap, zeroed by the kernel on first touch), which depends "
                     "on the process's allocator history: measured alone ~1.6x here, ~1.3x after the "
                     "training step in run_all, ~1.2x with GLIBC_TUNABLES=glibc.malloc.mmap_threshold="
                     "134217728:glibc.malloc.trim_threshold=1073741824.")
    if setup.is_cuda:
        notes.append(f"MFU: PaLM forward FLOPs (2N + 4·L·H·dh·T per token) over {setup.peak_tflops:g} TFLOP/s.")
    return Report("Analysis (run_with_cache)", setting, headers, rows, notes, targets)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
