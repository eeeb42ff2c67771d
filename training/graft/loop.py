"""The graft's run: build the grafted model, train its δ MLPs (+ LoRA), checkpoint, ship the adapter."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lens_positions.atomic import output_problem, write_json_atomic, write_text_atomic
from lens_positions.rotary_adapter import save_adapter
from lens_positions.rotary_models import (
    RotaryModelError,
    base_fingerprint,
    graft,
    load_hf,
    resolve_base,
)
from training.graft.card import RUNTIME_OPTIONS, build_card, options_dict, render_card
from training.graft.data import load_split, prepare_tokens, start_windows, window_start_id
from training.runs import checkpointing, guards
from training.runs.metrics import MetricsLog, delta_stats, truncate_metrics
from training.runs.schedule import warmup_cosine
from training.tokens.windows import train_batch


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
def evaluate(bridge: nn.Module, val: np.ndarray, n_ctx: int, windows: int, batch: int,
             start: int | None = None) -> dict[str, Any]:
    """Mean held-out loss over the first ``windows`` fixed windows (each beginning with ``start``
    when given, `start_windows`), and δ statistics per layer."""
    was_training = bridge.training
    bridge.eval()
    n = min(windows, (len(val) - 1) // n_ctx)
    total, count, deltas = 0.0, 0, []
    names = [f"blocks.{i}.hook_delta" for i in range(len(bridge.blocks))]
    for s in range(0, n, batch):
        starts = np.arange(s, min(n, s + batch)) * n_ctx
        index = starts[:, None] + np.arange(n_ctx + 1)
        w = torch.from_numpy(val[index].astype(np.int64))
        x, y = start_windows(w[:, :-1], w[:, 1:], start)
        logits, cache = bridge.run_with_cache(x, names_filter=lambda name: name in names)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                               reduction="sum")
        total += loss.item()
        count += y.numel()
        deltas.append(torch.stack([cache[name] for name in names]))
    bridge.train(was_training)
    return {"val_loss": total / count, "val_tokens": count, "val_windows": n,
            "delta": delta_stats(torch.cat(deltas, dim=1))}


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
    if problem := output_problem(out):  # before the --data check: --out names the problem
        raise guards.ResumeError(f"--out {out}: {problem}: choose another --out")
    if not Path(args.data).exists():
        raise SystemExit(f"graft: --data {args.data}: no such file or folder")
    try:
        resolve_base(args.base)
    except RotaryModelError as e:
        raise SystemExit(f"graft: --base {args.base}: {e}") from None
    ckpt = guards.open_run_folder(out, resume=args.resume, finished=out / "adapter" / "card.json",
                                  kind="graft", say=lambda m: print(f"graft: {m}"))
    if ckpt is not None:
        guards.refuse_differences(out / checkpointing.CHECKPOINT_NAME,
                                  guards.differences(ckpt["options"], options_dict(args), RUNTIME_OPTIONS),
                                  RUNTIME_OPTIONS)
        if (out / "adapter" / "card.json").is_file() and ckpt["step"] >= args.steps:
            print(f"graft: {out} is finished (step {ckpt['step']}); nothing to do")
            return json.loads((out / "adapter" / "card.json").read_text())
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    checkpointing.remove_stale_temp_files(out)
    command = "python -m training.graft " + shlex.join(argv)

    built = build(args)
    bridge, lora_modules, fingerprint, base_name = (
        built.bridge, built.lora_modules, built.fingerprint, built.base_name)
    meta = prepare_tokens(args, built.tokenizer, out)
    start = window_start_id(args.window_start, built.tokenizer)
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
    last_checkpoint: int | None = None
    if ckpt is not None:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(ckpt["params"][k])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        checkpointing.restore_rng_state(ckpt["rng"])
        step, elapsed, history, base_eval = ckpt["step"], ckpt["elapsed"], ckpt["history"], ckpt["base_eval"]
        last_checkpoint = step
        truncate_metrics(out, step)
    history.append(guards.invocation("resume" if ckpt else "start", step, command))
    log = MetricsLog(out, tensorboard=False)
    n_trainable = sum(p.numel() for p in params.values())
    print(f"graft: {base_name} + {args.increments}, {n_trainable:,} trainable parameters, "
          f"{meta['train']['tokens']:,} train / {meta['val']['tokens']:,} held-out tokens; "
          f"{'resuming at step ' + str(step) if ckpt else 'starting'}", flush=True)
    if base_eval is None:  # step 0: the grafted model is exactly the base model
        base_eval = evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size, start)
        log.write({"kind": "eval", "step": 0, **base_eval})
        print(f"graft: base model held-out loss {base_eval['val_loss']:.4f}", flush=True)

    def extra() -> dict[str, Any]:
        return {"options": options_dict(args), "elapsed": elapsed, "history": history,
                "base_eval": base_eval, "fingerprint": fingerprint}

    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else math.inf
    t0 = time.monotonic()
    window_loss, window_n, window_t = 0.0, 0, time.monotonic()
    while step < args.steps:
        x, y = start_windows(*train_batch(train_tokens, step, args.batch_size, args.n_ctx, seed=args.seed), start)
        loss = lm_loss(bridge, x, y)
        if step + 1 == args.debug_nan_at_step:  # test hook: poisons the gradients too
            loss = loss * float("nan")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), args.grad_clip)
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
            log.write({"kind": "nonfinite", "step": step + 1, "loss": loss.item(),
                       "grad_norm": grad_norm.item()})
            guards.check_finite(step + 1, loss.item(), grad_norm.item(), guards.last_good_note(
                out / checkpointing.CHECKPOINT_NAME, last_checkpoint))
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
                       **evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size, start)})
        if step % args.checkpoint_every == 0 or step == args.steps:
            elapsed += time.monotonic() - t0
            t0 = time.monotonic()
            save_state(out, params, optimizer, scheduler, step, extra())
            last_checkpoint = step
        if time.monotonic() > deadline:
            elapsed += time.monotonic() - t0
            save_state(out, params, optimizer, scheduler, step, extra())
            print(f"graft: --max-minutes reached at step {step}; run the same command with --resume to go on")
            log.close()
            return {}
    elapsed += time.monotonic() - t0
    final = evaluate(bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size, start)
    log.write({"kind": "final", "step": step, **final})
    log.close()
    card = build_card(args, history, meta, step, elapsed, base_eval, final, n_trainable, base_name)
    card["window_start_id"] = start
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
            bridge, val_tokens, args.n_ctx, args.eval_windows, args.batch_size, start)["val_loss"]
    write_json_atomic(adapter / "card.json", card)
    write_text_atomic(adapter / "card.md", render_card(card))
    print(f"graft: done; held-out loss {base_eval['val_loss']:.4f} -> {final['val_loss']:.4f}; "
          f"adapter in {adapter}", flush=True)
    return card


