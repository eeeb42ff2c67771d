"""How the increments' cost grows with sequence length: forward time and memory, none vs per_layer.

Positions are a running sum of per-token increments, so the increment MLPs, the cumulative sum and
the rotary angles all cost O(sequence), like the rest of a layer's token-wise work, while attention
costs O(sequence^2). The per-layer model's extra time should therefore stay a constant (or
shrinking) fraction of the forward pass, and its extra time per token should stay flat.

For each length, both models (built with n_ctx = the longest length) run a forward pass under
``torch.no_grad()`` in eval mode, interleaved round by round. At the ``--train-seqs`` lengths (512
and 8192 by default) the table also gives each model's peak training memory, measured as in
`benchmarks.train_step`: parameters + AdamW state + the peak of live tensors during one step
(forward + backward + AdamW) of a batch of that length; target per-layer / none <= 1.05.

    python -m benchmarks.scaling                   # CPU, batch 1, 512 .. 8192 tokens
    python -m benchmarks.scaling --device cuda     # bf16 autocast, batch 8
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
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
)

PAIR = ("none", "per-layer")
DRIFT_TARGET = 0.05  # the time ratio at the longest length may exceed the shortest's by this much
TRAIN_MEMORY_TARGET = 1.05  # per-layer peak training memory at most 5% above none's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences (1 on CPU, 8 on CUDA)")
    parser.add_argument("--seqs", type=int, nargs="+", default=None,
                        help="sequence lengths (512 1024 2048 4096 8192)")
    parser.add_argument("--train-seqs", type=int, nargs="*", default=None,
                        help="lengths (among --seqs) at which to measure peak training memory too "
                             "(512 and 8192 when present; none with --quick unless given)")
    return parser.parse_args(argv)


def train_memory(variant: str, dims: dict, n_ctx: int, tokens: torch.Tensor, setup: Setup) -> int:
    """Peak training memory (bytes) of one step: parameters + AdamW state + the step's peak of
    live tensors, after a first step has created the optimizer state (as train_step measures)."""
    from benchmarks.train_step import Trainer

    model = build_model(variant, dims, n_ctx, setup).train()
    trainer = Trainer(model, lambda t: model(t, return_type="loss"), tokens, setup)
    trainer.step()
    return trainer.static_bytes() + peak_memory_bytes(trainer.step, setup)


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seqs = args.seqs or ([32, 64] if args.quick else [512, 1024, 2048, 4096, 8192])
    batch = args.batch or (1 if args.quick or not setup.is_cuda else 8)
    # short sequences are cheap and noisy: more rounds for them (8 at 512 tokens, 3 from 2048 up)
    repeats_at = {seq: args.repeats or (1 if args.quick else max(3, 4096 // seq)) for seq in seqs}
    n_ctx = max(seqs)
    if args.train_seqs is not None:
        train_seqs = [s for s in args.train_seqs if s in seqs]
    else:
        train_seqs = [] if args.quick else [s for s in (512, 8192) if s in seqs]
    models = {v: build_model(v, dims, n_ctx, setup).eval() for v in PAIR}
    fns = {v: setup.maybe_compile(m) for v, m in models.items()}

    headers = ["tokens", "none ms", "per-layer ms", "time ratio", "extra µs/token",
               "none tokens/s", "none MiB", "per-layer MiB", "memory ratio",
               "none train MiB", "per-layer train MiB", "train memory ratio"]
    if setup.is_cuda:
        headers.append("none MFU")
    rows, ratios, train_targets = [], [], []
    for seq in seqs:
        tokens = random_tokens(batch, seq, setup)

        def forward(variant: str, tokens: torch.Tensor = tokens) -> torch.Tensor:
            with torch.no_grad(), setup.autocast():
                return fns[variant](tokens)

        candidates = {v: (lambda v=v: forward(v)) for v in PAIR}
        peaks = {v: peak_memory_bytes(fn, setup) for v, fn in candidates.items()}
        times = interleaved_times(candidates, repeats_at[seq], setup, warmup=1)
        t_none, t_layer = median(times["none"]), median(times["per-layer"])
        ratio = paired_ratio(times["per-layer"], times["none"])
        ratios.append(ratio)
        rate = batch * seq / t_none
        row = [str(seq), f"{t_none * 1e3:.1f}", f"{t_layer * 1e3:.1f}", fmt_ratio(ratio),
               f"{(t_layer - t_none) / (batch * seq) * 1e6:.2f}", fmt_rate(rate),
               fmt_mib(peaks["none"]), fmt_mib(peaks["per-layer"]),
               fmt_ratio(peaks["per-layer"] / peaks["none"])]
        if seq in train_seqs:
            train = {v: train_memory(v, dims, n_ctx, tokens, setup) for v in PAIR}
            train_ratio = train["per-layer"] / train["none"]
            row += [fmt_mib(train["none"]), fmt_mib(train["per-layer"]), fmt_ratio(train_ratio)]
            train_targets.append(Target(f"per-layer/none peak training memory at {seq} tokens",
                                        train_ratio, TRAIN_MEMORY_TARGET, False))
        else:
            row += ["-", "-", "-"]
        if setup.is_cuda:
            row.append(f"{mfu(models['none'].cfg, seq, rate, False, setup.peak_tflops):.1%}")
        rows.append(row)

    targets = [Target(f"per-layer/none time ratio at {seqs[-1]} tokens minus at {seqs[0]}",
                      ratios[-1] - ratios[0], DRIFT_TARGET, False)] + train_targets
    rounds = "/".join(str(repeats_at[s]) for s in seqs)
    setting = (f"Forward pass under no_grad, eval mode, {dims['d_model']}d/{dims['n_heads']}h/"
               f"{dims['n_layers']}L/{dims['d_mlp']} (n_ctx {n_ctx}), batch {batch}, median of {rounds} "
               f"interleaved rounds at these lengths; {setup.describe()}. 'time ratio' is per-layer "
               "over none (median of per-round ratios); 'extra µs/token' is the difference of medians "
               "per token; MiB is the peak increase of live tensor memory during the forward; train "
               "MiB (at some lengths) is parameters + AdamW state + the peak of live tensors during "
               "one training step of that batch.")
    return Report("Sequence-length scaling (forward)", setting, headers, rows, [], targets)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
