"""The training loop: AdamW + warm-up/cosine, clipping, accumulation, DDP, checkpoints, evaluation.

`train(cfg, data_dir, out_dir)` runs (or resumes) one model and leaves in ``out_dir``:

- ``checkpoint.pt``: the latest training state (see `training.runs.checkpointing`), replaced
  atomically every ``checkpoint_every`` updates and at the end;
- ``metrics.jsonl``: the run's records (see `training.runs.metrics`), TensorBoard beside it if installed;
- ``final/``: the trained model (`save_pretrained`: config.json, model.safetensors, card.md,
  card.json) once the last update and the final evaluation are done.

Steps: ``step`` counts completed optimizer updates. Update k (1-based) trains on the batch
`training.tokens.windows.train_batch(step=k - 1)` and a checkpoint "at step k" holds the state after
it, so the data position is the step itself. Because batches depend only on the step and the
loop keeps no other state, a run killed at any moment and resumed from its checkpoint computes
exactly what the uninterrupted run computes (bit for bit on CPU; on GPU up to the determinism
of the kernels).

Non-finite losses: a NaN/Inf loss or gradient norm raises `NonFiniteLossError` naming the
update where it first appeared. The check runs before every checkpoint, so a checkpoint never
holds weights updated by a non-finite gradient; on CPU it runs after every update, on GPU at
every log interval (avoiding a device synchronisation per update).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lens_positions import HookedIncrementTransformer
from lens_positions.checkpoints import save_pretrained
from training.runs import checkpointing, guards
from training.runs.cards import CARD_JSON, build_card, render_card, utc_now
from training.runs.guards import NonFiniteLossError, ResumeError
from training.runs.metrics import MetricsLog, bits_per_byte, delta_stats, say, truncate_metrics
from training.runs.schedule import warmup_cosine
from training.tokens.byte_tokens import OOD, load_tokens, read_metadata
from training.tokens.windows import TrainWindows, train_batch, val_batches
from training.train import distributed
from training.train.configs import RUNTIME_FIELDS, TrainConfig
from training.train.frozen import FINAL_NAME, frozen_table

#: Validation windows whose δ statistics are logged at every evaluation.
DELTA_SAMPLE_WINDOWS = 8


@dataclass
class RunOptions:
    """How to run (not what to train): invocation details and test hooks."""

    resume: bool = False
    progress: bool = True
    tensorboard: bool | None = None  # None: when installed
    command: str | None = None  # recorded in the card; defaults to "train(...)"
    nan_at_step: int | None = None  # test hook: the loss of this update (1-based) becomes NaN
    step_delay: float = 0.0  # test hook: seconds slept after each update


@dataclass
class TrainResult:
    """Outcome of `train`: where the model is and how well it does."""

    out_dir: Path
    final_dir: Path
    steps: int
    val_loss: float
    val_bpb: float
    tokens_seen: int
    wall_time_s: float
    card: dict[str, Any] = field(repr=False)


# ------------------------------------------------------------------------------------ helpers
def build_model(cfg: TrainConfig, load_table: bool = True) -> HookedIncrementTransformer:
    """A freshly initialised model (seeded by ``cfg.seed``), with its frozen table if any.

    load_table: read the frozen table from ``cfg.frozen_from``; a resumed run skips it, since
    the table is a buffer of the checkpointed state (the source may have moved since).
    """
    model = HookedIncrementTransformer(cfg.model_config())
    if cfg.paired_init and cfg.model.increments != "none":
        # Without this the increment modules, created between the embedding and the blocks or
        # inside each block, shift the random stream and every variant starts from other weights.
        plain = dict(increments="none", per_head=False, signed=False, learned_fraction=1.0)
        base = HookedIncrementTransformer(cfg.replace(frozen_from=None, **plain).model_config())
        own = model.state_dict()
        common = {k: v for k, v in base.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(common, strict=False)
    if cfg.frozen_from is not None and load_table:
        model.set_frozen_deltas(frozen_table(cfg.frozen_from))
    return model


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def data_fingerprint(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of the token metadata that must not change under a resumed run."""
    return {
        "spec": meta.get("spec"),
        "split": meta.get("split"),
        "train_tokens": meta["train"]["tokens"],
        "val_tokens": meta["val"]["tokens"],
    }


def config_differences(stored: TrainConfig, requested: TrainConfig, fields: set[str] | None = None) -> list[str]:
    """Fields (outside `RUNTIME_FIELDS`) where the requested config differs from the stored one.

    Model fields are named ``model.<name>``.
    """
    a, b = stored.flat_dict(), requested.flat_dict()
    if fields is not None:
        a, b = {k: a[k] for k in fields}, {k: b[k] for k in fields}
    return guards.differences(a, b, RUNTIME_FIELDS)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokens: Any,
    n_ctx: int,
    batch_size: int,
    max_windows: int | None,
    device: torch.device,
    precision: str,
    ctx: distributed.DistContext,
    prefix: str = "val",
    spread: bool = False,
) -> dict[str, float]:
    """Mean next-byte loss over the fixed validation windows (split across processes).

    Keys: `{prefix}_loss` (nats/byte), `{prefix}_bpb`, `{prefix}_tokens`, `{prefix}_windows`.
    spread: take the `max_windows` windows evenly spaced over the split instead of the first ones.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, targets, windows
    for x, y in val_batches(
        tokens, n_ctx, batch_size, max_windows=max_windows, rank=ctx.rank,
        world_size=ctx.world_size, spread=spread,
    ):
        x, y = x.to(device), y.to(device)
        with autocast_context(precision, device):
            logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")
        sums[0] += loss.double()
        sums[1] += y.numel()
        sums[2] += x.shape[0]
    distributed.all_reduce_sum_(sums)
    model.train(was_training)
    loss_sum, n_targets, n_windows = sums.tolist()
    loss = loss_sum / max(n_targets, 1.0)
    return {
        f"{prefix}_loss": loss,
        f"{prefix}_bpb": bits_per_byte(loss),
        f"{prefix}_tokens": int(n_targets),
        f"{prefix}_windows": int(n_windows),
    }


# ------------------------------------------------------------------------------------ the run
class _Run:
    """State of one training run; `train` is the public entry point."""

    def __init__(
        self,
        cfg: TrainConfig,
        data_dir: Path,
        out_dir: Path,
        options: RunOptions,
        ctx: distributed.DistContext,
        device: torch.device,
    ):
        self.cfg, self.data_dir, self.out_dir, self.options = cfg, data_dir, out_dir, options
        self.ctx, self.device = ctx, device
        self.precision = resolve_precision(cfg.precision, device)
        self.ckpt_path = out_dir / checkpointing.CHECKPOINT_NAME
        self.final_dir = out_dir / FINAL_NAME
        self.per_rank = cfg.batch_size // ctx.world_size
        self.micro = self.per_rank // cfg.grad_accum
        if cfg.batch_size % (ctx.world_size * cfg.grad_accum):
            raise ValueError(
                f"batch_size {cfg.batch_size} must be divisible by processes x grad_accum "
                f"= {ctx.world_size} x {cfg.grad_accum}"
            )
        self.meta = read_metadata(data_dir)
        self.train_tokens = load_tokens(data_dir, "train")
        self.val_tokens = load_tokens(data_dir, "val")
        # Whole sources never trained on (token folders built with --ood-spec), else None.
        self.ood_tokens = load_tokens(data_dir, OOD) if OOD in self.meta else None
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0  # wall time of earlier sessions (up to their last checkpoint)
        self.history: list[dict[str, Any]] = []
        self.last_ckpt_step: int | None = None

    # -------------------------------------------------------------------------------- set-up
    def _say(self, message: str) -> None:
        if self.ctx.is_main:
            say(message)

    def _prepare_out_dir(self) -> dict[str, Any] | None:
        """Check the output folder; return the checkpoint to resume from, if any."""
        return guards.open_run_folder(self.out_dir, resume=self.options.resume,
                                      finished=self.final_dir / CARD_JSON, kind="train", say=self._say)

    def _check_resumable(self, ckpt: dict[str, Any]) -> None:
        stored = TrainConfig.from_dict(ckpt["config"])
        guards.refuse_differences(self.ckpt_path, config_differences(stored, self.cfg), RUNTIME_FIELDS)
        if ckpt["data"]["fingerprint"] != data_fingerprint(self.meta):
            raise ResumeError(
                f"{self.ckpt_path} was trained on other token files than {self.data_dir} "
                f"(checkpoint {ckpt['data']['fingerprint']} vs now {data_fingerprint(self.meta)})"
            )

    def _set_threads(self) -> None:
        if self.device.type != "cpu":
            return
        cores = os.cpu_count() or 1
        threads = self.cfg.threads or max(1, cores // self.ctx.local_world_size)
        torch.set_num_threads(threads)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if threads > 1 and load > cores - 0.5:
            # Measured on 2 shared cores: 2 threads fell to ~1.6k tokens/s while 1 thread kept
            # ~5.7k, because OpenMP threads wait for each other when a core is taken.
            self._say(f"warning: load average {load:.1f} on {cores} cores; while other jobs run, "
                      "--threads 1 can be several times faster")

    # -------------------------------------------------------------------------------- data
    def _train_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's batches for the updates from the current step on."""
        cfg = self.cfg
        if cfg.workers == 0:
            for step in range(self.step, cfg.steps):
                yield train_batch(
                    self.train_tokens, step, self.per_rank, cfg.model.n_ctx,
                    seed=cfg.windows_seed, rank=self.ctx.rank, world_size=self.ctx.world_size,
                )
            return
        dataset = TrainWindows(
            self.data_dir, self.per_rank, cfg.model.n_ctx, seed=cfg.windows_seed, rank=self.ctx.rank,
            world_size=self.ctx.world_size, start_step=self.step, end_step=cfg.steps,
        )
        yield from DataLoader(
            dataset, batch_size=None, num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4,
        )

    def _delta_sample(self) -> Tensor:
        x, _ = next(val_batches(self.val_tokens, self.cfg.model.n_ctx, DELTA_SAMPLE_WINDOWS, max_windows=DELTA_SAMPLE_WINDOWS))
        return x.to(self.device)

    # -------------------------------------------------------------------------------- saving
    def _checkpoint(self, model: HookedIncrementTransformer, optimizer: Any, scheduler: Any, elapsed: float) -> None:
        if self.ctx.is_main:
            checkpointing.save_checkpoint(self.ckpt_path, {
                "kind": "train",
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "elapsed_s": elapsed,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": checkpointing.capture_rng_state(),
                "config": self.cfg.to_dict(),
                "model_config": model.cfg.to_dict(),
                "data": {"dir": str(self.data_dir), "fingerprint": data_fingerprint(self.meta)},
                "history": self.history,
                "world_size": self.ctx.world_size,
            })
        self.last_ckpt_step = self.step
        distributed.barrier()

    def _checkpoint_note(self) -> str:
        return guards.last_good_note(self.ckpt_path, self.last_ckpt_step)

    # -------------------------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        ckpt = self._prepare_out_dir()
        if ckpt is not None:
            self._check_resumable(ckpt)
        previous_threads = torch.get_num_threads()
        self._set_threads()
        try:
            return self._run(ckpt)
        finally:
            torch.set_num_threads(previous_threads)

    def _run(self, ckpt: dict[str, Any] | None) -> TrainResult:
        cfg, device = self.cfg, self.device
        model = build_model(cfg, load_table=ckpt is None)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
        model.to(device).train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay, fused=device.type == "cuda",
        )
        scheduler = warmup_cosine(optimizer, cfg.warmup_steps, cfg.steps)
        event = "start"
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            checkpointing.restore_rng_state(ckpt["rng"])
            self.step, self.tokens_seen = ckpt["step"], ckpt["tokens_seen"]
            self.elapsed_before, self.history = ckpt["elapsed_s"], list(ckpt["history"])
            self.last_ckpt_step = self.step
            event = "resume"
        self.history.append(guards.invocation(
            event, self.step, self.options.command or f"train(out_dir={str(self.out_dir)!r})",
            world_size=self.ctx.world_size, device=str(device),
        ))

        train_model: nn.Module = model
        if self.ctx.enabled:
            # Buffers (a frozen δ table) never change, so skip re-broadcasting them.
            train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        if cfg.compile:
            train_model = torch.compile(train_model)

        log = None
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            checkpointing.remove_stale_temp_files(self.out_dir)
            # A fresh start drops records of earlier attempts that never reached a checkpoint.
            truncate_metrics(self.out_dir, self.step if event == "resume" else -1)
            log = MetricsLog(self.out_dir, tensorboard=self.options.tensorboard)
            log.write({"kind": "event", "event": event, "step": self.step, "time": utc_now(),
                       "variant": cfg.variant_name, "world_size": self.ctx.world_size,
                       "device": str(device), "precision": self.precision,
                       "parameters": sum(p.numel() for p in model.parameters())})
        try:
            self._loop(model, train_model, optimizer, scheduler, log)
            return self._finish(model, log)
        except NonFiniteLossError as e:
            if log is not None:
                log.write({"kind": "event", "event": "stop", "step": e.step, "message": str(e)})
            raise
        finally:
            if log is not None:
                log.close()

    def _loop(self, model: HookedIncrementTransformer, train_model: nn.Module, optimizer: Any,
              scheduler: Any, log: MetricsLog | None) -> None:
        cfg, device, ctx = self.cfg, self.device, self.ctx
        session_t0 = time.monotonic()
        elapsed = lambda: self.elapsed_before + time.monotonic() - session_t0  # noqa: E731
        tokens_per_update = cfg.batch_size * cfg.model.n_ctx
        check_every = 1 if device.type == "cpu" else cfg.log_every
        # Non-finite tracking on the device: (first bad update or -1, its loss, its grad norm).
        bad = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64, device=device)
        window_loss = torch.zeros((), dtype=torch.float64, device=device)
        window_updates, window_tokens, window_t0 = 0, 0, time.monotonic()
        grad_norm = torch.zeros((), device=device)
        delta_sample = self._delta_sample() if ctx.is_main else None
        nan = torch.tensor(float("nan"), device=device)

        def check_finite() -> None:
            first_bad, loss, norm = bad.tolist()
            if first_bad >= 0:
                raise NonFiniteLossError(int(first_bad), loss, norm, self._checkpoint_note())

        bar = tqdm(
            total=cfg.steps, initial=self.step, unit="step", desc=cfg.variant_name,
            disable=not (self.options.progress and ctx.is_main), dynamic_ncols=True,
        )
        try:
            for x, y in self._train_batches():
                if device.type == "cuda" and not x.is_pinned():
                    # A copy from pageable memory waits for the GPU; pinned memory lets it queue.
                    x, y = x.pin_memory(), y.pin_memory()
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                update = self.step + 1
                lr = scheduler.get_last_lr()[0]
                step_loss = torch.zeros((), device=device)
                for i in range(cfg.grad_accum):
                    rows = slice(i * self.micro, (i + 1) * self.micro)
                    # Only the last micro-batch all-reduces gradients across processes.
                    defer_sync = ctx.enabled and i < cfg.grad_accum - 1
                    with train_model.no_sync() if defer_sync else contextlib.nullcontext():
                        with autocast_context(self.precision, device):
                            logits = train_model(x[rows])
                        loss = F.cross_entropy(logits.flatten(0, 1).float(), y[rows].flatten())
                        if update == self.options.nan_at_step and i == 0:
                            loss = loss * nan  # poisons the gradients too, like a real blow-up
                        (loss / cfg.grad_accum).backward()
                    step_loss += loss.detach() / cfg.grad_accum
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                is_bad = ~(torch.isfinite(step_loss) & torch.isfinite(grad_norm)) & (bad[0] < 0)
                # torch.full launches a fill on the device; torch.tensor would copy from the host.
                found = torch.stack([torch.full((), float(update), device=device, dtype=torch.float64),
                                     step_loss.double(), grad_norm.double()])
                bad.copy_(torch.where(is_bad, found, bad))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                self.step = update
                self.tokens_seen += tokens_per_update
                window_loss += step_loss.double()
                window_updates += 1
                window_tokens += tokens_per_update
                bar.update(1)
                if self.options.step_delay:
                    time.sleep(self.options.step_delay)

                is_last = self.step == cfg.steps
                do_log = self.step % cfg.log_every == 0 or is_last
                do_eval = self.step % cfg.eval_every == 0 and not is_last  # the final eval follows
                do_ckpt = self.step % cfg.checkpoint_every == 0 or is_last
                if self.step % check_every == 0 or do_log or do_eval or do_ckpt:
                    check_finite()
                if do_log:
                    distributed.all_reduce_sum_(window_loss)
                    train_loss = window_loss.item() / (window_updates * ctx.world_size)
                    rate = window_tokens / max(time.monotonic() - window_t0, 1e-9)
                    record = {
                        "kind": "train", "step": self.step, "loss": train_loss,
                        "bpb": bits_per_byte(train_loss), "lr": lr, "grad_norm": grad_norm.item(),
                        "tokens": self.tokens_seen, "tokens_per_s": rate, "elapsed_s": elapsed(),
                    }
                    if log is not None:
                        log.write(record)
                    bar.set_postfix(loss=f"{train_loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
                    if not self.options.progress:
                        self._say(f"step {self.step}/{cfg.steps} loss {train_loss:.4f} "
                                  f"({bits_per_byte(train_loss):.3f} bpb) lr {lr:.2e} {rate:,.0f} tok/s")
                    window_loss.zero_()
                    window_updates, window_tokens, window_t0 = 0, 0, time.monotonic()
                if do_eval:
                    self._evaluate(model, log, cfg.eval_windows, "eval", delta_sample, elapsed())
                if do_ckpt:
                    self._checkpoint(model, optimizer, scheduler, elapsed())
                if do_eval or do_ckpt:  # keep evaluation and saving out of tokens/s
                    window_tokens, window_t0 = 0, time.monotonic()
        finally:
            bar.close()
        self.elapsed_before = elapsed()

    def _evaluate(self, model: HookedIncrementTransformer, log: MetricsLog | None,
                  max_windows: int | None, kind: str, delta_sample: Tensor | None,
                  elapsed: float) -> dict[str, Any]:
        result = evaluate(model, self.val_tokens, self.cfg.model.n_ctx, self.cfg.eval_batch_size,
                          max_windows, self.device, self.precision, self.ctx)
        if self.ood_tokens is not None:
            # Spread: the ood split holds whole sources one after another in document order, so
            # the first windows would all come from one source.
            result.update(evaluate(model, self.ood_tokens, self.cfg.model.n_ctx, self.cfg.eval_batch_size,
                                   max_windows, self.device, self.precision, self.ctx,
                                   prefix=OOD, spread=True))
        record: dict[str, Any] = {"kind": kind, "step": self.step, **result, "elapsed_s": elapsed}
        if delta_sample is not None:
            with autocast_context(self.precision, self.device):
                record["delta"] = delta_stats(model.get_deltas(delta_sample))
        if log is not None:
            log.write(record)
        means = " ".join(f"{d['mean']:.2f}" for d in record.get("delta", []))
        ood = (f"; ood loss {result['ood_loss']:.4f} ({result['ood_bpb']:.4f} bpb)"
               if "ood_loss" in result else "")
        self._say(f"step {self.step}: val loss {result['val_loss']:.4f} ({result['val_bpb']:.4f} bpb) "
                  f"over {result['val_windows']} windows{ood}; δ mean per layer {means}")
        return record

    def _finish(self, model: HookedIncrementTransformer, log: MetricsLog | None) -> TrainResult:
        cfg = self.cfg
        digests = distributed.gather_digests(model)
        if len(set(digests)) > 1:
            raise RuntimeError(f"data-parallel processes ended with different weights: {digests}")
        if log is not None and self.ctx.enabled:
            log.write({"kind": "event", "event": "ranks_consistent", "step": self.step, "digests": digests})
        delta_sample = self._delta_sample() if self.ctx.is_main else None
        final = self._evaluate(model, log, cfg.final_eval_windows, "final", delta_sample, self.elapsed_before)
        final_summary = {k: final[k] for k in ("val_loss", "val_bpb", "val_tokens", "val_windows",
                                               "ood_loss", "ood_bpb", "ood_tokens", "ood_windows")
                         if k in final}
        card = build_card(
            variant=cfg.variant_name, train_config=cfg.to_dict(), model_config=model.cfg.to_dict(),
            history=self.history, data_dir=str(self.data_dir), data_meta=self.meta, steps=self.step,
            tokens_seen=self.tokens_seen, wall_time_s=self.elapsed_before, final=final_summary,
            parameters=sum(p.numel() for p in model.parameters()), world_size=self.ctx.world_size,
            device=str(self.device), precision=self.precision,
        )
        if self.ctx.is_main:
            save_pretrained(
                model, self.final_dir, card=render_card(card),
                extra_files={CARD_JSON: json.dumps(card, indent=2, ensure_ascii=False) + "\n"},
            )
            self._say(f"saved {self.final_dir}: val loss {final['val_loss']:.4f} nats/byte, "
                      f"{final['val_bpb']:.4f} bits/byte after {self.step} steps")
        distributed.barrier()
        return TrainResult(
            out_dir=self.out_dir, final_dir=self.final_dir, steps=self.step,
            val_loss=final["val_loss"], val_bpb=final["val_bpb"], tokens_seen=self.tokens_seen,
            wall_time_s=self.elapsed_before, card=card,
        )


def finished_result(out_dir: str | os.PathLike) -> TrainResult | None:
    """The result of a run whose ``final/card.json`` exists, else None."""
    out_dir = Path(out_dir)
    card_path = out_dir / FINAL_NAME / CARD_JSON
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text(encoding="utf-8"))
    return TrainResult(
        out_dir=out_dir, final_dir=out_dir / FINAL_NAME, steps=card["steps"],
        val_loss=card["final"]["val_loss"], val_bpb=card["final"]["val_bpb"],
        tokens_seen=card["tokens_seen"], wall_time_s=card["wall_time_s"], card=card,
    )


def train(
    cfg: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: RunOptions | None = None,
) -> TrainResult:
    """Train (or, with ``options.resume``, continue) one model; see the module docstring.

    Call inside a torchrun launch for data-parallel training: the process group is joined here
    if it is not yet (the caller may tear it down with `training.train.distributed.teardown`).
    """
    options = options or RunOptions()
    out_dir = Path(out_dir)
    if options.resume and (done := finished_result(out_dir)) is not None:
        diffs = config_differences(TrainConfig.from_dict(done.card["train_config"]), cfg)
        if diffs:
            raise ResumeError(f"{out_dir} finished with other settings: " + "; ".join(diffs))
        if distributed.context_from_env().is_main:
            say(f"{out_dir} already finished ({done.steps} steps): nothing to do")
        return done
    ctx, device = distributed.setup(cfg.device)
    if not math.isfinite(cfg.lr):
        raise ValueError(f"lr must be finite, got {cfg.lr}")
    return _Run(cfg, Path(data_dir), out_dir, options, ctx, device).run()
