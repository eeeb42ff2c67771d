"""The parts of the residual stream that enter a layer: what `analyses.delta_attribution` splits a
δ MLP's input into, for any model `lens_positions.subject.subject_of` knows.

- byte models: ``resid_pre_l = embed + sum_{i<l} (sum_h head_{i,h} + mlp_i)`` (no biases), from
  ``ActivationCache.stack_head_results`` and ``blocks.{i}.hook_mlp_out``; labels ``embed``,
  ``L{i}H{h}``, ``L{i}MLP``;
- grafted bridges: each earlier layer's whole attention output is one part (SmolLM2's 30 layers x
  9 heads would give ~300 parts per late layer),
  ``resid_pre_l = hook_embed + sum_{i<l} (blocks.{i}.hook_attn_out + blocks.{i}.hook_mlp_out)``
  (Llama-family models have no positional embedding and no biases; `residual_sum_check` measures
  the identity on the data); labels ``embed``, ``L{i}ATTN``, ``L{i}MLP``.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor, nn

from lens_positions.subject import subject_of

__all__ = ["part_names", "residual_parts", "residual_sum_check"]


def part_names(model: nn.Module, layer: int) -> list[str]:
    """The hooks `residual_parts` reads for the residual entering ``layer``."""
    s = subject_of(model)
    if s.unit == "token":
        names = ["hook_embed"]
        for i in range(layer):
            names += [f"blocks.{i}.hook_attn_out", f"blocks.{i}.hook_mlp_out"]
        return names
    # stack_head_results computes every layer's head outputs, so it needs every layer's z
    names = ["hook_embed"] + [f"blocks.{i}.attn.hook_z" for i in range(s.n_layers)]
    return names + [f"blocks.{i}.hook_mlp_out" for i in range(layer)]


def residual_parts(
    cache, model: nn.Module, layer: int
) -> tuple[Float[Tensor, "n_parts batch pos d_model"], list[str]]:
    """The parts of the residual stream entering ``layer`` from a cache holding `part_names`:
    the embedding, then per earlier layer its heads (a bridge: its whole attention output) and
    its MLP."""
    s = subject_of(model)
    if s.unit == "token":
        labels = ["embed"]
        for i in range(layer):
            labels += [f"L{i}ATTN", f"L{i}MLP"]
        return torch.stack([cache[n] for n in part_names(model, layer)]), labels
    parts = [cache["hook_embed"][None]]
    labels = ["embed"]
    if layer > 0:
        heads, head_labels = cache.stack_head_results(layer=layer, return_labels=True)
        H = s.n_heads
        for i in range(layer):
            parts.append(heads[i * H : (i + 1) * H])
            labels.extend(head_labels[i * H : (i + 1) * H])
            parts.append(cache[f"blocks.{i}.hook_mlp_out"][None])
            labels.append(f"L{i}MLP")
    return torch.cat(parts), labels


@torch.no_grad()
def residual_sum_check(model: nn.Module, tokens: Tensor, skip_first: int = 1) -> pd.DataFrame:
    """Per layer: max |Σ parts − resid_pre| and max |resid_pre| over ``tokens`` [batch, pos]
    (positions from ``skip_first`` on), i.e. how exactly the parts decompose the δ MLP's input."""
    s = subject_of(model)
    n_layers = s.n_layers
    names = part_names(model, n_layers - 1) + [s.hook_resid_pre(li) for li in range(n_layers)]
    _, cache = model.run_with_cache(tokens.to(s.device), names_filter=list(dict.fromkeys(names)),
                                    return_type=None)  # fmt: skip
    rows = []
    for li in range(n_layers):
        parts, _ = residual_parts(cache, model, li)
        resid = cache[s.hook_resid_pre(li)].float()[:, skip_first:]
        err = (parts.float().sum(0)[:, skip_first:] - resid).abs().max()
        rows.append({"layer": li, "max_abs_err": float(err), "max_abs_resid": float(resid.abs().max()),
                     "rel_err": float(err / resid.abs().max().clamp(min=1e-30))})
    return pd.DataFrame(rows)
