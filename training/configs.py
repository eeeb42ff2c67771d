"""Training configurations: one dataclass holding every setting, and the named presets.

`TrainConfig` covers the model architecture, the optimisation, evaluation and bookkeeping, and
the system settings. Presets (`named_config`):

- ``paper``: the published setup (256d / 8 heads / 6 layers, SwiGLU 1024, 512-byte context,
  batch 64, 50k steps, AdamW lr 1e-3, weight decay 0.01, 500 warm-up steps, cosine to 0).
- ``cpu``: a 1.1M-parameter model (128d / 4 heads / 4 layers, SwiGLU 512, 256-byte context,
  batch 32) sized to train for about an hour on 2 CPU cores (~10k tokens/s measured there).
- ``tiny``: a few-thousand-parameter model for tests; it trains in seconds.

Batch semantics: ``batch_size`` is the number of sequences per optimizer step, summed over all
data-parallel ranks and gradient-accumulation micro-batches. The data stream and the
hyper-parameters therefore do not change when the same run is spread over more processes or
split into more micro-batches; only float reduction order does.

AdamW betas default to (0.9, 0.999), torch's defaults, which the reference experiment used
(it passed only lr and weight_decay); weight decay applies to every parameter, as there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lens_positions.config import INCREMENT_VARIANTS, IncrementConfig


@dataclass
class TrainConfig:
    """Everything that defines a training run (the data directory and output folder aside)."""

    # --- model ---------------------------------------------------------------------------------
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    d_mlp: int = 1024
    n_ctx: int = 512
    increments: str = "none"  # none | shared | per_layer
    per_head: bool = False
    max_delta: float = 10.0
    # Folder of a trained shared model (save_pretrained output or a run folder with final/):
    # its per-token deltas become the fixed table of a frozen-deltas model.
    frozen_from: str | None = None
    # Initialise every weight the variants have in common (embedding, attention, MLPs, norms)
    # from the same draws as the integer-RoPE model of this seed, so that a comparison of
    # variants is paired: they differ only in the increment machinery, not in their init.
    paired_init: bool = True

    # --- optimisation --------------------------------------------------------------------------
    steps: int = 50_000
    batch_size: int = 64  # sequences per optimizer step, over all ranks and micro-batches
    grad_accum: int = 1  # micro-batches per optimizer step (per rank)
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 500
    grad_clip: float = 1.0
    seed: int = 0  # model initialisation
    data_seed: int | None = None  # training windows; None = same as seed

    # --- evaluation and bookkeeping (may change on resume: they do not touch the weights) ------
    eval_every: int = 1000
    eval_windows: int | None = 512  # validation windows per periodic evaluation (None = all)
    final_eval_windows: int | None = None  # windows of the final evaluation (None = all)
    eval_batch_size: int = 64
    log_every: int = 50
    checkpoint_every: int = 1000

    # --- system (may change on resume) ---------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False
    workers: int = 0  # DataLoader worker processes for training windows (0 = in the loop)
    threads: int | None = None  # torch CPU threads; None = CPU cores / processes on this node

    def __post_init__(self) -> None:
        if self.increments not in INCREMENT_VARIANTS:
            raise ValueError(
                f"unknown increments {self.increments!r}; expected one of {', '.join(INCREMENT_VARIANTS)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        positive = (
            "steps",
            "batch_size",
            "grad_accum",
            "eval_every",
            "eval_batch_size",
            "log_every",
            "checkpoint_every",
            "n_ctx",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_windows", "final_eval_windows", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")
        if self.warmup_steps < 0 or self.workers < 0:
            raise ValueError("warmup_steps and workers must be >= 0")
        if not (self.lr > 0 and self.grad_clip > 0 and self.weight_decay >= 0):
            raise ValueError("lr and grad_clip must be > 0 and weight_decay >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})"
            )

    # ------------------------------------------------------------------------------------------
    @property
    def windows_seed(self) -> int:
        """Seed of the training-window stream."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def variant_name(self) -> str:
        """Short variant name (none, shared, per-layer, shared-per-head, frozen, ...)."""
        return self.model_config().variant_name

    def model_config(self) -> IncrementConfig:
        """The model's architecture (frozen deltas when a source model is named)."""
        return IncrementConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_mlp=self.d_mlp,
            n_ctx=self.n_ctx,
            increments=self.increments,
            per_head=self.per_head,
            frozen_deltas=self.frozen_from is not None,
            max_delta=self.max_delta,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


PRECISIONS = ("auto", "bf16", "fp32")

#: Fields that only affect how a run is executed or observed, never the weights it produces
#: (precision aside, which is allowed so a CPU run can be finished on a GPU): a resumed run may
#: change them. Every other field must match the checkpoint.
RUNTIME_FIELDS = frozenset(
    {
        "eval_every",
        "eval_windows",
        "final_eval_windows",
        "eval_batch_size",
        "log_every",
        "checkpoint_every",
        "device",
        "precision",
        "compile",
        "workers",
        "threads",
    }
)


def _paper() -> TrainConfig:
    return TrainConfig()


def _cpu() -> TrainConfig:
    # Measured on an idle 2-core machine: ~9.5-10k tokens/s (per-layer / none), so
    # 4,000 steps x 32 x 256 = 33M tokens take about an hour, evaluations included.
    # Other jobs on the same cores slow it down several-fold: check the load first.
    return TrainConfig(
        d_model=128,
        n_heads=4,
        n_layers=4,
        d_mlp=512,
        n_ctx=256,
        steps=4_000,
        batch_size=32,
        warmup_steps=300,
        eval_every=250,
        eval_windows=128,
        eval_batch_size=32,
        log_every=10,
        checkpoint_every=250,
    )


def _tiny() -> TrainConfig:
    return TrainConfig(
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_mlp=64,
        n_ctx=32,
        steps=200,
        batch_size=8,
        lr=3e-3,
        warmup_steps=20,
        eval_every=50,
        eval_windows=16,
        eval_batch_size=16,
        log_every=10,
        checkpoint_every=50,
    )


NAMED_CONFIGS = {"paper": _paper, "cpu": _cpu, "tiny": _tiny}


def named_config(name: str) -> TrainConfig:
    """A fresh copy of a preset: ``paper``, ``cpu`` or ``tiny``."""
    try:
        return NAMED_CONFIGS[name]()
    except KeyError:
        raise ValueError(
            f"unknown config {name!r}; choose from {', '.join(NAMED_CONFIGS)}"
        ) from None
