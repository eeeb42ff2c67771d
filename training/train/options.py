"""Command-line options shared by `training.train` and `training.train.compare`.

A run's config is a named preset (``--config paper|cpu|tiny``) with any of the override flags
applied on top. When resuming, ``--config`` may be left out: the config stored in the
checkpoint is used, again with the overrides on top (the trainer then refuses overrides that
would change the weights, see `training.train.configs.RUNTIME_FIELDS`).
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_positions.config import INCREMENT_VARIANTS
from training.runs import checkpointing
from training.train.configs import NAMED_CONFIGS, PRECISIONS, TrainConfig, named_config
from training.train.frozen import source_config

ALL = "all"


def int_or_all(text: str) -> int | str:
    """An integer, or ``all`` (no limit; becomes None in the config)."""
    return ALL if text.lower() == ALL else int(text)


@dataclass(frozen=True)
class Override:
    flag: str
    field: str
    type: Any
    help: str
    choices: tuple[str, ...] | None = None


OVERRIDES: tuple[Override, ...] = (
    Override("--increments", "increments", str, "position increments", INCREMENT_VARIANTS),
    Override("--max-delta", "max_delta", float, "bound of per-layer and signed δ"),
    Override("--learned-fraction", "learned_fraction", float,
             "fraction of each head's rotary pairs (the lowest-frequency ones) turned by the learned "
             "position; the rest turn by the integer position (1 = all learned)"),
    Override("--frozen-from", "frozen_from", str,
             "trained shared model (folder or run folder): train with its per-token δ frozen"),
    Override("--d-model", "d_model", int, "residual width"),
    Override("--n-heads", "n_heads", int, "attention heads"),
    Override("--n-layers", "n_layers", int, "transformer blocks"),
    Override("--d-mlp", "d_mlp", int, "SwiGLU hidden width"),
    Override("--n-ctx", "n_ctx", int, "context length in bytes"),
    Override("--d-delta", "d_delta", int, "hidden width of the increment MLP (default d_model / 4)"),
    Override("--rope-theta", "rope_theta", float, "RoPE base"),
    Override("--eps", "eps", float, "epsilon of the transformer's RMSNorms"),
    Override("--steps", "steps", int, "optimizer updates"),
    Override("--batch-size", "batch_size", int, "sequences per update, over all processes"),
    Override("--grad-accum", "grad_accum", int, "micro-batches per update"),
    Override("--lr", "lr", float, "peak learning rate"),
    Override("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    Override("--adam-eps", "adam_eps", float, "AdamW epsilon"),
    Override("--warmup", "warmup_steps", int, "linear warm-up updates before the cosine"),
    Override("--grad-clip", "grad_clip", float, "gradient-norm clipping threshold"),
    Override("--seed", "seed", int, "model initialisation seed"),
    Override("--data-seed", "data_seed", int, "training-window seed (default: --seed)"),
    Override("--eval-every", "eval_every", int, "updates between evaluations"),
    Override("--eval-windows", "eval_windows", int_or_all, "validation windows per evaluation, or 'all'"),
    Override("--final-eval-windows", "final_eval_windows", int_or_all,
             "validation windows of the final evaluation, or 'all'"),
    Override("--eval-batch-size", "eval_batch_size", int, "windows per evaluation batch"),
    Override("--log-every", "log_every", int, "updates between metric records"),
    Override("--checkpoint-every", "checkpoint_every", int, "updates between checkpoints"),
    Override("--device", "device", str, "auto, cpu, cuda or cuda:N"),
    Override("--precision", "precision", str, "auto = bf16 autocast on CUDA, fp32 on CPU", PRECISIONS),
    Override("--workers", "workers", int, "DataLoader processes producing training windows"),
    Override("--threads", "threads", int, "torch CPU threads (default: cores / processes)"),
)
VARIANT_FIELDS = ("increments", "per_head", "frozen_from", "learned_fraction")


def add_config_arguments(parser: argparse.ArgumentParser, *, variant_flags: bool = True) -> None:
    """``--config`` and the override flags (without the variant ones if ``variant_flags`` is off)."""
    parser.add_argument("--config", choices=sorted(NAMED_CONFIGS),
                        help="named preset (required unless resuming)")
    group = parser.add_argument_group("overrides of the preset")
    for o in OVERRIDES:
        if not variant_flags and o.field in VARIANT_FIELDS:
            continue
        group.add_argument(o.flag, dest=o.field, type=o.type, choices=o.choices, default=None, help=o.help)
    if variant_flags:
        group.add_argument("--per-head", dest="per_head", action="store_true", default=None,
                           help="one δ per attention head")
        group.add_argument("--signed", dest="signed", action="store_true", default=None,
                           help="δ may be negative: 1 + (max_delta - 1) * tanh(x / max_delta)")
    group.add_argument("--betas", nargs=2, type=float, metavar=("BETA1", "BETA2"), default=None,
                       help="AdamW betas (default 0.9 0.999)")
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the model")
    group.add_argument("--paired-init", action=argparse.BooleanOptionalAction, default=None,
                       help="start the weights all variants share from the same draws")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags about running rather than what is trained."""
    parser.add_argument("--data", required=True, help="token folder (train.bin, val.bin, meta.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    parser.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                        help="TensorBoard event files (default: when installed)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given explicitly on the command line."""
    out = {
        o.field: getattr(args, o.field)
        for o in OVERRIDES
        if getattr(args, o.field, None) is not None
    }
    for name in ("per_head", "signed", "compile", "paired_init"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    if getattr(args, "betas", None) is not None:
        out["beta1"], out["beta2"] = args.betas
    # "all" on the eval-window flags means no limit, stored as None.
    return {k: None if v == ALL else v for k, v in out.items()}


def stored_config(out_dir: str | os.PathLike) -> TrainConfig | None:
    """The config a run folder was trained with (its checkpoint), if it has one."""
    path = Path(out_dir) / checkpointing.CHECKPOINT_NAME
    if not path.is_file():
        return None
    return TrainConfig.from_dict(checkpointing.load_checkpoint(path)["config"])


def resolve_config(
    preset: str | None, overrides: dict[str, Any], out_dir: str | os.PathLike, resume: bool
) -> TrainConfig:
    """Preset (or the stored config when resuming without one) + overrides.

    ``--frozen-from`` without ``--increments`` / ``--per-head`` / ``--signed`` takes them from the
    source model.
    """
    overrides = dict(overrides)
    if overrides.get("frozen_from"):
        source = source_config(overrides["frozen_from"])
        overrides.setdefault("increments", "shared")
        overrides.setdefault("per_head", source.per_head)
        overrides.setdefault("signed", source.signed)
    if preset is not None:
        return named_config(preset).replace(**overrides)
    if resume and (stored := stored_config(out_dir)) is not None:
        return stored.replace(**overrides)
    raise ValueError("--config is required (it may be left out only with --resume of an existing run)")


def command_line(module: str, argv: list[str] | None) -> str:
    """The invocation as a shell command (``torchrun ...`` under torchrun)."""
    import sys

    args = shlex.join(sys.argv[1:] if argv is None else argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        nodes = max(1, world // local)
        return f"torchrun --nnodes={nodes} --nproc_per_node={local} -m {module} {args}"
    return f"python -m {module} {args}"
