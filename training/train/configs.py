"""Training configurations: one dataclass holding every setting, and the named presets.

`TrainConfig` holds the model's `IncrementConfig` (``cfg.model``: every architecture field,
rope_theta, d_delta, eps and the variants' signed / learned_fraction included), the optimisation,
evaluation and bookkeeping, and the system settings. Presets (`named_config`):

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
from dataclasses import dataclass, field
from typing import Any

from lens_positions.config import IncrementConfig

#: Model fields the training config sets itself: the seed (``TrainConfig.seed`` initialises the
#: model) and frozen deltas (on exactly when ``frozen_from`` names a source model).
DERIVED_MODEL_FIELDS = frozenset({"seed", "frozen_deltas"})
#: `IncrementConfig` fields a training config may set, directly in ``model`` or through `replace`.
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(IncrementConfig)) - DERIVED_MODEL_FIELDS


@dataclass
class TrainConfig:
    """Everything that defines a training run (the data directory and output folder aside)."""

    # --- model ---------------------------------------------------------------------------------
    # The architecture, as the model gets it (seed and frozen_deltas are set from the fields below).
    model: IncrementConfig = field(default_factory=IncrementConfig)
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
        if not isinstance(self.model, IncrementConfig):
            raise TypeError(f"model must be an IncrementConfig, got {type(self.model).__name__}")
        frozen = self.frozen_from is not None
        if self.model.seed != self.seed or self.model.frozen_deltas != frozen:
            # validated again: frozen_from with a non-shared model is refused by IncrementConfig
            self.model = dataclasses.replace(self.model, seed=self.seed, frozen_deltas=frozen)
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
        return self.model.variant_name

    def model_config(self) -> IncrementConfig:
        """A copy of the model's architecture, for building one model."""
        return dataclasses.replace(self.model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the training fields, and the model's under ``model`` (derived ones left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        model = {k: v for k, v in self.model.to_dict().items() if k not in DERIVED_MODEL_FIELDS}
        return {"model": model, **out}

    def flat_dict(self) -> dict[str, Any]:
        """`to_dict` with the model's fields as ``model.<name>`` keys (for comparing two configs)."""
        data = self.to_dict()
        return {**{f"model.{k}": v for k, v in data.pop("model").items()}, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`. Unknown keys are an error.

        Also reads the flat layout of runs made before the model config was nested (model
        fields such as ``d_model`` or ``increments`` beside the training ones); fields such a
        run could not set take their defaults, which are what it used.
        """
        data = dict(data)
        model = dict(data.pop("model", None) or {})
        for name in sorted(set(data) & MODEL_FIELDS):
            if name in model:
                raise ValueError(f"training config sets {name!r} both at the top level and under 'model'")
            model[name] = data.pop(name)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        model = {k: v for k, v in model.items() if k not in DERIVED_MODEL_FIELDS}
        return cls(model=IncrementConfig.from_dict(model), **data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again).

        Model fields may be named directly (``replace(increments="per_layer", signed=True)``).
        """
        model_changes = {k: changes.pop(k) for k in list(changes) if k in MODEL_FIELDS}
        if "frozen_deltas" in changes:
            raise ValueError("frozen_deltas follows from frozen_from (a source model's folder): set that")
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        if model_changes or "frozen_from" in changes:
            frozen = changes.get("frozen_from", self.frozen_from) is not None
            model = changes.get("model", self.model)
            changes["model"] = dataclasses.replace(model, frozen_deltas=frozen, **model_changes)
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
        model=IncrementConfig(d_model=128, n_heads=4, n_layers=4, d_mlp=512, n_ctx=256),
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
        model=IncrementConfig(d_model=32, n_heads=2, n_layers=2, d_mlp=64, n_ctx=32),
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
