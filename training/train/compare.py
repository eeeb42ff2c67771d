"""Train the comparison set of variants under identical settings, one after another.

    python -m training.train.compare --config cpu --data data/tokens --out runs/compare
    python -m training.train.compare --config cpu --data data/tokens --out runs/compare --per-head --frozen
    python -m training.train.compare ... --resume      # after an interruption: finished variants are kept

Variants: none, shared, per-layer; ``--per-head`` adds shared-per-head and per-layer-per-head;
``--frozen`` adds a frozen-deltas model whose table comes from the shared run just trained.
Each variant gets its own run folder ``OUT/<variant>`` (the same layout as `training.train`);
every setting other than the variant is the same for all of them, the seeds included. At the
end the comparison table (`lens_positions.runs.compare_runs`) is printed and written to
``OUT/comparison.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lens_positions.atomic import write_text_atomic
from lens_positions.checkpoints import CheckpointError
from lens_positions.runs import compare_runs, format_table
from training.runs.checkpointing import TrainCheckpointError
from training.train import distributed
from training.train.command import EXIT_NON_FINITE, EXIT_USAGE
from training.train.configs import TrainConfig
from training.train.options import (
    add_config_arguments,
    add_run_arguments,
    command_line,
    overrides_from_args,
    resolve_config,
)
from training.train.trainer import NonFiniteLossError, ResumeError, RunOptions, TrainResult, train

BASE_VARIANTS: tuple[tuple[str, bool], ...] = (("none", False), ("shared", False), ("per_layer", False))
PER_HEAD_VARIANTS: tuple[tuple[str, bool], ...] = (("shared", True), ("per_layer", True))
SUMMARY_NAME = "comparison.md"


def variant_configs(base: TrainConfig, out: Path, per_head: bool, frozen: bool) -> list[tuple[TrainConfig, Path]]:
    """(config, run folder) for every variant of the comparison, in training order."""
    variants = list(BASE_VARIANTS) + (list(PER_HEAD_VARIANTS) if per_head else [])
    runs = []
    for increments, heads in variants:
        cfg = base.replace(increments=increments, per_head=heads, frozen_from=None)
        runs.append((cfg, out / cfg.variant_name))
    if frozen:
        shared_dir = out / base.replace(increments="shared", per_head=False).variant_name
        cfg = base.replace(increments="shared", per_head=False, frozen_from=str(shared_dir))
        runs.append((cfg, out / cfg.variant_name))
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train.compare",
        description=__doc__.split("\n")[0],
    )
    add_run_arguments(parser)
    parser.add_argument("--out", required=True, help="folder holding one run folder per variant")
    parser.add_argument("--per-head", action="store_true", help="add the per-head variants")
    parser.add_argument("--frozen", action="store_true",
                        help="add a frozen-deltas variant using the shared run's per-token δ")
    add_config_arguments(parser, variant_flags=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_process = distributed.context_from_env().is_main
    out = Path(args.out)
    command = command_line("training.train.compare", argv)
    results: list[TrainResult] = []
    try:
        if args.config is None:
            raise ValueError("--config is required")
        base = resolve_config(args.config, overrides_from_args(args), out, resume=False)
        for cfg, run_dir in variant_configs(base, out, args.per_head, args.frozen):
            if main_process:
                print(f"=== {cfg.variant_name} -> {run_dir}", file=sys.stderr)
            results.append(train(cfg, args.data, run_dir, RunOptions(
                resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard,
                command=f"{command}  # variant {cfg.variant_name}",
            )))
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
        table = format_table(compare_runs([r.out_dir for r in results]))
        write_text_atomic(out / SUMMARY_NAME, table + "\n")
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
