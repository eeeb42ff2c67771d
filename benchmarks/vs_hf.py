"""Training step against Hugging Face: `LlamaForCausalLM` of the same shape beside our variants.

The peer is what a researcher would train instead: ``transformers``' Llama with SDPA attention,
the weights of our ``none`` model copied in (benchmarks/peers.py; same logits), the loss from its
own ``labels=`` path. Every candidate has its own AdamW (lr 1e-3, weight decay 0.01) and trains
on the same random byte batch; timed rounds interleave the candidates (benchmarks/common.py).
'time vs HF' is the median per-round ratio of our step time to Llama's (lower is faster; the
issue's goal: per-layer <= 1.0, learned positions costing nothing); peak memory is parameters +
optimizer state + the peak increase of live tensor memory during one step, as in train_step.

    python -m benchmarks.vs_hf --threads 2 --repeats 9     # CPU, paper size, batch 4 x 512
    python -m benchmarks.vs_hf --device cuda --compile      # bf16 autocast, batch 64
"""

from __future__ import annotations

import argparse
import sys

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
from benchmarks.peers import llama_from_hooked, llama_loss
from benchmarks.train_step import Trainer, _repeat

PEER = "hf-llama"
TIME_TARGET = 1.0  # per-layer step time at most Llama's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (4 on CPU, 64 on CUDA)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (512)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed sample (1 CPU, 10 CUDA)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["none", "per-layer"])
    return parser.parse_args(argv)


def build_trainers(args: argparse.Namespace, setup: Setup, dims: dict, batch: int, seq: int) -> dict[str, Trainer]:
    tokens = random_tokens(batch, seq, setup)
    none = build_model("none", dims, seq, setup)
    hf = llama_from_hooked(none).train()
    trainers = {PEER: Trainer(hf, setup.maybe_compile(llama_loss(hf)), tokens, setup)}
    for variant in args.variants:
        model = (none if variant == "none" else build_model(variant, dims, seq, setup)).train()
        fn = setup.maybe_compile(model)
        trainers[variant] = Trainer(model, lambda t, fn=fn: fn(t, return_type="loss"), tokens, setup)
    return trainers


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seq = args.seq or (32 if args.quick else 512)
    batch = args.batch or (2 if args.quick else (64 if setup.is_cuda else 4))
    steps = args.steps or (10 if setup.is_cuda and not args.quick else 1)
    repeats = args.repeats or (1 if args.quick else 5)
    trainers = build_trainers(args, setup, dims, batch, seq)
    names = list(trainers)
    for trainer in trainers.values():  # optimizer state, compilation
        trainer.step()
    peaks = {n: t.static_bytes() + peak_memory_bytes(t.step, setup) for n, t in trainers.items()}
    times = interleaved_times({n: _repeat(t.step, steps) for n, t in trainers.items()}, repeats, setup,
                              warmup=1 if setup.compile or setup.is_cuda else 0)

    tokens_per_sample = batch * seq * steps
    headers = ["model", "tokens/s", "time vs HF", "spread", "peak MiB", "memory vs HF"]
    if setup.is_cuda:
        headers.append("MFU")
    rows, targets = [], []
    for n in names:
        rate = tokens_per_sample / median(times[n])
        ratio = paired_ratio(times[n], times[PEER])
        row = [n, fmt_rate(rate), fmt_ratio(ratio), f"{spread(times[n]):.0%}", fmt_mib(peaks[n]),
               fmt_ratio(peaks[n] / peaks[PEER])]
        if setup.is_cuda:
            cfg = trainers[n].model.cfg if n != PEER else trainers["none"].model.cfg
            row.append(f"{mfu(cfg, seq, rate, True, setup.peak_tflops):.1%}")
        rows.append(row)
        if n == "per-layer":
            targets.append(Target("per-layer step time vs HF Llama", ratio, TIME_TARGET, False))
    setting = (f"Training step (forward + backward + AdamW), {dims['d_model']}d/{dims['n_heads']}h/"
               f"{dims['n_layers']}L/{dims['d_mlp']}, batch {batch} x {seq} tokens, {steps} step(s) per "
               f"sample, median of {repeats} interleaved rounds; {setup.describe()}. {PEER} = "
               "transformers' LlamaForCausalLM (SDPA attention, weights of our none model, its "
               "labels= loss). 'time vs HF' is the median per-round ratio of step times (lower is "
               "faster); spread is (max - min) / median of the samples; memory is parameters + "
               "optimizer state + the step's peak of live tensors.")
    return Report("Training step vs Hugging Face Llama", setting, headers, rows, [], targets)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
