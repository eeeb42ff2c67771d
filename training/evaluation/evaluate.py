"""Bits per byte of a trained model on one split of a token folder.

    python -m training.evaluation.evaluate --model bilingual-per-layer --data data/tokens-v2 --split ood
    python -m training.evaluation.evaluate --model runs/cpu-v2-per-layer --data data/tokens-v2 \\
        [--split val|ood|train] [--threads 1] [--max-windows 2000] [--json out.json]

`--model` is a shipped model's name, a `save_pretrained` folder, or a run folder (its `final/`).
The windows are the trainer's evaluation windows (`training.tokens.windows.val_starts`: consecutive
tiles of the model's context length; with `--max-windows` that many, evenly spaced over the
split), so the full-split figure equals a run's `final` record on the same folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lens_positions import HookedIncrementTransformer
from lens_positions.checkpoints import CheckpointError
from training.tokens.byte_tokens import load_tokens
from training.train import distributed
from training.train.frozen import FINAL_NAME
from training.train.trainer import evaluate


def resolve_model(name_or_dir: str) -> str:
    """A run folder's `final/` when given a run folder, else the argument unchanged."""
    path = Path(name_or_dir)
    if (path / FINAL_NAME / "config.json").is_file() and not (path / "config.json").is_file():
        return str(path / FINAL_NAME)
    return name_or_dir


def evaluate_model(
    model_name: str,
    data_dir: str | os.PathLike,
    split: str = "val",
    *,
    max_windows: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, Any]:
    """{"model", "data", "split", "loss" (nats/byte), "bpb", "tokens", "windows", "seconds"}."""
    tokens = load_tokens(data_dir, split)
    model = HookedIncrementTransformer.from_pretrained(resolve_model(model_name), device=device)
    t0 = time.monotonic()
    result = evaluate(
        model, tokens, model.cfg.n_ctx, batch_size, max_windows, torch.device(device), "fp32",
        distributed.DistContext(), prefix="eval", spread=max_windows is not None,
    )
    return {
        "model": model_name,
        "data": str(data_dir),
        "split": split,
        "n_ctx": model.cfg.n_ctx,
        "loss": result["eval_loss"],
        "bpb": result["eval_bpb"],
        "tokens": result["eval_tokens"],
        "windows": result["eval_windows"],
        "max_windows": max_windows,
        "seconds": round(time.monotonic() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.evaluate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="shipped name, model folder or run folder")
    parser.add_argument("--data", required=True, help="token folder (meta.json, *.bin)")
    parser.add_argument("--split", default="val", choices=("train", "val", "ood"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--max-windows", type=int, default=None,
                        help="evaluate this many windows, evenly spaced (default: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        result = evaluate_model(args.model, args.data, args.split, max_windows=args.max_windows,
                                batch_size=args.batch_size, device=args.device)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['model']} on {result['data']} [{result['split']}]: {result['loss']:.4f} "
          f"nats/byte = {result['bpb']:.4f} bits/byte over {result['tokens']:,} tokens "
          f"({result['windows']:,} windows of {result['n_ctx']}, {result['seconds']} s)")
    if args.json:
        from lens_positions.atomic import write_json_atomic

        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
