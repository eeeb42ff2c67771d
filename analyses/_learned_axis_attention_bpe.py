"""`analyses.learned_axis_attention` on pretrained rotary bridges: look-back in learned units and
attention drawn on the learned axis, per BPE token.

The measurement (`analyses.head_rates.look_back`) and the views run unchanged on a bridge opened by
`lens_positions.load_rotary_model`; here the windows are BOS + ``window_tokens`` tokens of the
English held-out sample (``lens_positions.samples.sample_file("en")``) unless ``--text-file``, the
distances count tokens (``lookback_tokens`` = Σ_k pattern·(q − k) in tokens), and the views
read ``--text`` as BOS + its tokens. The BOS query is left out (as the byte models' separator).
With δ = 1 (the base model) learned and token distances are equal: ``ratio`` = 1 exactly.
``--layers`` picks the layers of the HTML views and of the query figure (30 rows for SmolLM2).
"""

from __future__ import annotations

from torch import nn

from analyses import _tokens
from analyses._common import InputError, Result, markdown_table
from analyses.learned_axis_attention import (
    Params,
    attention_html,
    attention_views,
    fit_text,
    look_back_distances,
    plot_look_back,
    plot_query,
)

__all__ = ["run"]


def run(model: nn.Module, params: Params) -> Result:
    """Look-back per head over token windows (table look_back), attention.html and two figures."""
    p = params
    variant = _tokens.variant_label(model)
    windows, source = _tokens.held_out_windows(model, p)
    # on a bridge the one look-back measurement (head_rates.look_back) names its columns *_tokens
    table = look_back_distances(model, windows, p.batch_size, progress=p.progress)
    cols = ["lookback_learned", "lookback_tokens", "uniform_learned", "uniform_tokens", "mean_delta", "ratio"]
    layer_means = table.groupby("layer", sort=False)[cols].mean().reset_index()
    markdown = "\n".join([
        f"## Look-back per head ({variant}; {len(windows)} windows of {p.window_tokens} tokens of {source})\n",
        "Mean over queries (BOS excluded) of Σ_k pattern·(p_q − p_k) (`lookback_learned`) and "
        "Σ_k pattern·(q − k) in tokens (`lookback_tokens`); `uniform_*` = uniform causal attention "
        "(position-blind baseline); `ratio` = learned / (tokens × the head's mean δ), 1 if positions were "
        "token indices scaled.\n",
        markdown_table(table.drop(columns="n_queries")),
        "\n### Per layer (mean over heads)\n",
        markdown_table(layer_means),
    ])  # fmt: skip
    text = fit_text(p.text, p.view_bytes)
    n_view = len(_tokens.encode(model, text)) + 1
    if n_view > model.cfg.n_ctx:
        raise InputError(f"--text has {n_view} tokens with the BOS, more than n_ctx={model.cfg.n_ctx}")
    sections = attention_views(model, text, p.layers, p.bins_per_token)
    return Result(
        markdown,
        tables={"look_back": table},
        figures={
            "query_attention": plot_query(model, text, p.query, title=f"One query: {variant}", keys=p.keys,
                                          layers=p.layers),
            "look_back": plot_look_back(table.rename(columns={"lookback_tokens": "lookback_bytes"}),
                                        f"Look-back per head: {variant}", unit="tokens"),
        },
        pages={"attention.html": attention_html(sections)},
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "windows": len(windows),
               "window_tokens": p.window_tokens, "n_queries": int(table.n_queries.iloc[0]),
               "view_layers": p.layers, "view_tokens": n_view},
    )  # fmt: skip
