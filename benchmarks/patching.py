"""An activation-patching sweep through ``transformer_lens.patching``: ours against the bridge.

``get_act_patch_resid_pre`` patches the clean run's ``blocks.{l}.hook_resid_pre`` into the
corrupted run at every (layer, position), one forward pass each (n_layers x pos passes), and
evaluates a metric on each: here the mean logit of the clean run's last next byte, read at the
last position. Clean tokens are random bytes; the corrupted ones differ in a quarter of the
positions. Candidates are our variants and TransformerLens 4.3's ``TransformerBridge`` around a
Llama holding our ``none`` model's weights (benchmarks/peers.py), all in eval mode under no_grad,
each sweep one timed sample, interleaved round by round (the clean cache is made once, outside).
Ours ``none`` and the bridge compute one function, so their sweeps must agree; the largest
difference is printed under the table.

    python -m benchmarks.patching --threads 2 --repeats 5     # CPU, paper size, 4 x 32 tokens
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformer_lens import patching

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
    VARIANTS,
    Report,
    Setup,
    add_common_args,
    build_model,
    fmt_ratio,
    interleaved_times,
    median,
    paired_ratio,
    random_tokens,
    spread,
)
from benchmarks.peers import bridge_from_hooked

BRIDGE = "tl-bridge"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences (4)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (32 on CPU, 128 on CUDA)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["none", "per-layer"])
    return parser.parse_args(argv)


def corrupt(tokens: torch.Tensor, seed: int) -> torch.Tensor:
    """A copy of ``tokens`` [batch, pos] with every 4th position (from the second) replaced by other bytes."""
    g = torch.Generator().manual_seed(seed + 2)
    out = tokens.clone()
    cols = torch.arange(1, tokens.shape[1], 4)
    shift = torch.randint(1, 256, (tokens.shape[0], len(cols)), generator=g).to(tokens.device)
    out[:, cols] = (tokens[:, cols] + shift) % 256
    return out


def sweep_fn(model, clean: torch.Tensor, corrupted: torch.Tensor, setup: Setup):
    """A callable running the whole resid_pre sweep on ``model``; returns [n_layers, pos]."""
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean, names_filter=names)
    target = clean[:, -1]  # the metric reads the logit of the byte the clean run ends with

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[torch.arange(logits.shape[0]), -1, target].float().mean()

    def sweep() -> torch.Tensor:
        with torch.no_grad(), setup.autocast():
            return patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)

    return sweep


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    setup.compile = False
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seq = args.seq or (8 if args.quick else (128 if setup.is_cuda else 32))
    batch = args.batch or (2 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 3)
    clean = random_tokens(batch, seq, setup, vocab=256)
    corrupted = corrupt(clean, setup.seed)

    none = build_model("none", dims, seq, setup).eval()
    models = {BRIDGE: bridge_from_hooked(none)}
    for variant in args.variants:
        models[variant] = none if variant == "none" else build_model(variant, dims, seq, setup).eval()
    sweeps = {name: sweep_fn(m, clean, corrupted, setup) for name, m in models.items()}
    results = {name: fn() for name, fn in sweeps.items()}
    times = interleaved_times(sweeps, repeats, setup, warmup=0)

    n_pass = dims["n_layers"] * seq
    headers = ["model", "sweep s", "ms per patched pass", "time vs bridge", "spread", "result shape"]
    rows = []
    for name, t in times.items():
        rows.append([name, f"{median(t):.2f}", f"{median(t) / n_pass * 1e3:.2f}",
                     fmt_ratio(paired_ratio(t, times[BRIDGE])), f"{spread(t):.0%}",
                     "x".join(str(s) for s in results[name].shape)])
    notes = []
    if "none" in results:
        diff = (results["none"] - results[BRIDGE]).abs().max().item()
        scale = results[BRIDGE].abs().max().item()
        notes.append(f"ours none and the bridge (same weights) agree: largest difference {diff:.2e} "
                     f"against a largest |metric| of {scale:.2e}.")
    setting = (f"transformer_lens.patching.get_act_patch_resid_pre over every layer x position "
               f"({dims['n_layers']} x {seq} = {n_pass} patched forward passes of {batch} x {seq} tokens), "
               f"{dims['d_model']}d/{dims['n_heads']}h/{dims['n_layers']}L/{dims['d_mlp']}, eval mode, "
               f"no_grad, median of {repeats} interleaved rounds; {setup.describe()}. {BRIDGE} = "
               "TransformerLens 4.3 TransformerBridge around transformers' LlamaForCausalLM with our "
               "none model's weights. 'time vs bridge' is the median per-round ratio (lower is faster).")
    return Report("Activation patching sweep vs TransformerBridge", setting, headers, rows, notes, [])


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
