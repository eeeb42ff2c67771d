"""Analysis calls against TransformerLens 4.3's `TransformerBridge` around the same Llama.

The peer is what a researcher would hook instead: ``TransformerBridge`` around a Hugging Face
`LlamaForCausalLM` of our shape holding our ``none`` model's weights (benchmarks/peers.py; the
bridge runs Llama's eager attention so that patterns can be hooked). Calls, all under
``torch.no_grad()`` in eval mode, interleaved round by round on one batch:

- ``forward``: ``model(tokens)`` (ours: SDPA, no hooks; the bridge: its hooked modules, eager
  attention); plus plain ``hf-llama`` with SDPA as the floor both stand on;
- ``cache all``: ``run_with_cache(tokens)`` with every hook cached.

'time vs bridge' is the median per-round ratio of our call to the bridge's same call (lower is
faster; the issue's goal: per-layer cache all <= 0.8). 'cached' is the number of entries in the
returned cache (the bridge also lists aliases of one tensor under several names).

    python -m benchmarks.vs_bridge --threads 2 --repeats 9
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
    paired_ratio,
    peak_memory_bytes,
    random_tokens,
    spread,
)
from benchmarks.peers import bridge_from_hooked, llama_from_hooked

BRIDGE, HF = "tl-bridge", "hf-llama"
CACHE_TARGET = 0.8  # per-layer cache all at most 80% of the bridge's time
MODES = ("forward", "cache all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences (4 on CPU, 32 on CUDA)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (512)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["none", "per-layer"])
    return parser.parse_args(argv)


def calls(model, tokens: torch.Tensor, setup: Setup, modes=MODES) -> dict[str, callable]:
    def forward():
        with torch.no_grad(), setup.autocast():
            return model(tokens)

    def cache_all():
        with torch.no_grad(), setup.autocast():
            return model.run_with_cache(tokens)

    table = {"forward": forward, "cache all": cache_all}
    return {mode: table[mode] for mode in modes}


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    setup.compile = False  # hooks are Python callbacks
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seq = args.seq or (32 if args.quick else 512)
    batch = args.batch or (2 if args.quick else (32 if setup.is_cuda else 4))
    repeats = args.repeats or (1 if args.quick else 5)
    tokens = random_tokens(batch, seq, setup)

    none = build_model("none", dims, seq, setup).eval()
    models = {BRIDGE: bridge_from_hooked(none)}
    for variant in args.variants:
        models[variant] = none if variant == "none" else build_model(variant, dims, seq, setup).eval()
    candidates = {(name, mode): fn for name, m in models.items() for mode, fn in calls(m, tokens, setup).items()}
    candidates[(HF, "forward")] = calls(llama_from_hooked(none), tokens, setup, ("forward",))["forward"]
    cached = {name: len(m.run_with_cache(tokens)[1]) for name, m in models.items()}
    peaks = {key: peak_memory_bytes(fn, setup) for key, fn in candidates.items()}
    times = interleaved_times(candidates, repeats, setup, warmup=1)

    headers = ["model", "call", "ms", "tokens/s", "time vs bridge", "spread", "peak MiB", "cached"]
    rows, targets = [], []
    for (name, mode), t in times.items():
        ratio = paired_ratio(t, times[(BRIDGE, mode)])
        rows.append([name, mode, f"{median(t) * 1e3:.1f}", fmt_rate(batch * seq / median(t)),
                     fmt_ratio(ratio), f"{spread(t):.0%}", fmt_mib(peaks[(name, mode)]),
                     str(cached[name]) if mode == "cache all" else "-"])
        if name == "per-layer" and mode == "cache all":
            targets.append(Target("per-layer cache all time vs TransformerBridge", ratio, CACHE_TARGET, False))
    setting = (f"Analysis calls under no_grad, eval mode, {dims['d_model']}d/{dims['n_heads']}h/"
               f"{dims['n_layers']}L/{dims['d_mlp']}, batch {batch} x {seq} tokens, median of {repeats} "
               f"interleaved rounds; {setup.describe()}. {BRIDGE} = TransformerLens 4.3 TransformerBridge "
               f"around transformers' LlamaForCausalLM with our none model's weights (eager attention); "
               f"{HF} = that Llama alone with SDPA. 'time vs bridge' is the median per-round ratio to "
               "the bridge's same call (lower is faster); peak MiB is the increase of live tensor "
               "memory during the call, cache included; 'cached' counts the cache's entries.")
    return Report("Analysis vs TransformerBridge", setting, headers, rows, [], targets)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
