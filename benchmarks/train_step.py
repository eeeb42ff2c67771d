"""Training step speed and peak memory: forward + backward + AdamW, every variant vs the baseline.

Every candidate (the plain-PyTorch baseline in its two forms, fused and separate projections, and
each hooked variant, no hooks attached) gets its own model, same seed, and its own AdamW (lr 1e-3, weight decay 0.01); all train on the same random
byte batch. The reference for ratios is the faster of the two baselines (by median time). Timed rounds interleave the candidates (see `benchmarks.common`); tokens/s is
batch x seq x steps / median seconds. Peak memory is parameters + optimizer state + the peak
increase of live tensor memory during one step (gradients included: zero_grad frees them).

    python -m benchmarks.train_step                       # CPU, paper size, batch 4 x 512
    python -m benchmarks.train_step --device cuda --compile   # bf16 autocast, batch 64, MFU
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from benchmarks.baseline import BaselineTransformer
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
    optimizer_state_tensors,
    paired_ratio,
    peak_memory_bytes,
    random_tokens,
    spread,
    tensor_bytes,
)

BASELINES = ("baseline-fused", "baseline-separate")
SPEED_TARGET = 0.95  # tokens/s of a hooked variant at least 95% of the baseline's
MEMORY_TARGET = 1.10  # peak memory at most 110% of the baseline's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (4 on CPU, 64 on CUDA)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (512)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per timed sample (1 CPU, 10 CUDA)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    return parser.parse_args(argv)


class Trainer:
    """One candidate: a model, its AdamW, and a step on a fixed batch."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 tokens: torch.Tensor, setup: Setup):
        self.model, self.tokens, self.setup = model, tokens, setup
        self.loss_fn = loss_fn
        extra = {"fused": True} if setup.is_cuda else {}
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, **extra)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.setup.autocast():
            loss = self.loss_fn(self.tokens)
        loss.backward()
        self.optimizer.step()

    def static_bytes(self) -> int:
        params = list(self.model.parameters()) + list(self.model.buffers())
        return tensor_bytes(params + optimizer_state_tensors(self.optimizer))


def build_trainers(args: argparse.Namespace, setup: Setup, dims: dict, batch: int, seq: int) -> dict[str, Trainer]:
    tokens = random_tokens(batch, seq, setup)
    trainers: dict[str, Trainer] = {}
    none = build_model("none", dims, seq, setup).train()
    for name in BASELINES:
        base = BaselineTransformer.from_hooked(none, fused=name == "baseline-fused").train()
        trainers[name] = Trainer(base, setup.maybe_compile(base.loss), tokens, setup)
    for variant in args.variants:
        model = none if variant == "none" else build_model(variant, dims, seq, setup).train()
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

    # one warm-up step each (optimizer state, compilation), then memory, then interleaved timing
    for trainer in trainers.values():
        trainer.step()
    peaks = {n: t.static_bytes() + peak_memory_bytes(t.step, setup) for n, t in trainers.items()}
    times = interleaved_times({n: _repeat(t.step, steps) for n, t in trainers.items()}, repeats, setup,
                              warmup=1 if setup.compile or setup.is_cuda else 0)

    tokens_per_sample = batch * seq * steps
    speed = {n: tokens_per_sample / median(times[n]) for n in names}
    ref = max(BASELINES, key=lambda n: speed[n])
    vs_base = {n: paired_ratio(times[ref], times[n]) for n in names}  # >1: faster than the baseline
    vs_none = {n: paired_ratio(times["none"], times[n]) for n in names} if "none" in names else {}
    headers = ["model", "tokens/s", "speed vs baseline", "speed vs none", "spread",
               "peak MiB", "memory vs baseline", "memory vs none"]
    if setup.is_cuda:
        headers.append("MFU")
    rows = []
    for n in names:
        row = [n, fmt_rate(speed[n]), fmt_ratio(vs_base[n]),
               fmt_ratio(vs_none[n]) if vs_none else "-", f"{spread(times[n]):.0%}",
               fmt_mib(peaks[n]), fmt_ratio(peaks[n] / peaks[ref]),
               fmt_ratio(peaks[n] / peaks["none"]) if "none" in peaks else "-"]
        if setup.is_cuda:
            cfg = trainers[n].model.cfg
            row.append(f"{mfu(cfg, seq, speed[n], True, setup.peak_tflops):.1%}")
        rows.append(row)

    hooked = [n for n in names if n not in BASELINES]
    targets = [Target(f"{n} tokens/s vs baseline", vs_base[n], SPEED_TARGET) for n in hooked]
    targets += [Target(f"{n} tokens/s vs none", vs_none[n], SPEED_TARGET)
                for n in names if n.startswith("per-layer") and vs_none]
    targets += [Target(f"{n} peak memory vs baseline", peaks[n] / peaks[ref], MEMORY_TARGET, False)
                for n in hooked]
    targets += [Target(f"{n} peak memory vs none", peaks[n] / peaks["none"], MEMORY_TARGET, False)
                for n in hooked if n.startswith("per-layer") and "none" in peaks]
    setting = (f"Training step (forward + backward + AdamW), {dims['d_model']}d/{dims['n_heads']}h/"
               f"{dims['n_layers']}L/{dims['d_mlp']}, batch {batch} x {seq} tokens, {steps} step(s) per "
               f"sample, median of {repeats} interleaved rounds; {setup.describe()}. Speed ratios are "
               "tokens/s over the reference's (higher is faster; median of per-round ratios); memory "
               "ratios are peak bytes over the reference's; spread is (max - min) / median of the "
               f"samples. Baseline = {ref}, the faster plain-PyTorch form here.")
    notes = []
    if setup.is_cuda:
        notes.append(f"MFU: PaLM model FLOPs (6N + 12·L·H·dh·T per token) over {setup.peak_tflops:g} TFLOP/s.")
    return Report("Training step", setting, headers, rows, notes, targets)


def _repeat(fn: Callable[[], None], n: int) -> Callable[[], None]:
    def repeated() -> None:
        for _ in range(n):
            fn()

    return repeated


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
