"""Each model family's rotary layout, read from the model itself.

A grafted bridge computes its own (cos, sin) tables at the learned positions (HF computes its
tables under ``no_grad``, which would cut the gradient to δ), so it must build them exactly as the
model's attention expects them. Families differ in three ways, and all three are read from the
model rather than assumed:

- **pair order**: Llama-style models rotate half-split pairs (dimension i with i + rot/2: the
  angle table concatenated with itself), Cohere-style models interleaved pairs (2i with 2i + 1:
  each angle repeated twice);
- **partial rotary**: Phi-3, StableLM and others rotate only the first ``rot`` dimensions of each
  head; the table's width (twice ``inv_freq``'s length) says how many;
- **one table per layer type**: Gemma 3's sliding-window layers and full-attention layers rotate
  with different bases (θ 10,000 and 1,000,000), ``{layer_type}_inv_freq`` on one module, and each
  decoder layer is told its own.

`rotary_tables` probes the model's rotary module at real-valued positions and keeps, per table,
the layout whose formula reproduces it (to float error); a table that matches neither layout, or
a rotary whose frequencies change with the sequence length, is a `RotaryModelError`, never a
silent guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lens_positions.rotary_adapter import RotaryModelError

#: Rotary types whose frequency table is fixed (the dynamic ones recompute it from the length).
STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn", "longrope_static"})
#: Real-valued positions the layout is probed at (float32 angles: a relative error of 1e-5 covers
#: them at position 100 with the largest inverse frequency 1).
PROBE_POSITIONS = (0.0, 1.0, 2.5, 7.25, 31.0, 100.0)


@dataclass(frozen=True)
class RotaryTable:
    """How one table of a model's rotary turns positions into (cos, sin).

    inv_freq: [rot / 2] inverse frequencies; scaling: the attention scaling its cos and sin carry;
    interleaved: pairs (2i, 2i + 1) instead of (i, i + rot/2); layer_type: the decoder layers it
    serves (``None``: every layer).
    """

    inv_freq: Tensor
    scaling: float
    interleaved: bool
    layer_type: str | None = None

    def cos_sin(
        self, positions: Float[Tensor, "batch pos"], dtype: torch.dtype
    ) -> tuple[Float[Tensor, "batch pos rot"], Float[Tensor, "batch pos rot"]]:
        """The table at real-valued positions, differentiable in them, computed in float32 and
        cast to the activations' dtype."""
        with torch.autocast(device_type=positions.device.type, enabled=False):
            freqs = positions.float()[..., None] * self.inv_freq.to(positions.device).float()
            if self.interleaved:
                emb = torch.repeat_interleave(freqs, 2, dim=-1)
            else:
                emb = torch.cat((freqs, freqs), dim=-1)
            return (emb.cos() * self.scaling).to(dtype), (emb.sin() * self.scaling).to(dtype)


def rotary_module(hf_model: nn.Module, name: str) -> nn.Module:
    """The model's rotary embedding module (``model.rotary_emb``), or a clear error."""
    cfg = hf_model.config
    rotary = getattr(getattr(hf_model, "model", None), "rotary_emb", None)
    if rotary is None:
        kind = getattr(cfg, "model_type", type(hf_model).__name__)
        hint = (
            " (it uses learned absolute position embeddings)"
            if hasattr(cfg, "n_positions") or kind in {"gpt2", "opt", "gpt_neo"}
            else ""
        )
        raise RotaryModelError(
            f"{name!r} is a {kind!r} model without a model-level rotary embedding "
            f"(model.rotary_emb){hint}: learned increments replace rotary positions, so they need "
            "a rotary model whose layers take their (cos, sin) from one"
        )
    return rotary


def rotary_tables(hf_model: nn.Module, name: str) -> list[RotaryTable]:
    """One `RotaryTable` per decoder layer, read from the model (see the module doc)."""
    rotary = rotary_module(hf_model, name)
    cfg = hf_model.config
    n_layers = len(hf_model.model.layers)
    if isinstance(getattr(rotary, "inv_freq", None), Tensor):
        kinds: list[str | None] = [None]
        per_layer: list[str | None] = [None] * n_layers
    else:
        layer_types = list(getattr(cfg, "layer_types", None) or [])
        kinds = sorted(set(layer_types))
        if len(layer_types) != n_layers or not all(
            isinstance(getattr(rotary, f"{t}_inv_freq", None), Tensor) for t in kinds
        ):
            raise RotaryModelError(
                f"{name!r}: its rotary module ({type(rotary).__name__}) has neither one frequency "
                "table (inv_freq) nor one per layer type (layer_types with {type}_inv_freq)"
            )
        per_layer = layer_types
    tables = {kind: _probe(rotary, kind, name) for kind in kinds}
    return [tables[kind] for kind in per_layer]


def _probe(rotary: nn.Module, kind: str | None, name: str) -> RotaryTable:
    """The table of one layer type: its frequencies, scaling and the pair order that reproduces
    the model's own (cos, sin) at `PROBE_POSITIONS`."""
    suffix = "" if kind is None else f"{kind}_"
    rope_type = getattr(rotary, "rope_type", "default")
    if isinstance(rope_type, dict):
        rope_type = rope_type.get(kind, "default")
    if rope_type not in STATIC_ROPE_TYPES:
        raise RotaryModelError(
            f"{name!r}: rotary type {rope_type!r}{'' if kind is None else f' ({kind} layers)'} changes "
            f"its frequencies with the sequence length; only static tables ({', '.join(sorted(STATIC_ROPE_TYPES))}) "
            "are supported"
        )
    inv_freq = getattr(rotary, f"{suffix}inv_freq").detach().float().cpu()
    scaling = float(getattr(rotary, f"{suffix}attention_scaling", 1.0))
    positions = torch.tensor([PROBE_POSITIONS], dtype=torch.float32)
    x = torch.zeros(1, len(PROBE_POSITIONS), 2 * len(inv_freq), dtype=torch.float32)
    with torch.no_grad():
        try:
            cos, sin = rotary(x, positions) if kind is None else rotary(x, positions, kind)
        except (TypeError, RuntimeError) as e:
            raise RotaryModelError(f"{name!r}: could not read its rotary tables ({e})") from e
    cos, sin = cos.float().cpu().reshape(len(PROBE_POSITIONS), -1), sin.float().cpu().reshape(len(PROBE_POSITIONS), -1)
    errors = {}
    for interleaved in (False, True):
        table = RotaryTable(inv_freq, scaling, interleaved, kind)
        if cos.shape[-1] != 2 * len(inv_freq):
            break
        c, s = table.cos_sin(positions, torch.float32)
        errors[interleaved] = float(torch.maximum((c[0] - cos).abs().max(), (s[0] - sin).abs().max()))
        if errors[interleaved] <= 1e-5 * max(1.0, scaling):
            return table
    layouts = ", ".join(f"{'interleaved' if k else 'half-split'} {v:.1e}" for k, v in errors.items())
    raise RotaryModelError(
        f"{name!r}: its rotary (cos, sin){'' if kind is None else f' of {kind} layers'} at real positions "
        f"match neither half-split nor interleaved pairs of its inv_freq (largest differences: "
        f"{layouts or f'table width {cos.shape[-1]} for {len(inv_freq)} frequencies'}); this layout is "
        "not supported"
    )
