"""Train one byte-level model with learned position increments.

    python -m training.train --config cpu --increments per_layer --data data/tokens \\
        --out runs/cpu-per-layer [--steps N] [--per-head] [--max-delta 10] [--resume]
    python -m training.train --config cpu --frozen-from runs/cpu-shared --data data/tokens \\
        --out runs/cpu-frozen
    # data-parallel, one process per GPU (or per CPU group with gloo):
    torchrun --standalone --nproc_per_node=2 -m training.train --config paper ...

The run folder gets ``checkpoint.pt`` (resumable state), ``metrics.jsonl`` and, at the end,
``final/`` (a `save_pretrained` folder with card.md and card.json). A killed run continues
where its last checkpoint left off with ``--resume`` and ends with the same weights as an
uninterrupted run. Exit status: 0 done, 2 bad arguments / run folder / data, 3 non-finite loss.
"""

from __future__ import annotations

import argparse
import sys

from lens_positions.checkpoints import CheckpointError
from training.runs.cards import format_duration
from training.runs.checkpointing import TrainCheckpointError
from training.train import distributed
from training.train.options import (
    add_config_arguments,
    add_run_arguments,
    command_line,
    overrides_from_args,
    resolve_config,
)
from training.train.trainer import NonFiniteLossError, ResumeError, RunOptions, train

EXIT_USAGE = 2
EXIT_NON_FINITE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n")[0],
    )
    add_run_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder")
    add_config_arguments(parser)
    debug = parser.add_argument_group("test hooks")
    debug.add_argument("--debug-nan-at-step", type=int, default=None,
                       help="make the loss of this update (1-based) NaN, to test the stop")
    debug.add_argument("--debug-step-delay", type=float, default=0.0,
                       help="sleep this many seconds after each update, to test kills")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_process = distributed.context_from_env().is_main
    try:
        cfg = resolve_config(args.config, overrides_from_args(args), args.out, args.resume)
        result = train(cfg, args.data, args.out, RunOptions(
            resume=args.resume,
            progress=not args.no_progress,
            tensorboard=args.tensorboard,
            command=command_line("training.train", argv),
            nan_at_step=args.debug_nan_at_step,
            step_delay=args.debug_step_delay,
        ))
    except NonFiniteLossError as e:
        if main_process:
            print(f"error: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except (ResumeError, TrainCheckpointError, CheckpointError, FileNotFoundError, ValueError) as e:
        if main_process:
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        distributed.teardown()
    if main_process:
        print(f"{result.final_dir}: {result.steps} steps, {result.tokens_seen:,} tokens, "
              f"val loss {result.val_loss:.4f} nats/byte = {result.val_bpb:.4f} bits/byte, "
              f"{format_duration(result.wall_time_s)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
