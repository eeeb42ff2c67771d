"""Model cards of finished runs: ``card.json`` (machine-readable) and ``card.md`` (for people).

Both record what is needed to reproduce and judge a run: the exact command line(s), the training
and model configs, the data (the token files' metadata: sizes, sources, split), steps, tokens
seen, wall time, and the measured final validation loss and bits per byte (and, when the token folder has one,
the loss on the out-of-domain split: whole sources never trained on).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import torch

from lens_positions.runs import CARD_JSON

__all__ = ["CARD_JSON", "build_card", "format_duration", "invocation_lines", "render_card", "source_revision",
           "utc_now"]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def source_revision(start: Path | None = None) -> str | None:
    """Commit of the working tree, read from ``.git`` files (no git process is run)."""
    folder = (start or Path(__file__)).resolve()
    for parent in [folder, *folder.parents]:
        head_file = parent / ".git" / "HEAD"
        if head_file.is_file():
            head = head_file.read_text().strip()
            if not head.startswith("ref: "):
                return head
            ref = parent / ".git" / head[5:]
            if ref.is_file():
                return ref.read_text().strip()
            packed = parent / ".git" / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + head[5:]):
                        return line.split()[0]
            return None
    return None


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def invocation_lines(history: list[dict[str, Any]]) -> list[str]:
    """A card's command section: one line per start or resume of the run."""
    return [f"- {inv['event']} at step {inv['step']} ({inv['time']}): `{inv['command']}`"
            for inv in history]


def build_card(
    *,
    variant: str,
    train_config: dict[str, Any],
    model_config: dict[str, Any],
    history: list[dict[str, Any]],
    data_dir: str,
    data_meta: dict[str, Any],
    steps: int,
    tokens_seen: int,
    wall_time_s: float,
    final: dict[str, Any],
    parameters: int,
    world_size: int,
    device: str,
    precision: str,
) -> dict[str, Any]:
    """The JSON card; ``history`` lists each invocation (start and resumes) with its command."""
    return {
        "variant": variant,
        "command": history[0]["command"] if history else None,
        "invocations": history,
        "finished_at": utc_now(),
        "steps": steps,
        "tokens_seen": tokens_seen,
        "wall_time_s": round(wall_time_s, 1),
        "tokens_per_s": round(tokens_seen / wall_time_s, 1) if wall_time_s > 0 else None,
        "final": final,
        "parameters": parameters,
        "train_config": train_config,
        "model_config": model_config,
        "data": {"dir": data_dir, "meta": data_meta},
        "system": {
            "world_size": world_size,
            "device": device,
            "precision": precision,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "source_revision": source_revision(),
        },
    }


def render_card(card: dict[str, Any]) -> str:
    """Markdown version of the JSON card."""
    final, cfg, meta = card["final"], card["train_config"], card["data"]["meta"]
    mc = card["model_config"]
    n_ctx = mc["n_ctx"]
    train_tokens = meta.get("train", {}).get("tokens")
    lines = [
        f"# lens_positions byte model: {card['variant']}",
        "",
        "Decoder-only byte-level transformer whose RoPE positions are running sums of learned "
        "per-token increments (`lens_positions.HookedIncrementTransformer`).",
        "",
        "## Result",
        "",
        f"- final validation loss: **{final['val_loss']:.4f} nats/byte** "
        f"(**{final['val_bpb']:.4f} bits/byte**) over {final['val_tokens']:,} held-out tokens "
        f"({final['val_windows']:,} windows of {n_ctx})",
        *(
            [f"- out-of-domain loss: **{final['ood_loss']:.4f} nats/byte** "
             f"(**{final['ood_bpb']:.4f} bits/byte**) over {final['ood_tokens']:,} tokens of "
             f"sources never trained on ({', '.join(meta.get('ood', {}).get('bytes_by_source', {}))})"]
            if "ood_loss" in final else []
        ),
        f"- steps: {card['steps']:,}; tokens seen: {card['tokens_seen']:,}"
        + (f" ({card['tokens_seen'] / train_tokens:.2f} epochs of the training split)" if train_tokens else "")
        + f"; wall time: {format_duration(card['wall_time_s'])} ({card['tokens_per_s'] or 0:,.0f} tokens/s)",
        f"- shape: d_model {mc.get('d_model')}, {mc.get('n_heads')} heads, {mc.get('n_layers')} layers, "
        f"MLP {mc.get('d_mlp')}, context {n_ctx}; {card['parameters']:,} parameters",
        "",
        "## Command",
        "",
    ]
    lines += invocation_lines(card["invocations"])
    lines += [
        "",
        "## Data",
        "",
        f"- token folder: `{card['data']['dir']}`",
        f"- spec: `{meta.get('spec')}`",
        f"- split: {json.dumps(meta.get('split'), ensure_ascii=False)}",
    ]
    for split in ("train", "val", "ood"):
        if split not in meta:
            continue
        part = meta[split]
        lines.append(
            f"- {split}: {part.get('tokens', 0):,} tokens, {part.get('documents', 0):,} documents, "
            f"bytes by source {json.dumps(part.get('bytes_by_source', {}), ensure_ascii=False)}"
        )
    lines += [
        "",
        "## Training",
        "",
        f"- AdamW lr {cfg['lr']}, betas ({cfg['beta1']}, {cfg['beta2']}), eps {cfg['adam_eps']}, "
        f"weight decay {cfg['weight_decay']}; {cfg['warmup_steps']} warm-up steps then cosine "
        f"to 0; gradient clipping {cfg['grad_clip']}",
        f"- batch {cfg['batch_size']} x {n_ctx} bytes per step "
        f"(grad accumulation {cfg['grad_accum']}, {card['system']['world_size']} process(es)); "
        f"seed {cfg['seed']}, data seed {cfg['data_seed'] if cfg['data_seed'] is not None else cfg['seed']}",
        f"- device {card['system']['device']}, precision {card['system']['precision']}, "
        f"torch {card['system']['torch']}, source revision {card['system']['source_revision']}",
        "",
        "## Configs",
        "",
        "```json",
        json.dumps({"train": cfg, "model": card["model_config"]}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
