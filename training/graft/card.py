"""The graft adapter's card: ``card.json`` (machine-readable) and ``card.md`` (for people)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from training.runs.cards import format_duration, invocation_lines, source_revision, utc_now

#: Options that may differ between a run and its resumption (they do not change the result).
RUNTIME_OPTIONS = {"out", "resume", "threads", "log_every", "checkpoint_every", "max_minutes", "debug_step_delay",
                   "debug_nan_at_step"}


def options_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The options that define the run (what a resume must repeat)."""
    return {k: v for k, v in vars(args).items() if k not in RUNTIME_OPTIONS}


def build_card(args, history, meta, steps, elapsed, base_eval, final, n_trainable, base_name) -> dict[str, Any]:
    tokens_seen = steps * args.batch_size * args.n_ctx
    moved = [
        {"layer": b["layer"], "base_mean": b["mean"], "mean": f["mean"], "std": f["std"],
         "min": f["min"], "max": f["max"]}
        for b, f in zip(base_eval["delta"], final["delta"], strict=True)
    ]
    return {
        "base": base_name,
        "increments": args.increments,
        "trained": "full fine-tune (fp32)" if args.full else
                   f"δ MLPs + LoRA r {args.lora_rank} alpha {args.lora_alpha} on {', '.join(args.lora_targets)}",
        "command": history[0]["command"],
        "invocations": history,
        "finished_at": utc_now(),
        "steps": steps,
        "tokens_seen": tokens_seen,
        "wall_time_s": round(elapsed, 1),
        "tokens_per_s": round(tokens_seen / elapsed, 1) if elapsed > 0 else None,
        "trainable_parameters": n_trainable,
        "base_val_loss": base_eval["val_loss"],
        "final_val_loss": final["val_loss"],
        "val_loss_change": final["val_loss"] - base_eval["val_loss"],
        "val_tokens": final["val_tokens"],
        "delta_per_layer": moved,
        "data": {"files": meta["files"], "split": meta["split"], "train": meta["train"],
                 "val": meta["val"]},
        "options": options_dict(args),
        "system": {"torch": torch.__version__, "threads": args.threads,
                   "source_revision": source_revision()},
    }


def render_card(card: dict[str, Any]) -> str:
    lines = [
        f"# Graft: {card['base']} + learned increments ({card['increments']})",
        "",
        f"Trained: {card['trained']}; {card['trainable_parameters']:,} parameters.",
        "",
        "## Result",
        "",
        f"- held-out loss: base **{card['base_val_loss']:.4f}** -> grafted **{card['final_val_loss']:.4f}** "
        f"nats/token ({card['val_loss_change']:+.4f}) over {card['val_tokens']:,} held-out tokens",
        *([f"- shipped adapter ({card['adapter']['dtype']}, {card['adapter']['bytes'] / 1e6:.1f} MB): "
           f"held-out loss {card['adapter']['val_loss']:.4f}"] if "val_loss" in card.get("adapter", {}) else []),
        f"- steps {card['steps']:,}; tokens seen {card['tokens_seen']:,}; wall time "
        f"{format_duration(card['wall_time_s'])} ({card['tokens_per_s'] or 0:,.1f} tokens/s)",
        "",
        "## δ per layer (held-out tokens)",
        "",
        "| layer | mean | std | min | max |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in card["delta_per_layer"]:
        lines.append(f"| {d['layer']} | {d['mean']:.5f} | {d['std']:.5f} | {d['min']:.4f} | {d['max']:.4f} |")
    lines += ["", "## Command", ""]
    lines += invocation_lines(card["invocations"])
    data = card["data"]
    lines += ["", "## Data", ""]
    for f in data["files"]:
        lines.append(f"- `{f['file']}`: {f['bytes']:,} bytes, {f['documents']:,} documents")
    lines += [
        f"- split: {json.dumps(data['split'])}",
        f"- train {data['train']['tokens']:,} tokens / {data['train']['documents']:,} documents; "
        f"held out {data['val']['tokens']:,} tokens / {data['val']['documents']:,} documents",
        f"- windows of {card['options'].get('n_ctx')} tokens"
        + (f", each starting with token id {card['window_start_id']} (the BOS)"
           if card.get("window_start_id") is not None else " (no start token)"),
        "", "## Options", "", "```json", json.dumps(card["options"], indent=2), "```", "",
    ]
    return "\n".join(lines)
