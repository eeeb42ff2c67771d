"""Training attention on CPU: the blocked node against scaled_dot_product_attention.

Eager float32 training on CPU runs causal attention as `lens_positions.components._CausalAttention`
(batched products in blocks of query rows, softmax in place, the pattern recomputed in backward)
instead of ``F.scaled_dot_product_attention`` (its flash kernel on CPU). This script times one
forward + backward of each, interleaved round by round, on the same q, k and v
[batch, pos, head_index, d_head] and the same output gradient, for several shapes: the paper's
(what benchmarks.vs_hf trains), the CPU training config's, and longer or wider ones. 'time vs
SDPA' is the median per-round ratio (lower is faster); both candidates' outputs and gradients
agree to float32 rounding (checked, see the note). 'in training' says whether the library takes
the node at that length (`MIN_BLOCKED_TOKENS` to `MAX_BLOCKED_TOKENS` tokens; longer ones are
timed to show why not).

A second table times whole training steps (forward, backward, AdamW) of the per-layer model with
the library's choice (the blocked node) against the same model with SDPA forced, for the paper's
size (batch 4 x 512, as benchmarks.vs_hf) and the CPU training config (128d/4h/4L, batch 32 x
256): the figure a training run sees.

Use ``--clock wall`` too with more than one thread: process CPU time also counts the time a
waiting OpenMP thread spins between calls, and the blocked node makes more, smaller calls.

    python -m benchmarks.training_attention --threads 1 --repeats 11
    python -m benchmarks.training_attention --threads 2 --repeats 11 --clock wall
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from benchmarks.common import (
    PAPER_DIMS,
    TINY_DIMS,
    Report,
    Setup,
    Skipped,
    Target,
    add_common_args,
    build_model,
    fmt_ratio,
    interleaved_times,
    markdown_table,
    median,
    paired_ratio,
    random_tokens,
    spread,
    with_attribute,
)
from benchmarks.train_step import Trainer
from lens_positions import components
from lens_positions.components import MAX_BLOCKED_TOKENS, MIN_BLOCKED_TOKENS, _CausalAttention

#: (batch, pos, heads, d_head): the paper's shape first (the target's), then the CPU training
#: config's, more sequences, a longer context, SmolLM2-sized heads.
SHAPES = [(4, 512, 8, 32), (32, 256, 4, 32), (16, 512, 8, 32), (4, 1024, 8, 32), (4, 512, 9, 64)]
QUICK_SHAPES = [(2, 160, 2, 16)]
TARGET = 1.0  # the blocked node no slower than SDPA at the paper's shape
#: (name, dims, batch, pos) of the whole-step comparison.
STEP_MODELS = [("paper", PAPER_DIMS, 4, 512), ("cpu config", dict(d_model=128, n_heads=4, n_layers=4, d_mlp=512), 32, 256)]
QUICK_STEP_MODELS = [("tiny", TINY_DIMS, 2, 160)]


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return out.transpose(1, 2)


def _blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _CausalAttention.apply(q, k, v, q.shape[-1] ** -0.5)


def _step(fn, inputs: list[torch.Tensor], grad: torch.Tensor):
    def call() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*inputs), inputs, grad)

    return call


def _with_sdpa(step):
    """``step`` with the blocked node switched off (every length below `MIN_BLOCKED_TOKENS`)."""
    return with_attribute(components, "MIN_BLOCKED_TOKENS", 1 << 62, step)


def step_rows(args: argparse.Namespace, setup: Setup, repeats: int) -> list[list[str]]:
    """Whole per-layer training steps, blocked attention vs SDPA: one row per model size."""
    rows = []
    for name, dims, batch, n in QUICK_STEP_MODELS if args.quick else STEP_MODELS:
        model = build_model("per-layer", dims, n, setup).train()
        trainer = Trainer(model, lambda t, model=model: model(t, return_type="loss"), random_tokens(batch, n, setup), setup)
        times = interleaved_times({"sdpa": _with_sdpa(trainer.step), "blocked": trainer.step}, repeats, setup)
        rows.append([f"{name}, batch {batch} x {n}", f"{median(times['sdpa']) * 1e3:.0f}",
                     f"{median(times['blocked']) * 1e3:.0f}", fmt_ratio(paired_ratio(times["blocked"], times["sdpa"])),
                     f"{max(spread(times['sdpa']), spread(times['blocked'])):.0%}"])
    return rows


def run(args: argparse.Namespace) -> Report:
    if args.device != "cpu":
        raise Skipped("training_attention times the CPU training node: run it with --device cpu")
    setup = Setup.from_args(args)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = args.repeats or (1 if args.quick else 9)
    rows, targets, worst = [], [], 0.0
    g = torch.Generator().manual_seed(setup.seed)
    for shape in shapes:
        # q and k head-major, as the training rotary writes them; v token-major, as its product
        b, n, h, dh = shape
        q, k = (torch.randn(b, h, n, dh, generator=g).transpose(1, 2).requires_grad_() for _ in range(2))
        v = torch.randn(shape, generator=g).requires_grad_()
        grad = torch.randn(shape, generator=g)
        sdpa, blocked = _step(_sdpa, [q, k, v], grad), _step(_blocked, [q, k, v], grad)
        for a, c in zip(sdpa(), blocked(), strict=True):
            worst = max(worst, ((a - c).abs().max() / a.abs().max()).item())
        times = interleaved_times({"sdpa": sdpa, "blocked": blocked}, repeats, setup)
        ratio = paired_ratio(times["blocked"], times["sdpa"])
        rows.append([" x ".join(map(str, shape)), f"{median(times['sdpa']) * 1e3:.1f}",
                     f"{median(times['blocked']) * 1e3:.1f}", fmt_ratio(ratio),
                     f"{max(spread(times['sdpa']), spread(times['blocked'])):.0%}",
                     "yes" if MIN_BLOCKED_TOKENS <= n <= MAX_BLOCKED_TOKENS else "no (SDPA)"])
        if shape == SHAPES[0]:
            targets.append(Target("blocked training attention vs SDPA, paper shape", ratio, TARGET, False))
    setting = (f"Causal attention forward + backward (float32, training), batch x pos x heads x d_head; "
               f"median of {repeats} interleaved rounds; {setup.describe()}. 'time vs SDPA' is the "
               "median per-round ratio of the blocked node's time to scaled_dot_product_attention's; "
               "spread is the larger (max - min) / median of the two.")
    headers = ["shape", "SDPA ms", "blocked ms", "time vs SDPA", "spread", "in training"]
    notes = [f"outputs and gradients agree to {worst:.1e} of their largest magnitude"]
    steps = step_rows(args, setup, repeats)
    notes.append("whole per-layer training steps (ms), SDPA forced vs the library's blocked node:\n\n"
                 + markdown_table(["model", "SDPA step ms", "blocked step ms", "step vs SDPA", "spread"], steps))
    return Report("Training attention: blocked node vs SDPA", setting, headers, rows, notes, targets)


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    report = run(add_common_args(parser).parse_args(argv))
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
