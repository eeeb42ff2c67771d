"""Fine-tune learned increments grafted onto a pretrained rotary LM (SmolLM2-135M by default).

    python -m training.graft --base smollm2-135m --increments per_layer \\
        --data /work/data/corpus-v1 --files en.jsonl --out runs/NAME --steps 400

What trains: the δ MLPs plus LoRA (peft; rank 16, alpha 32 on q/k/v/o by default), or with
``--full`` every weight of the base model in float32 (in bf16 an update of 2e-5 to a weight of 1
rounds away). The grafted model starts as the base model exactly (δ = 1, LoRA B = 0), so the
step-0 held-out loss *is* the base model's, measured on the same windows as the final one.

Data: every ``*.jsonl`` file of ``--data`` (or those named by ``--files``), the ``text`` field of
each line, tokenised with the base model's tokenizer, one EOS token after each document. Held
out: the documents whose blake2b text hash falls below ``--val-fraction`` (the corpus's own rule,
so a document is held out the same way here and in `training.prepare_tokens`). The tokens are
written once to ``OUT/tokens/`` and reused on resume (their metadata must match).

Guarantees (those of the byte trainer, `training.trainer`):

- batch k is `training.windows.train_batch(step=k)`, a pure function of the step, and the loop
  keeps no other state, so a run killed at any moment (SIGKILL included) and started again with
  the same command resumes from ``checkpoint.pt`` and computes what the uninterrupted run does
  (bit for bit on CPU);
- ``checkpoint.pt`` (trainable weights, AdamW and schedule state, RNG states, step, history) is
  replaced atomically every ``--checkpoint-every`` updates;
- a non-finite loss or gradient norm stops the run before the optimizer step, naming the update;
  the checkpoint on disk is the last good one;
- at the end: ``adapter/`` (`lens_positions.rotary_adapter`: δ MLPs + LoRA in safetensors, a few
  MB, with ``card.md``/``card.json``) that ``load_rotary_model(base, increments, adapter=...)``
  rebuilds, and ``metrics.jsonl`` (train loss, held-out loss, δ per layer).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lens_positions.atomic import atomic_open, output_problem, write_json_atomic, write_text_atomic
from lens_positions.rotary_adapter import save_adapter
from lens_positions.rotary_models import (
    RotaryModelError,
    base_fingerprint,
    graft,
    load_hf,
    resolve_base,
)
from training import checkpointing
from training.cards import format_duration, source_revision, utc_now
from training.corpus import content_key
from training.metrics import MetricsLog, delta_stats, truncate_metrics
from training.schedule import warmup_cosine
from training.windows import train_batch

TOKENS_FORMAT = "lens_positions.graft-tokens/v1"
#: Options that may differ between a run and its resumption (they do not change the result).
RUNTIME_OPTIONS = {"out", "threads", "log_every", "checkpoint_every", "max_minutes", "debug_step_delay"}


class NonFiniteLoss(RuntimeError):
    """A NaN/Inf loss or gradient norm; the checkpoint on disk is the last good one."""


# ------------------------------------------------------------------------------ data
def read_texts(data: Path, files: list[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Documents (``text`` fields) of the chosen jsonl files, and a description of each file."""
    paths = [data / f for f in files] if files else sorted(data.glob("*.jsonl"))
    if data.is_file():
        paths = [data]
    if not paths:
        raise SystemExit(f"graft: no *.jsonl files in {data}")
    texts, described = [], []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"graft: {path}: no such data file")
        n = 0
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise SystemExit(f"graft: {path}:{i + 1}: not a JSON object with 'text' ({e})") from e
                if text:
                    texts.append(text)
                    n += 1
        described.append({"file": str(path), "bytes": path.stat().st_size, "documents": n})
    return texts, described


def prepare_tokens(args: argparse.Namespace, tokenizer: Any, out: Path) -> dict[str, Any]:
    """Tokenise the data into ``out/tokens/{train,val}.bin`` once; return its metadata."""
    folder = out / "tokens"
    meta_path = folder / "meta.json"
    texts, files = read_texts(Path(args.data), args.files)
    eos = tokenizer.eos_token_id
    want = {
        "format": TOKENS_FORMAT,
        "files": files,
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "eos_token_id": eos,
        "split": {"rule": "hash", "val_fraction": args.val_fraction,
                  "key": "blake2b(utf-8 text, digest_size=8) / 2**64 < val_fraction"},
    }
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} != want:
            raise SystemExit(f"graft: {folder} was made from other data or another tokenizer; "
                             "use a new --out")
        return meta
    dtype = np.uint16 if len(tokenizer) <= 65535 else np.uint32
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    docs = {"train": 0, "val": 0}
    for text in texts:
        split = "val" if content_key(text) / 2**64 < args.val_fraction else "train"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        parts[split].append(np.asarray([*ids, eos], dtype=dtype))
        docs[split] += 1
    meta = dict(want, dtype=np.dtype(dtype).name)
    for split, arrays in parts.items():
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        if tokens.size <= args.n_ctx + 1:
            raise SystemExit(f"graft: the {split} split has only {tokens.size} tokens (need > n_ctx + 1)")
        with atomic_open(folder / f"{split}.bin", "wb", fsync=True) as f:
            f.write(tokens.tobytes())
        meta[split] = {"tokens": int(tokens.size), "documents": docs[split]}
    write_json_atomic(meta_path, meta)
    return meta


def load_split(out: Path, meta: dict[str, Any], split: str) -> np.ndarray:
    return np.fromfile(out / "tokens" / f"{split}.bin", dtype=meta["dtype"])


# ------------------------------------------------------------------------------ model
@dataclass
class Built:
    """The grafted bridge and what the run needs to know about its trainable parts."""

    bridge: nn.Module
    tokenizer: Any
    base_name: str
    fingerprint: str
    lora_modules: dict[str, nn.Module] = field(default_factory=dict)  # peft layers by HF path
    full_params: dict[str, Tensor] = field(default_factory=dict)  # --full: HF params by HF name


def build(args: argparse.Namespace) -> Built:
    """Load the base, add LoRA (or unfreeze it all), graft the increments; train mode."""
    spec = resolve_base(args.base)
    hf, tokenizer = load_hf(spec)
    built = Built(None, tokenizer, spec.name, base_fingerprint(hf))
    hf.requires_grad_(bool(args.full))
    if args.full:
        # Names in the un-bridged HF model: the bridge re-parents its modules.
        built.full_params = dict(hf.named_parameters())
    elif args.lora_rank > 0:
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                            target_modules=args.lora_targets)
        torch.manual_seed(args.seed)  # LoRA A is random: seeded, so a rebuild is identical
        inject_adapter_in_model(config, hf)
        built.lora_modules = {n: m for n, m in hf.named_modules() if hasattr(m, "lora_A")}
        if not built.lora_modules:
            raise SystemExit(f"graft: no modules named {args.lora_targets} in {spec.name}")
    torch.manual_seed(args.seed + 1)
    built.bridge = graft(hf, tokenizer, spec.boot_name, args.increments, d_delta=args.d_delta)
    built.bridge.train()
    return built


def trainable(built: Built) -> dict[str, Tensor]:
    """The parameters this run trains, by stable names (the checkpoint's keys)."""
    bridge = built.bridge
    params: dict[str, Tensor] = {}
    if bridge.increments == "shared":
        params.update({f"delta.delta_mlp.{k}": p for k, p in bridge.delta_mlp.named_parameters()})
    elif bridge.increments == "per_layer":
        for layer, block in enumerate(bridge.blocks):
            params.update({f"delta.blocks.{layer}.{k}": p for k, p in block.delta_mlp.named_parameters()})
    for path, layer in built.lora_modules.items():
        params[f"lora.{path}.A"] = layer.lora_A["default"].weight
        params[f"lora.{path}.B"] = layer.lora_B["default"].weight
    params.update({f"base.{k}": p for k, p in built.full_params.items()})
    for p in params.values():
        p.requires_grad_(True)
    return params


def lm_loss(bridge: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = bridge(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


@torch.no_grad()
def evaluate(bridge: nn.Module, val: np.ndarray, n_ctx: int, windows: int, batch: int) -> dict[str, Any]:
    """Mean held-out loss over the first ``windows`` fixed windows, and δ statistics per layer."""
    was_training = bridge.training
    bridge.eval()
    n = min(windows, (len(val) - 1) // n_ctx)
    total, count, deltas = 0.0, 0, []
    names = [f"blocks.{i}.hook_delta" for i in range(len(bridge.blocks))]
    for s in range(0, n, batch):
        starts = np.arange(s, min(n, s + batch)) * n_ctx
        index = starts[:, None] + np.arange(n_ctx + 1)
        w = torch.from_numpy(val[index].astype(np.int64))
        logits, cache = bridge.run_with_cache(w[:, :-1], names_filter=lambda name: name in names)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1),
                               reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
        deltas.append(torch.stack([cache[name] for name in names]))
    bridge.train(was_training)
    return {"val_loss": total / count, "val_tokens": count, "val_windows": n,
            "delta": delta_stats(torch.cat(deltas, dim=1))}


# ------------------------------------------------------------------------------ the run
def options_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in RUNTIME_OPTIONS}


def save_state(out: Path, params: dict[str, Tensor], optimizer: Any, scheduler: Any, step: int,
               extra: dict[str, Any]) -> None:
    checkpointing.save_checkpoint(out / checkpointing.CHECKPOINT_NAME, {
        "kind": "graft",
        "params": {k: p.detach().clone() for k, p in params.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": checkpointing.capture_rng_state(),
        "step": step,
        **extra,
    })


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Train (or resume) one graft; returns the card."""
    out = Path(args.out)
    # Checked before any folder is made or any model loads: a bad flag costs nothing.
    if args.threads < 1:
        raise SystemExit(f"graft: --threads must be >= 1, got {args.threads}")
    if problem := output_problem(out):
        raise SystemExit(f"graft: --out {out}: {problem}")
    if not Path(args.data).exists():
        raise SystemExit(f"graft: --data {args.data}: no such file or folder")
    try:
        resolve_base(args.base)
    except RotaryModelError as e:
        raise SystemExit(f"graft: --base {args.base}: {e}") from None
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m training.graft " + shlex.join(argv)
    ckpt = None
    if (out / checkpointing.CHECKPOINT_NAME).is_file():
        ckpt = checkpointing.load_checkpoint(out / checkpointing.CHECKPOINT_NAME)
        if ckpt.get("kind") != "graft":
            raise SystemExit(f"graft: {out} holds a checkpoint of another kind of run")
        differs = {k: (ckpt["options"].get(k), v) for k, v in options_dict(args).items()
                   if ckpt["options"].get(k) != v}
        if differs:
            raise SystemExit(f"graft: {out} was started with other options: {differs}")
        checkpointing.remove_stale_temp_files(out)
    if (out / "adapter" / "adapter.json").is_file() and ckpt is not None and ckpt["step"] >= args.steps:
        print(f"graft: {out} is finished (step {ckpt['step']}); nothing to do")
        return json.loads((out / "adapter" / "card.json").read_text())

    built = build(args)
    bridge, lora_modules, fingerprint, base_name = (
        built.bridge, built.lora_modules, built.fingerprint, built.base_name)
    meta = prepare_tokens(args, built.tokenizer, out)
    train_tokens, val_tokens = load_split(out, meta, "train"), load_split(out, meta, "val")
    params = trainable(built)
    delta_params = [p for k, p in params.items() if k.startswith("delta.")]
    other_params = [p for k, p in params.items() if not k.startswith("delta.")]
    groups = [{"params": delta_params, "lr": args.delta_lr}]
    if other_params:
        groups.append({"params": other_params, "lr": args.lr})
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    scheduler = warmup_cosine(optimizer, args.warmup_steps, args.steps)
    history: list[dict[str, Any]] = []
    step, elapsed, base_eval = 0, 0.0, None
    if ckpt is not None:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(ckpt["params"][k])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        checkpointing.restore_rng_state(ckpt["rng"])
        step, elapsed, history, base_eval = ckpt["step"], ckpt["elapsed"], ckpt["history"], ckpt["base_eval"]
        truncate_metrics(out, step)
    history.append({"event": "resume" if ckpt else "start", "step": step, "time": utc_now(),
                    "command": command})
    log = MetricsLog(out, tensorboard=False)
    n_trainable = sum(p.numel() for p in params.values())
    print(f"graft: {base_name} + {args.increments}, {n_trainable:,} trainable parameters, "
          f"{meta['train']['tokens']:,} train / {meta['val']['tokens']:,} held-out tokens; "
          f"{'resuming at step ' + str(step) if ckpt else 'starting'}", flush=True)
    if base_eval is None:  # step 0: the grafted model is exactly the base model
        base_eval = evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size)
        log.write({"kind": "eval", "step": 0, **base_eval})
        print(f"graft: base model held-out loss {base_eval['val_loss']:.4f}", flush=True)

    def extra() -> dict[str, Any]:
        return {"options": options_dict(args), "elapsed": elapsed, "history": history,
                "base_eval": base_eval, "fingerprint": fingerprint}

    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else math.inf
    t0 = time.monotonic()
    window_loss, window_n, window_t = 0.0, 0, time.monotonic()
    while step < args.steps:
        x, y = train_batch(train_tokens, step, args.batch_size, args.n_ctx, seed=args.seed)
        loss = lm_loss(bridge, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), args.grad_clip)
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
            log.write({"kind": "nonfinite", "step": step + 1, "loss": loss.item(),
                       "grad_norm": grad_norm.item()})
            raise NonFiniteLoss(
                f"update {step + 1}: loss {loss.item()} grad norm {grad_norm.item()}; stopped, "
                f"{out / checkpointing.CHECKPOINT_NAME} holds the last good state"
            )
        optimizer.step()
        scheduler.step()
        step += 1
        if args.debug_step_delay:  # lets tests kill the process between two checkpoints
            time.sleep(args.debug_step_delay)
        window_loss += loss.item()
        window_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.monotonic()
            rate = window_n * args.batch_size * args.n_ctx / (now - window_t)
            log.write({"kind": "train", "step": step, "loss": window_loss / window_n,
                       "grad_norm": grad_norm.item(), "lr": scheduler.get_last_lr()[-1],
                       "tokens_per_s": rate})
            print(f"step {step}/{args.steps} loss {window_loss / window_n:.4f} "
                  f"{rate:.0f} tok/s", flush=True)
            window_loss, window_n, window_t = 0.0, 0, now
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            log.write({"kind": "eval", "step": step,
                       **evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size)})
        if step % args.checkpoint_every == 0 or step == args.steps:
            elapsed += time.monotonic() - t0
            t0 = time.monotonic()
            save_state(out, params, optimizer, scheduler, step, extra())
        if time.monotonic() > deadline:
            elapsed += time.monotonic() - t0
            save_state(out, params, optimizer, scheduler, step, extra())
            print(f"graft: --max-minutes reached at step {step}; run the same command to go on")
            log.close()
            return {}
    elapsed += time.monotonic() - t0
    final = evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size)
    log.write({"kind": "final", "step": step, **final})
    log.close()
    card = build_card(args, history, meta, step, elapsed, base_eval, final, n_trainable, base_name)
    adapter = out / "adapter"
    lora = ({"r": args.lora_rank, "alpha": args.lora_alpha, "modules": sorted(lora_modules)}
            if lora_modules else None)
    save_adapter(adapter, bridge, base=base_name, fingerprint=fingerprint, lora=lora,
                 lora_modules=lora_modules, full_weights=built.full_params or None,
                 dtype=getattr(torch, args.adapter_dtype),
                 extra={"trained": {"steps": step, "val_loss": final["val_loss"],
                                    "base_val_loss": base_eval["val_loss"]}})
    card["adapter"] = {"dtype": args.adapter_dtype,
                       "bytes": (adapter / "adapter.safetensors").stat().st_size}
    if args.adapter_dtype != "float32":
        # What a user of the adapter gets: the weights rounded to the storage type.
        with torch.no_grad():
            for p in params.values():
                p.copy_(p.to(getattr(torch, args.adapter_dtype)).float())
        card["adapter"]["val_loss"] = evaluate(
            bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size)["val_loss"]
    write_json_atomic(adapter / "card.json", card)
    write_text_atomic(adapter / "card.md", render_card(card))
    print(f"graft: done; held-out loss {base_eval['val_loss']:.4f} -> {final['val_loss']:.4f}; "
          f"adapter in {adapter}", flush=True)
    return card


# ------------------------------------------------------------------------------ card
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
    for inv in card["invocations"]:
        lines.append(f"- {inv['event']} at step {inv['step']} ({inv['time']}): `{inv['command']}`")
    data = card["data"]
    lines += ["", "## Data", ""]
    for f in data["files"]:
        lines.append(f"- `{f['file']}`: {f['bytes']:,} bytes, {f['documents']:,} documents")
    lines += [
        f"- split: {json.dumps(data['split'])}",
        f"- train {data['train']['tokens']:,} tokens / {data['train']['documents']:,} documents; "
        f"held out {data['val']['tokens']:,} tokens / {data['val']['documents']:,} documents",
        "", "## Options", "", "```json", json.dumps(card["options"], indent=2), "```", "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.graft", description=__doc__.split("\n")[0])
    p.add_argument("--base", default="smollm2-135m", help="smollm2-135m, a local HF folder or a Hub id")
    p.add_argument("--increments", default="per_layer", choices=["none", "shared", "per_layer"])
    p.add_argument("--data", required=True, help="folder of jsonl files with a 'text' field (or one file)")
    p.add_argument("--files", nargs="*", default=None, help="only these files of --data")
    p.add_argument("--out", required=True, help="run folder (resumed when it holds a checkpoint)")
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
                   help="checkpoint and stop after this wall time (resume with the same command)")
    p.add_argument("--debug-step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
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
        except NonFiniteLoss as e:
            print(f"graft: {e}", file=sys.stderr)
            return 2
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
