"""`analyses.delta_attribution` on pretrained rotary bridges: which components set each layer's δ.

A per-layer graft (`lens_positions.rotary_models`, e.g. ``smollm2-135m-per-layer``) computes
``δ_l = max_delta * sigmoid(raw)``, ``raw = blocks[l].delta_mlp(resid_pre_l)``, with the same
`DeltaMLP` (RMSNorm on its input) as the byte models, so the public module's linear decomposition
through the norm's scale and gain, and its ablation checks, run unchanged. What differs is the
split of the residual stream: each earlier layer's attention counts as one part, not one per head
(SmolLM2's 30 layers x 9 heads would give ~300 parts per late layer; `ActivationCache.stack_head_results`
does work on a bridge, so a per-head split is possible later), so the parts are

    resid_pre_l = hook_embed + sum_{i<l} (blocks.{i}.hook_attn_out + blocks.{i}.hook_mlp_out)

(Llama-family models have no positional embedding and no biases; `residual_sum_check` measures
the identity on the data) and are labelled ``embed``, ``L{i}ATTN``, ``L{i}MLP``.

Windows: BOS + ``window_tokens`` tokens of the English held-out sample
(``lens_positions.samples.sample_file("en")``) unless ``--text-file``; the BOS is left out of every
statistic, since its δ shifts every later position alike and RoPE never sees it.

The base model (``increments="none"``) and a shared graft's per-layer view: the base has no δ MLP
(δ = 1), so `increment_mlp_prefix` raises and `run` returns a Result that says so (as the byte
version does for integer-RoPE models); a shared graft's single δ MLP reads the embedding alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor, nn

from analyses import _tokens
from analyses._common import Result, markdown_table
from analyses.delta_attribution import Params, delta_attribution, layer_table, plot_attribution

__all__ = ["increment_mlp_prefix", "part_names", "residual_parts", "residual_sum_check", "run"]

NO_DELTA_MLP = ("the base model (increments='none') has δ = 1 at every token and no δ MLP: there is "
                "nothing to attribute (load a graft, e.g. smollm2-135m-per-layer)")


def increment_mlp_prefix(model: nn.Module, layer: int | None) -> str:
    """Hook-name prefix of the bridge's δ MLP feeding ``layer``; ValueError without one."""
    increments = getattr(model, "increments", "none")
    if increments == "none":
        raise ValueError(NO_DELTA_MLP)
    if increments == "shared":
        return "delta_mlp"
    n_layers = model.cfg.n_layers
    if layer is None or not 0 <= layer < n_layers:
        raise ValueError(f"per-layer grafts need a layer in [0, {n_layers}), got {layer}")
    return f"blocks.{layer}.delta_mlp"


def part_names(layer: int) -> list[str]:
    """The hooks whose outputs add up to ``blocks.{layer}.hook_resid_pre``."""
    names = ["hook_embed"]
    for i in range(layer):
        names += [f"blocks.{i}.hook_attn_out", f"blocks.{i}.hook_mlp_out"]
    return names


def residual_parts(cache, layer: int) -> tuple[Float[Tensor, "n_parts batch pos d_model"], list[str]]:
    """The residual parts entering ``layer`` from a cache holding `part_names` (layer): the
    embedding, then each earlier layer's attention and MLP outputs."""
    labels = ["embed"]
    for i in range(layer):
        labels += [f"L{i}ATTN", f"L{i}MLP"]
    return torch.stack([cache[n] for n in part_names(layer)]), labels


@torch.no_grad()
def residual_sum_check(model: nn.Module, tokens: Tensor, skip_first: int = 1) -> pd.DataFrame:
    """Per layer: max |Σ parts − resid_pre| and max |resid_pre| over ``tokens`` [batch, pos]
    (positions from ``skip_first`` on), i.e. how exactly the parts decompose the δ MLP's input."""
    n_layers = model.cfg.n_layers
    names = part_names(n_layers - 1) + [f"blocks.{li}.hook_resid_pre" for li in range(n_layers)]
    _, cache = model.run_with_cache(tokens.to(model.W_E.device), names_filter=names, return_type=None)
    rows = []
    for li in range(n_layers):
        parts, _ = residual_parts(cache, li)
        resid = cache[f"blocks.{li}.hook_resid_pre"].float()[:, skip_first:]
        err = (parts.float().sum(0)[:, skip_first:] - resid).abs().max()
        rows.append({"layer": li, "max_abs_err": float(err), "max_abs_resid": float(resid.abs().max()),
                     "rel_err": float(err / resid.abs().max().clamp(min=1e-30))})
    return pd.DataFrame(rows)


def run(model: nn.Module, params: Params) -> Result:
    """`delta_attribution` over token windows of a bridge: tables parts, checks, residual_sum and
    the attribution figure; the base model gives a Result saying there is nothing to attribute."""
    p = params
    variant = _tokens.variant_label(model)
    try:
        increment_mlp_prefix(model, 0)
    except ValueError as e:
        return Result(f"## δ attribution ({variant})\n\nNothing to attribute: {e}.",
                      facts={"variant": variant, "increments": model.increments})
    windows, source = _tokens.held_out_windows(model, p)
    summary = delta_attribution(model, windows, p.layers, batch_size=p.batch_size, seed=p.seed,
                                progress=p.progress, skip_first=1)
    sums = residual_sum_check(model, torch.tensor(windows[: p.batch_size]))
    markdown = "\n".join([
        f"## δ attribution ({variant}; {len(windows)} windows of {p.window_tokens} tokens of {source}, BOS left out)\n",
        "Parts: `embed`, then per earlier layer its attention output `L{i}ATTN` and MLP output `L{i}MLP` "
        "(TransformerLens's hook_embed, hook_attn_out, hook_mlp_out). Checks per layer: `completeness_err` = "
        "max |Σ_parts g·c − g·x|; `mean_abs_g_dot_x` ≈ 0 because the δ MLP's RMSNorm is scale-invariant (compare "
        "`mean_abs_raw`); `r_*` = Pearson correlation of the linear attribution with the ablation it predicts; "
        "`gxi_over_random` = mean |g·c| over mean |g·r| for random r of the same norm (baseline 1). At L0 the "
        "embedding is the only part, so g·c = g·x ≈ 0 by construction: read the frozen-scale attribution there.\n",
        markdown_table(summary.checks, formats={"completeness_err": ".1e"}),
        "\n### The parts add up to the δ MLP's input (max |Σ parts − resid_pre| on the first batch)\n",
        f"Largest relative error over layers: {sums.rel_err.max():.1e} (max |resid_pre| {sums.max_abs_resid.max():.0f}).\n",
        f"\n### Top {p.top} parts per layer by mean |gradient × input| (δ-logit units)\n",
        markdown_table(layer_table(summary, p.top)),
    ])  # fmt: skip
    return Result(
        markdown,
        tables={"parts": summary.parts, "checks": summary.checks, "residual_sum": sums},
        figures={"attribution": plot_attribution(summary, f"δ attribution: {variant}")},
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "windows": len(windows),
               "window_tokens": p.window_tokens, "max_rel_residual_err": float(np.max(sums.rel_err))},
    )  # fmt: skip
