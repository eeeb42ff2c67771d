"""Where a training step's time goes: op time per step of two candidates, by op *and* shapes.

`benchmarks.vs_hf` says how much slower one step is; this says in which ops. Each candidate
(``hf-llama`` or a variant, as in vs_hf: the same weights, batch and AdamW) takes ``--steps``
profiled steps (`torch.profiler`, CPU), interleaved with the other's. Every op's self time is
summed per (name, input shapes) and divided by the steps; the table lists the rows whose time
differs most between the two, then both totals.

Grouping by shapes matters: by name alone the δ-MLP's [tokens, 256] x [256, 64] products hide
inside ``aten::mm`` beside the model's large ones, and their cost looks like noise.

    python -m benchmarks.step_profile --threads 2 --a per-layer --b none
    python -m benchmarks.step_profile --threads 2 --a none --b hf-llama --rows 30

Profiler times are op times, not wall time (the profiler adds its own overhead), and one run's
totals move by several percent with the machine; compare the two candidates of one run only.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
    VARIANTS,
    Report,
    Setup,
    add_common_args,
    build_model,
    random_tokens,
)
from benchmarks.peers import llama_from_hooked, llama_loss
from benchmarks.train_step import Trainer
from benchmarks.vs_hf import PEER

Key = tuple[str, str]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    choices = [PEER, *VARIANTS]
    parser.add_argument("--a", choices=choices, default="per-layer", help="first candidate (per-layer)")
    parser.add_argument("--b", choices=choices, default="none", help="second candidate (none)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per candidate (3)")
    parser.add_argument("--rows", type=int, default=20, help="rows of the table (20)")
    args = parser.parse_args(argv)
    if args.a == args.b:
        parser.error("--a and --b name the same candidate")
    if args.steps < 1 or args.rows < 1:
        parser.error("--steps and --rows must be at least 1")
    return args


def build(name: str, dims: dict, seq: int, batch: int, setup: Setup) -> Trainer:
    tokens = random_tokens(batch, seq, setup)
    if name == PEER:
        hf = llama_from_hooked(build_model("none", dims, seq, setup)).train()
        return Trainer(hf, llama_loss(hf), tokens, setup)
    model = build_model(name, dims, seq, setup).train()
    return Trainer(model, lambda t: model(t, return_type="loss"), tokens, setup)


def op_times(trainer: Trainer) -> dict[Key, float]:
    """Self CPU time (ms) of each (op, input shapes) in one profiled step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer.step()
    return {(e.key, str(e.input_shapes)): e.self_cpu_time_total / 1e3
            for e in prof.key_averages(group_by_input_shape=True)}


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    dims = TINY_DIMS if args.quick else PAPER_DIMS
    seq, batch = (32, 2) if args.quick else (512, 4)
    trainers = {n: build(n, dims, seq, batch, setup) for n in (args.a, args.b)}
    for trainer in trainers.values():  # optimizer state
        trainer.step()
    totals: dict[str, dict[Key, float]] = {n: defaultdict(float) for n in trainers}
    for _ in range(args.steps):
        for name, trainer in trainers.items():
            for key, ms in op_times(trainer).items():
                totals[name][key] += ms / args.steps
    a, b = totals[args.a], totals[args.b]
    keys = sorted(set(a) | set(b), key=lambda k: -abs(a.get(k, 0.0) - b.get(k, 0.0)))
    rows = [[name, shapes[:80], f"{a.get((name, shapes), 0.0):.2f}", f"{b.get((name, shapes), 0.0):.2f}",
             f"{a.get((name, shapes), 0.0) - b.get((name, shapes), 0.0):+.2f}"] for name, shapes in keys[:args.rows]]
    rows.append(["total", "", f"{sum(a.values()):.1f}", f"{sum(b.values()):.1f}",
                 f"{sum(a.values()) - sum(b.values()):+.1f}"])
    setting = (f"Self CPU time of each op per training step (ms), grouped by input shapes, mean of "
               f"{args.steps} profiled step(s) per candidate, batch {batch} x {seq}; {setup.describe()}. "
               "Rows: the largest differences first.")
    headers = ["op", "input shapes", args.a, args.b, f"{args.a} - {args.b}"]
    return Report(f"Training step profile: {args.a} vs {args.b}", setting, headers, rows)


def main(argv: list[str] | None = None) -> Report:
    report = run(parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
