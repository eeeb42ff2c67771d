"""Model configuration: one dataclass, TransformerLens field names where they exist.

`IncrementConfig` also carries the handful of attributes TransformerLens tooling reads from
`model.cfg` (``normalization_type``, ``attn_only``, ``n_key_value_heads``, ``device``...), so that
`ActivationCache` and `transformer_lens.patching` work on our model unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Increments = Literal["none", "shared", "per_layer"]
INCREMENT_VARIANTS: tuple[str, ...] = ("none", "shared", "per_layer")

#: Byte vocabulary: byte values 0-255 plus the document separator.
SEPARATOR_ID = 256
BYTE_VOCAB = 257


@dataclass
class IncrementConfig:
    """Architecture of a byte-level transformer whose RoPE positions are learned running sums.

    The defaults are the published ("paper") size: 256d, 8 heads, 6 layers, SwiGLU 1024, 512 bytes.

    increments:
        ``"none"``: integer RoPE (every δ is 1). ``"shared"``: one MLP reads the token embedding,
        softplus output, and every layer uses the same δ. ``"per_layer"``: one MLP per layer reads
        that layer's residual stream (RMSNorm on its input) and emits ``max_delta * sigmoid(x)``.
    per_head: each head gets its own δ (the increment MLP emits ``n_heads`` outputs).
    frozen_deltas: with ``increments="shared"``, replace the MLP by a fixed per-token lookup table
        (a buffer, not trained), e.g. one extracted from a trained shared model.
    """

    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    d_mlp: int = 1024
    n_ctx: int = 512
    d_vocab: int = BYTE_VOCAB
    d_head: int | None = None  # d_model // n_heads when left out
    increments: str = "none"
    per_head: bool = False
    frozen_deltas: bool = False
    max_delta: float = 10.0  # bound of the per-layer variant (unbounded runs exploded past 500k)
    d_delta: int | None = None  # hidden width of the increment MLP; d_model // 4 when left out
    rope_theta: float = 10_000.0
    eps: float = 1e-5  # RMSNorm epsilon of the transformer's own norms
    # Epsilon of the per-layer increment MLP's input RMSNorm. None = torch.finfo(dtype).eps, the
    # default of torch.nn.RMSNorm, which the reference experiment used.
    delta_eps: float | None = None
    initializer_range: float = 0.02
    seed: int | None = None
    # Attention backend: scaled_dot_product_attention unless a hook or cache needs the pattern.
    use_sdpa: bool = True
    device: str = "cpu"
    model_name: str = "lens-positions"

    # --- attributes TransformerLens tooling reads (fixed for this architecture) -----------------
    normalization_type: str = field(default="RMS", init=False, repr=False)
    act_fn: str = field(default="silu", init=False, repr=False)
    gated_mlp: bool = field(default=True, init=False, repr=False)
    attn_only: bool = field(default=False, init=False, repr=False)
    final_rms: bool = field(default=True, init=False, repr=False)
    positional_embedding_type: str = field(default="rotary", init=False, repr=False)
    n_key_value_heads: int | None = field(default=None, init=False, repr=False)
    original_architecture: str = field(default="HookedIncrementTransformer", init=False, repr=False)
    default_prepend_bos: bool = field(default=True, init=False, repr=False)
    use_attn_result: bool = field(default=False, init=False, repr=False)
    use_split_qkv_input: bool = field(default=False, init=False, repr=False)
    use_attn_in: bool = field(default=False, init=False, repr=False)
    use_hook_mlp_in: bool = field(default=False, init=False, repr=False)
    dtype: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.increments not in INCREMENT_VARIANTS:
            raise ValueError(
                f"unknown increments variant {self.increments!r}; "
                f"expected one of {', '.join(INCREMENT_VARIANTS)}"
            )
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads}); "
                    "pass d_head explicitly"
                )
            self.d_head = self.d_model // self.n_heads
        if self.d_head % 2:
            raise ValueError(f"d_head ({self.d_head}) must be even: RoPE rotates pairs of dims")
        if self.d_delta is None:
            self.d_delta = max(1, self.d_model // 4)
        for name in ("d_model", "n_heads", "n_layers", "d_mlp", "n_ctx", "d_vocab", "d_delta"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.per_head and self.increments == "none":
            raise ValueError("per_head needs learned increments (increments='shared' or 'per_layer')")
        if self.frozen_deltas and self.increments != "shared":
            raise ValueError("frozen_deltas replaces the shared increment MLP: use increments='shared'")
        if not (self.max_delta > 1.0 and math.isfinite(self.max_delta)):
            raise ValueError(f"max_delta must be a finite number above 1 (δ starts at 1), got {self.max_delta}")
        import torch

        self.dtype = torch.float32

    # ------------------------------------------------------------------------------------------
    @property
    def n_delta_outputs(self) -> int:
        """Number of increments each token gets: n_heads with per-head rates, else 1."""
        return self.n_heads if self.per_head else 1

    @property
    def variant_name(self) -> str:
        """Short human name: none, shared, shared-per-head, per-layer, frozen, ..."""
        name = "frozen" if self.frozen_deltas else self.increments.replace("_", "-")
        return name + ("-per-head" if self.per_head else "")

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-ready dict (no derived attributes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncrementConfig:
        """Inverse of `to_dict`; unknown keys are an error rather than silently dropped."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)
