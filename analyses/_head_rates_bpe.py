"""Head rates at the token level: each head's look-back against its layer's δ (§3.5 adapted).

The byte version (`analyses.head_rates`) correlates every head's own mean δ with its attention
look-back distance. A pretrained rotary bridge (`lens_positions.load_rotary_model`, e.g.
``smollm2-135m-per-layer``) cannot carry per-head rates: its attention rotates each shared
key/value head (grouped-query attention) with one (cos, sin) table, so the graft has one δ per
layer (``blocks.{l}.hook_delta`` [batch, pos]) and every head of a layer sees the same positions.
The honest adaptation keeps the per-head measurement on the attention side only:

- ``mean_delta``: the *layer's* mean δ over the queries (the same for the layer's 9 heads);
- ``lookback_tokens``: the head's mean attention look-back in BPE tokens,
  ``sum_k pattern[q, k] * (q - k)`` over queries (every token after the BOS);
- ``lookback_learned``: the same on the learned axis, ``sum_k pattern[q, k] * (p_q - p_k)`` with
  the layer's positions (``blocks.{l}.hook_position``): how far back the head reaches in the units
  its rotary sees;
- ``uniform_*``: what uniform causal attention would give, and ``ratio`` = lookback_learned /
  (lookback_tokens * mean_delta), 1 when the head's span has the layer's mean δ.

All of it is measured by `analyses.head_rates.look_back` (the one implementation, shared with the
byte models and `analyses.learned_axis_attention`). Correlations (Pearson, Spearman; scipy) of
``mean_delta`` with each distance over all layer-heads (270 on SmolLM2-135M: 30 layers x 9 heads;
the x values repeat within a layer, so this is a between-layer correlation with the heads' spread
as replicates) and over the layers' means (30 points). Not comparable one-to-one with the post's
r = -0.35 over 48 heads with their own rates; the published figure is quoted as context only. On
the base model (δ = 1 everywhere) every correlation is undefined (NaN: constant δ).

Texts: the English held-out sample shipped with the package unless ``--text-file`` is given
(a BPE model of English; `analyses.token_increments` makes the same choice), cut into at most two
windows of ``--max-tokens`` tokens (default 256) per document after a BOS.

A private module: its command is `analyses.head_rates`'s, whose ``run`` hands a bridge over here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn

from analyses import _common, _tokens
from analyses._common import HookSpec, InputError, Result
from analyses.head_rates import PUBLISHED, HeadRates, _correlate, look_back
from lens_positions.samples import sample_file

__all__ = ["DISTANCES", "layer_summary", "plot_token_head_rates", "run", "token_head_rates"]

#: The two look-back distances correlated with δ.
DISTANCES = ("lookback_tokens", "lookback_learned")
DEFAULT_WINDOW = 256


def token_head_rates(
    model: nn.Module, texts: Sequence[str], n_tokens: int = DEFAULT_WINDOW,
    max_windows: int = 10**9, batch_size: int = 4, fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> HeadRates:  # fmt: skip
    """`look_back` of every layer-head over the documents' windows (BOS + up to ``n_tokens``
    tokens, at most two per document) and the correlations of the layer's δ with each distance.

    correlations: one row per scope ("all heads", "layer means") and distance, with n,
    pearson_r, pearson_p, spearman_rho, spearman_p, reference.
    """
    windows = _tokens.document_windows(model, texts, n_tokens, max_windows)
    if not windows:
        raise InputError("no document has two tokens or more")
    heads = look_back(model, windows, batch_size, fwd_hooks, progress, desc="heads")
    layers = heads.groupby("layer", sort=False)[["mean_delta", *DISTANCES]].mean()
    corr = []
    for distance in DISTANCES:
        for scope, table in (("all heads", heads), ("layer means", layers)):
            corr.append({"scope": scope, "distance": distance, "n": len(table),
                         **_correlate(table["mean_delta"].to_numpy(), table[distance].to_numpy())})  # fmt: skip
    correlations = pd.DataFrame(corr)
    correlations["reference"] = [
        f"byte model, per-head δ: r {PUBLISHED['pearson_r']}, rho {PUBLISHED['spearman_rho']} (n {PUBLISHED['n']})"
        if c["scope"] == "all heads" and c["distance"] == "lookback_tokens" else None
        for c in corr
    ]  # fmt: skip
    return HeadRates(heads, correlations)


def layer_summary(heads: pd.DataFrame) -> pd.DataFrame:
    """Per layer: its mean δ, the mean / min / max look-back in tokens over its heads, the mean
    learned look-back and the uniform-attention baseline."""
    g = heads.groupby("layer", sort=False)
    return pd.DataFrame({
        "mean_delta": g["mean_delta"].mean(), "lookback_tokens": g["lookback_tokens"].mean(),
        "min_head": g["lookback_tokens"].min(), "max_head": g["lookback_tokens"].max(),
        "lookback_learned": g["lookback_learned"].mean(), "uniform_tokens": g["uniform_tokens"].mean(),
    }).reset_index()  # fmt: skip


def plot_token_head_rates(result: HeadRates, title: str = ""):
    """Two scatters of the layer's mean δ against each head's look-back (tokens; learned axis),
    coloured by layer, with uniform causal attention's look-back dashed; panel titles give the
    all-heads correlations."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    heads = result.heads
    layer = heads["layer"].str.slice(1).astype(int).to_numpy()
    norm = Normalize(layer.min(), max(layer.max(), layer.min() + 1))
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(11.5, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    corr = result.correlations.set_index(["scope", "distance"])
    uniform = {"lookback_tokens": "uniform_tokens", "lookback_learned": "uniform_learned"}
    for ax, distance, unit in zip(axes, DISTANCES, ("tokens", "learned positions"), strict=True):
        ax.scatter(heads[distance].clip(lower=0.5), heads["mean_delta"], s=14, c=layer, cmap=cmap, norm=norm)
        ax.axvline(heads[uniform[distance]].mean(), color="0.5", ls="--", lw=0.8, label="uniform attention")
        c = corr.loc[("all heads", distance)]
        ax.set_xscale("log")
        ax.set_xlabel(f"head's mean attention look-back ({unit}, log)")
        ax.set_title(f"r {c['pearson_r']:.2f}, ρ {c['spearman_rho']:.2f} (n {c['n']})", fontsize=9)
    axes[0].set_ylabel("layer's mean δ")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label="layer", pad=0.01)
    fig.suptitle(title or "heads' look-back vs their layer's δ", fontsize=10)
    return fig


def run(model: nn.Module, params) -> Result:
    """`analyses.head_rates.run` for a bridge (``params``: `analyses.head_rates.Params`): tables
    head_rates (per layer-head), head_rate_layers and head_rate_correlations, the scatters."""
    files = params.text_file or [str(sample_file("en"))]
    source = (", ".join(params.text_file) if params.text_file
              else "the shipped English held-out sample (lens_positions/assets/heldout/en.jsonl)")
    texts = _common.read_texts(files, params.source, params.max_docs)
    if not texts:
        raise InputError("the text files hold no documents")
    n_tokens = params.max_tokens or min(DEFAULT_WINDOW, model.cfg.n_ctx - 1)
    try:
        result = token_head_rates(model, texts, n_tokens, batch_size=params.batch_size,
                                  progress=params.progress)  # fmt: skip
    except ValueError as e:  # windows longer than the context
        raise InputError(str(e)) from e
    heads = result.heads
    name = f"{_tokens.model_name(model)} ({model.increments} increments)"
    n_heads = model.cfg.n_heads
    layers = layer_summary(heads)
    constant = bool(np.ptp(heads["mean_delta"].to_numpy()) == 0)
    markdown = "\n".join([
        f"# Head look-back vs their layer's δ — {name}", "",
        "A pretrained rotary bridge has one δ per layer (its grouped-query attention rotates the "
        "shared key heads with one table), so no head has a rate of its own. Adapted: each head's "
        "mean attention look-back in tokens and in learned position units, against its *layer's* "
        f"mean δ; correlations over all {len(heads)} layer-heads ({len(layers)} layers x {n_heads} "
        f"heads; δ repeats within a layer) and over the {len(layers)} layer means. "
        f"{int(heads['n_queries'].iloc[0]):,} query tokens (BOS excluded) in windows of up to "
        f"{n_tokens} tokens from {len(texts)} documents of {source}. The learned look-back is "
        "close to the token look-back times the layer's δ (ratio in head_rates.csv), so its "
        "correlation with δ is partly built in; the token look-back is the test of the post's "
        "reading (larger δ, more local attention). Look-back includes attention to the BOS "
        "(an attention sink in pretrained models: a head parked there looks back q tokens).", "",
        *(["**δ is the same at every token and layer** (δ = 1 on the base model and on a graft at "
           "its start): every correlation is undefined (NaN).", ""] if constant else []),
        "## Correlation of the layer's mean δ with the heads' look-back", "",
        _common.markdown_table(result.correlations, {"pearson_p": ".2g", "spearman_p": ".2g"}), "",
        "## Per layer (look-back: mean, min and max over its heads; every head in head_rates.csv)", "",
        _common.markdown_table(layers), "",
    ])  # fmt: skip
    return Result(
        markdown,
        tables={"head_rates": heads, "head_rate_layers": layers,
                "head_rate_correlations": result.correlations},
        figures={"head_rates": plot_token_head_rates(result, f"head look-back vs layer δ — {name}")},
        facts={"model": _tokens.model_name(model), "increments": model.increments,
               "n_layers": len(layers), "n_heads": n_heads, "documents": len(texts),
               "window_tokens": n_tokens, "n_queries": int(heads["n_queries"].iloc[0])},
    )  # fmt: skip
