"""Command line of the graft: ``python -m training.graft --help``."""

from __future__ import annotations

import argparse
import contextlib
import sys

from lens_positions.rotary_models import RotaryModelError
from training.graft.loop import run
from training.runs.checkpointing import TrainCheckpointError
from training.runs.guards import NonFiniteLossError, ResumeError


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.graft", description=__doc__.split("\n")[0])
    p.add_argument("--base", default="smollm2-135m", help="smollm2-135m, a local HF folder or a Hub id")
    p.add_argument("--increments", default="per_layer", choices=["none", "shared", "per_layer"])
    p.add_argument("--data", required=True, help="folder of jsonl files with a 'text' field (or one file)")
    p.add_argument("--files", nargs="*", default=None, help="only these files of --data")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same options)")
    p.add_argument("--full", action="store_true", help="full fine-tune in fp32 instead of LoRA")
    p.add_argument("--d-delta", type=int, default=None, help="δ-MLP hidden width (d_model / 4)")
    p.add_argument("--adapter-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="storage type of the shipped adapter's tensors")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--n-ctx", type=int, default=256)
    p.add_argument("--window-start", default="auto", choices=["auto", "bos", "none"],
                   help="token each training and held-out window starts with: auto = the BOS when the "
                        "tokenizer puts one before every text (Gemma), none when it does not (SmolLM2)")
    p.add_argument("--lr", type=float, default=2e-4, help="LoRA (or full) learning rate")
    p.add_argument("--delta-lr", type=float, default=1e-3, help="δ-MLP learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.03)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=0, help="0: only before and after training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=25)
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="checkpoint and stop after this wall time (go on with the same command plus --resume)")
    p.add_argument("--debug-step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--debug-nan-at-step", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.n_ctx < 2:
        p.error("--steps, --batch-size must be >= 1 and --n-ctx >= 2")
    if not args.full and args.lora_rank == 0 and args.increments == "none":
        p.error("nothing to train: increments 'none' without LoRA or --full")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run(args, argv)
        except (NonFiniteLossError, ResumeError, TrainCheckpointError, RotaryModelError) as e:
            print(f"graft: {e}", file=sys.stderr)
            return 2
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
