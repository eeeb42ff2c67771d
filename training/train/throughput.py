"""Training throughput (tokens/s) of each variant under a preset, measured on this machine.

    python -m training.train.throughput --config cpu --data data/tokens --seconds 45
    python -m training.train.throughput --config paper --device cuda --seconds 30 --json out.json

Each variant (none, shared, per-layer, per-layer per-head by default) runs the trainer's own
update — forward, cross-entropy, backward, clipping, AdamW — on real training windows (random
tokens without ``--data``) for ``--seconds`` after a short warm-up. Variants are measured in
turns of a few updates each, so a load that other processes put on the machine falls on all of
them alike; the load average is printed with the result, since shared cores can cut CPU
throughput several-fold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lens_positions.atomic import write_json_atomic
from training.tokens.byte_tokens import load_tokens
from training.tokens.windows import train_batch
from training.train.configs import NAMED_CONFIGS, TrainConfig, named_config
from training.train.distributed import DistContext, resolve_device
from training.train.trainer import autocast_context, build_model, resolve_precision

DEFAULT_VARIANTS = ("none", "shared", "per_layer", "per_layer+per_head")


@dataclass
class _Bench:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rates: list[float] = field(default_factory=list)


def _variant(base: TrainConfig, spec: str) -> TrainConfig:
    increments, _, extra = spec.partition("+")
    return base.replace(increments=increments, per_head=extra == "per_head")


def measure(
    cfg: TrainConfig,
    variants: list[str],
    seconds: float,
    data: str | None = None,
    steps_per_turn: int = 3,
) -> dict[str, dict[str, float]]:
    """Median and best tokens/s of each variant; ``seconds`` of timed updates per variant."""
    device = resolve_device(cfg.device, DistContext())
    precision = resolve_precision(cfg.precision, device)
    tokens = load_tokens(data, "train") if data else None
    generator = torch.Generator().manual_seed(0)
    benches = []
    for spec in variants:
        vcfg = _variant(cfg, spec)
        model = build_model(vcfg).to(device).train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=vcfg.lr, betas=(vcfg.beta1, vcfg.beta2),
            weight_decay=vcfg.weight_decay, fused=device.type == "cuda",
        )
        benches.append(_Bench(vcfg.variant_name, model, optimizer))
    step = 0

    def update(bench: _Bench) -> None:
        nonlocal step
        if tokens is not None:
            x, y = train_batch(tokens, step, cfg.batch_size, cfg.model.n_ctx, seed=cfg.windows_seed)
        else:
            window = torch.randint(0, 257, (cfg.batch_size, cfg.model.n_ctx + 1), generator=generator)
            x, y = window[:, :-1], window[:, 1:]
        step += 1
        x, y = x.to(device), y.to(device)
        with autocast_context(precision, device):
            logits = bench.model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bench.model.parameters(), cfg.grad_clip)
        bench.optimizer.step()
        bench.optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for bench in benches:  # warm-up: allocator, kernels, first-touch of the weights
        for _ in range(2):
            update(bench)
    sync()
    deadline = time.monotonic() + seconds * len(benches)
    while time.monotonic() < deadline:
        for bench in benches:
            t0 = time.perf_counter()
            for _ in range(steps_per_turn):
                update(bench)
            sync()
            bench.rates.append(steps_per_turn * cfg.batch_size * cfg.model.n_ctx / (time.perf_counter() - t0))
    return {
        b.name: {
            "tokens_per_s_median": statistics.median(b.rates),
            "tokens_per_s_best": max(b.rates),
            "turns": len(b.rates),
            "parameters": sum(p.numel() for p in b.model.parameters()),
        }
        for b in benches
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(NAMED_CONFIGS), default="cpu")
    parser.add_argument("--data", help="token folder (random tokens when left out)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help="increments[+per_head] for each variant")
    parser.add_argument("--seconds", type=float, default=45.0, help="timed seconds per variant")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    cfg = named_config(args.config).replace(device=args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = measure(cfg, args.variants, args.seconds, args.data)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"config {args.config}: batch {cfg.batch_size} x {cfg.model.n_ctx}, {torch.get_num_threads()} CPU threads, "
          f"load average {load_before:.2f} -> {load_after:.2f}")
    print("| variant | parameters | tokens/s (median) | tokens/s (best) |")
    print("|---|---:|---:|---:|")
    for name, r in result.items():
        print(f"| {name} | {r['parameters']:,} | {r['tokens_per_s_median']:,.0f} | {r['tokens_per_s_best']:,.0f} |")
    if args.json:
        write_json_atomic(args.json, {"config": args.config, "threads": torch.get_num_threads(),
                                      "load_average": [load_before, load_after], "variants": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
