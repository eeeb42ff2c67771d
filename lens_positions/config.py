"""Model configuration: one dataclass of the architecture, TransformerLens field names where they exist.

`IncrementConfig` holds what defines the network (sizes, the increment variant, RoPE), like
nanoGPT's ``GPTConfig``. The attributes TransformerLens tooling reads from ``model.cfg``
(``normalization_type``, ``attn_only``, ``n_key_value_heads``, ``device``...) live in the base class
`TransformerLensAttributes`: they are fixed for this architecture, so they are not constructor
arguments and are not saved, but `ActivationCache` and `transformer_lens.patching` find them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

INCREMENT_VARIANTS: tuple[str, ...] = ("none", "shared", "per_layer")

#: Byte vocabulary: byte values 0-255 plus the document separator.
SEPARATOR_ID = 256
BYTE_VOCAB = 257

#: Keys older config files carry that are no longer constructor arguments (TransformerLens
#: attributes that were fields once); `IncrementConfig.from_dict` accepts and drops them.
LEGACY_KEYS = frozenset({"device", "model_name"})


class TransformerLensAttributes:
    """What TransformerLens reads from ``model.cfg``, fixed for this architecture.

    Plain class attributes, not dataclass fields: no constructor argument, nothing saved.
    ``device`` is the one that changes: the model sets it when it moves (patching reads it).
    """

    normalization_type = "RMS"
    act_fn = "silu"
    gated_mlp = True
    attn_only = False
    final_rms = True
    positional_embedding_type = "rotary"
    n_key_value_heads: int | None = None
    original_architecture = "HookedIncrementTransformer"
    model_name = "lens-positions"
    default_prepend_bos = True
    use_attn_result = False
    use_split_qkv_input = False
    use_attn_in = False
    use_hook_mlp_in = False
    device = "cpu"

    @property
    def dtype(self) -> Any:
        """Weights are float32 (torch imported here so that this module loads without it)."""
        import torch

        return torch.float32


@dataclass
class IncrementConfig(TransformerLensAttributes):
    """Architecture of a byte-level transformer whose RoPE positions are learned running sums.

    The defaults are the published ("paper") size: 256d, 8 heads, 6 layers, SwiGLU 1024, 512 bytes.

    increments:
        ``"none"``: integer RoPE (every δ is 1). ``"shared"``: one MLP reads the token embedding,
        softplus output, and every layer uses the same δ. ``"per_layer"``: one MLP per layer reads
        that layer's residual stream (RMSNorm on its input) and emits ``max_delta * sigmoid(x)``.
    per_head: each head gets its own δ (the increment MLP emits ``n_heads`` outputs).
    frozen_deltas: with ``increments="shared"``, replace the MLP by a fixed per-token lookup table
        (a buffer, not trained), e.g. one extracted from a trained shared model.
    signed: δ may be negative, ``1 + (max_delta - 1) * tanh(x / max_delta)`` in (2 - max_delta,
        max_delta) for shared and per-layer alike, so positions can step back (the post's relaxed
        variant; see `increments.signed_squash`). A frozen signed table may hold any finite δ in
        that range, an unsigned one only positive δ.
    learned_fraction: fraction of each head's rotary pairs turned by the learned position; the
        others turn by the integer position 1, 2, 3, ... (1 = every pair learned, 0 = integer RoPE).
        The learned pairs are the lowest-frequency ones: see `rotary`.
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
    signed: bool = False
    learned_fraction: float = 1.0
    max_delta: float = 10.0  # bound of the per-layer and signed δ (unbounded runs exploded past 500k)
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
        learned = self.increments != "none"
        if self.per_head and not learned:
            raise ValueError("per_head needs learned increments (increments='shared' or 'per_layer')")
        if self.frozen_deltas and self.increments != "shared":
            raise ValueError("frozen_deltas replaces the shared increment MLP: use increments='shared'")
        if self.signed and not learned:
            raise ValueError("signed needs learned increments (increments='shared' or 'per_layer')")
        if not (self.max_delta > 1.0 and math.isfinite(self.max_delta)):
            raise ValueError(f"max_delta must be a finite number above 1 (δ starts at 1), got {self.max_delta}")
        if self.signed and self.max_delta <= 2.0:
            raise ValueError(
                f"signed increments need max_delta > 2 (their range is (2 - max_delta, max_delta)), "
                f"got {self.max_delta}"
            )
        self._check_learned_fraction()

    def _check_learned_fraction(self) -> None:
        f = self.learned_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 <= f <= 1.0:
            raise ValueError(f"learned_fraction must be a number in [0, 1], got {f!r}")
        if f < 1.0 and self.increments == "none":
            raise ValueError("learned_fraction < 1 needs learned increments: with 'none' every pair is integer")
        pairs = self.d_head // 2
        if not math.isclose(f * pairs, round(f * pairs), abs_tol=1e-9):
            raise ValueError(
                f"learned_fraction {f} is not a whole number of rotary pairs: each head has {pairs} "
                f"pairs (d_head {self.d_head}), so use a multiple of 1/{pairs}"
            )

    # ------------------------------------------------------------------------------------------
    @property
    def n_delta_outputs(self) -> int:
        """Number of increments each token gets: n_heads with per-head rates, else 1."""
        return self.n_heads if self.per_head else 1

    @property
    def n_learned_pairs(self) -> int:
        """Rotary pairs per head turned by the learned position (the last, lowest-frequency ones)."""
        return round(self.learned_fraction * (self.d_head // 2))

    @property
    def variant_name(self) -> str:
        """Short human name: none, shared, shared-per-head, per-layer-signed, per-layer-learned-0.5, ..."""
        name = "frozen" if self.frozen_deltas else self.increments.replace("_", "-")
        name += "-per-head" if self.per_head else ""
        name += "-signed" if self.signed else ""
        if self.learned_fraction < 1.0:
            name += f"-learned-{self.learned_fraction:g}"
        return name

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-ready dict (no derived attributes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncrementConfig:
        """Inverse of `to_dict`; unknown keys are an error rather than silently dropped.

        Files written before the variants existed lack ``signed``/``learned_fraction`` (their
        defaults are the old model) and may carry `LEGACY_KEYS`, which are dropped.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - LEGACY_KEYS)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})
