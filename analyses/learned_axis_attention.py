"""Attention on the learned axis: where do heads look, measured in learned position units?

RoPE sees only position differences, so a head's notion of "how far back" is ``p_q - p_k`` in
learned units, not ``q - k`` in bytes. This module gives

- each head's mean look-back distance, ``sum_k pattern[q, k] * (p_q - p_k)`` averaged over queries,
  in learned units and in bytes (``sum_k pattern[q, k] * (q - k)``), with two baselines: uniform
  causal attention (what a head that ignores position would give), and ``bytes x mean δ`` (what
  the learned look-back would be if positions were just bytes scaled by the head's average δ; the
  ``ratio`` column is learned / (bytes x mean δ), above 1 when the head's keys lie across large
  increments, such as the boundaries a layer learned to stretch). Query 0 (the separator, which can
  only see itself) is left out. Per-head models use each head's own positions.
- circuitsvis attention patterns written to one offline HTML file (``.local_src``; the JS bundle is
  included once): the ordinary byte axis (the baseline view) and a *learned axis* on which tokens
  sit at their learned positions, binned (bin = mean δ / ``bins_per_token``): tokens that the
  layer packs together share a cell, and large increments leave empty cells ("·"). Rows of queries
  sharing a cell are averaged; keys sharing a cell are summed.
- a matplotlib figure for one query: attention weight against the key's byte position and
  against its learned position, per layer, one line per head.

Every measure counts the model's units (``Result.facts["unit"]``): bytes on the byte models, BPE
tokens on a grafted bridge (``--model smollm2-135m-per-layer``), whose windows are BOS +
``--window-tokens`` tokens of the English held-out sample unless ``--text-file`` (the byte models:
``--window-bytes`` of the bilingual sample) and whose views read ``--text`` as BOS + its tokens.
With δ = 1 (a base model) learned and unit distances are equal: ``ratio`` = 1 exactly.

Command::

    python -m analyses.learned_axis_attention [--model NAME_OR_DIR] [--text-file FILE ...] \
        --out out/learned_axis_attention
"""

from __future__ import annotations

import argparse
import html as html_lib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses import _tokens
from analyses._common import (
    SAMPLE_TEXTS,
    HookSpec,
    InputError,
    Result,
    add_common_args,
    add_text_args,
    command_main,
    head_axis,
    markdown_table,
    resolve_hooks,
    text_windows,
)
from analyses._look_back import look_back
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of


# ---------------------------------------------------------------------------------------- look-back
def look_back_distances(
    model: HookedIncrementTransformer,
    windows: Sequence[Sequence[int]],
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Each head's mean look-back in learned units and in units, with baselines: the table of
    `analyses._look_back.look_back` (the one implementation, and its rule: queries and mean δ
    leave the separator out) over token windows (separator first; padded batches are fine).
    """
    return look_back(model, windows, batch_size, fwd_hooks, progress)


# ---------------------------------------------------------------------------------------- views
def text_tokens(model: HookedIncrementTransformer, text: str) -> tuple[Int[Tensor, "1 pos"], list[str], str]:
    """``text`` as the model reads it: tokens [1, pos] (separator or BOS first), each token's text,
    and the name of the model's unit ("byte", or "token" for a pretrained rotary bridge)."""
    s = subject_of(model)
    if s.unit == "token":
        ids = [s.start_id, *s.encode(text)]
        return torch.tensor([ids], device=s.device), s.unit_texts(ids), "token"
    tokens = model.to_tokens(text)
    return tokens, model.to_str_tokens(tokens), "byte"


@dataclass
class LearnedAxisView:
    """Attention regridded onto the learned axis.

    attention: [n_heads_in_view, n_bins, n_bins] (query bin, key bin); labels: one per bin (the
    characters of the tokens in it, or "·"); token_bin: the bin of every token [pos];
    edges: each bin's lower edge in learned units [n_bins].
    """

    attention: Float[Tensor, "heads bins bins"]
    labels: list[str]
    token_bin: Int[Tensor, " pos"]
    edges: Float[Tensor, " bins"]


def learned_axis_view(
    pattern: Float[Tensor, "heads q k"],
    positions: Float[Tensor, " pos"],
    str_tokens: Sequence[str],
    bin_width: float,
    max_bins: int = 2048,
) -> LearnedAxisView:
    """Place tokens at their learned positions on a grid of ``bin_width`` and move the pattern
    there (query rows in a bin averaged, key columns in a bin summed, so rows still sum to 1).

    positions: one learned position per token (for per-head models, call once per head).
    """
    positions = positions.double().cpu()
    pattern = pattern.double().cpu()
    lo = float(positions.min())
    span = float(positions.max()) - lo
    if bin_width <= 0 or not np.isfinite(bin_width):
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    bin_width = max(bin_width, span / (max_bins - 1)) if span > 0 else bin_width
    token_bin = torch.floor((positions - lo) / bin_width + 1e-9).long()
    n_bins = int(token_bin.max()) + 1
    onehot = torch.zeros(len(positions), n_bins, dtype=torch.float64)
    onehot[torch.arange(len(positions)), token_bin] = 1.0
    counts = onehot.sum(0).clamp(min=1)
    # [h, q, k] -> keys summed into bins -> queries averaged into bins
    keyed = pattern @ onehot  # [h, q, bins]
    grid = (onehot.T @ keyed) / counts[None, :, None]  # [h, bins, bins]
    labels = ["" for _ in range(n_bins)]
    for t, b in enumerate(token_bin.tolist()):
        labels[b] += str_tokens[t]
    labels = [lab if lab else "·" for lab in labels]
    edges = lo + bin_width * torch.arange(n_bins, dtype=torch.float64)
    return LearnedAxisView(grid.float(), labels, token_bin, edges.float())


def _split_rendered(src: str) -> tuple[str, str, str] | None:
    """(div, bundle, render call) of a circuitsvis ``local_src``, or None if it is not in the
    expected shape (then the caller keeps the whole source)."""
    start = src.find("<script")
    call = src.rfind("CircuitsVis.render(")
    end = src.rfind("</script>")
    if min(start, call, end) < 0:
        return None
    open_end = src.find(">", start) + 1
    return src[:start], src[open_end:call], src[call:end]


def _compact(attention: Tensor) -> list:
    """Attention as nested lists with 3 decimals and exact zeros as the integer 0.

    Full float reprs made pages of tens of MB for no visible difference; most cells (the causal
    upper triangle, empty learned-axis bins) are zero.
    """
    values = np.round(attention.detach().float().cpu().numpy().astype(np.float64), 3)

    def convert(x: np.ndarray) -> list:
        if x.ndim == 1:
            return [0 if v == 0 else float(v) for v in x]
        return [convert(row) for row in x]

    return convert(values)


def attention_html(sections: Sequence[tuple[str, str, Sequence[str], Tensor]]) -> str:
    """One offline HTML page of circuitsvis attention patterns.

    sections: (heading, note, str_tokens, attention [heads, q, k]). The circuitsvis JS bundle is
    inlined once; every view is rendered by its own call. Never uses a CDN.
    """
    import circuitsvis

    divs: list[str] = []
    calls: list[str] = []
    bundle = None
    whole: list[str] = []
    for heading, note, tokens, attention in sections:
        rendered = circuitsvis.attention.attention_patterns(tokens=list(tokens), attention=_compact(attention))
        src = rendered.local_src
        parts = _split_rendered(src)
        head = f"<h2>{html_lib.escape(heading)}</h2><p>{html_lib.escape(note)}</p>"
        if parts is None:
            whole.append(head + src)
            continue
        div, this_bundle, call = parts
        bundle = bundle or this_bundle
        divs.append(head + div)
        calls.append(call)
    body = "\n".join(divs)
    script = f'<script crossorigin type="module">\n{bundle}\n' + "\n".join(calls) + "\n</script>" if calls else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>attention on the learned axis</title></head>"
        f"<body>\n{body}\n{''.join(whole)}\n{script}\n</body></html>\n"
    )


@torch.no_grad()
def attention_views(
    model: HookedIncrementTransformer,
    text: str,
    layers: Sequence[int] | None = None,
    bins_per_token: float = 1.5,
    fwd_hooks: HookSpec = None,
) -> list[tuple[str, str, list[str], Tensor]]:
    """Sections for `attention_html`: per layer, the byte-axis view then the learned-axis view(s)
    (one for all heads, or one per head for per-head models)."""
    tokens, str_tokens, unit = text_tokens(model, text)
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{li}.{n}" for li in layers for n in ("attn.hook_pattern", "hook_position", "hook_delta")]
    with model.hooks(fwd_hooks=resolve_hooks(fwd_hooks, tokens)):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    sections: list[tuple[str, str, list[str], Tensor]] = []
    for li in layers:
        pattern = cache[f"blocks.{li}.attn.hook_pattern"][0].float().cpu()  # [h, q, k]
        pos = head_axis(cache[f"blocks.{li}.hook_position"].float().cpu())[0]  # [pos, n_out]
        delta = head_axis(cache[f"blocks.{li}.hook_delta"].float().cpu())[0]
        sections.append((f"Layer {li}: {unit} axis", f"keys at their {unit} positions (baseline view)", str_tokens, pattern))
        groups = [(list(range(pattern.shape[0])), 0)] if pos.shape[1] == 1 else [([h], h) for h in range(pos.shape[1])]
        for heads, col in groups:
            width = float(delta[:, col].mean()) / bins_per_token
            view = learned_axis_view(pattern[heads], pos[:, col], str_tokens, width)
            which = "all heads" if len(heads) > 1 else f"head {heads[0]}"
            note = (f"keys at their learned positions ({which}); bin = {width:.3g} learned units "
                    f"(mean δ {float(delta[:, col].mean()):.3g} / {bins_per_token:g}); '·' = empty bin")
            sections.append((f"Layer {li}: learned axis, {which}", note, view.labels, view.attention))
    return sections


@torch.no_grad()
def plot_query(
    model: HookedIncrementTransformer,
    text: str,
    query: int = -1,
    fwd_hooks: HookSpec = None,
    title: str = "",
    keys: int = 48,
    layers: Sequence[int] | None = None,
):
    """For one query, attention weight against each key's byte position (left) and learned
    position (right), one row per layer, one line per head. Characters are printed along the
    learned axis at their positions (head mean for per-head models).

    keys: show only the ``keys`` keys up to the query (0: all), so the characters stay readable;
    the attention outside the view is not renormalised. layers: the rows (default every layer).
    """
    import matplotlib.pyplot as plt

    tokens, str_tokens, unit = text_tokens(model, text)
    n = tokens.shape[1]
    q = query % n
    shown_layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    L = len(shown_layers)
    names = [f"blocks.{li}.{x}" for li in shown_layers for x in ("attn.hook_pattern", "hook_position")]
    with model.hooks(fwd_hooks=resolve_hooks(fwd_hooks, tokens)):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    fig, axes = plt.subplots(L, 2, figsize=(12, 1.9 * L + 0.6), squeeze=False)
    first = 0 if keys <= 0 else max(0, q + 1 - keys)
    shown = np.arange(first, q + 1)
    for row, li in enumerate(shown_layers):
        pattern = cache[f"blocks.{li}.attn.hook_pattern"][0, :, q, first : q + 1].float().cpu().numpy()  # [h, k]
        pos = head_axis(cache[f"blocks.{li}.hook_position"].float().cpu())[0].numpy()  # [pos, n_out]
        for h in range(pattern.shape[0]):
            p = pos[first : q + 1, h if pos.shape[1] > 1 else 0]
            axes[row, 0].plot(shown, pattern[h], ".-", lw=0.8, ms=3, label=f"H{h}")
            axes[row, 1].plot(p, pattern[h], ".-", lw=0.8, ms=3, label=f"H{h}")
        axes[row, 0].axvline(q, color="grey", lw=0.6)
        pmean = pos[first : q + 1].mean(1)
        axes[row, 1].axvline(pmean[-1], color="grey", lw=0.6)
        top = max(float(pattern.max()), 1e-6)
        for j, k in enumerate(shown):
            axes[row, 0].text(k, -0.12 * top, str_tokens[k][:3], fontsize=6, ha="center", va="top")
            axes[row, 1].text(pmean[j], -0.12 * top, str_tokens[k][:3], fontsize=6, ha="center", va="top")
        axes[row, 0].set_ylim(-0.3 * top, 1.1 * top)
        axes[row, 1].set_ylim(-0.3 * top, 1.1 * top)
        axes[row, 0].set_ylabel(f"L{li}\nattention")
    axes[0, 0].set_title(f"vs key {unit} position (query {q}: {str_tokens[q]!r})")
    axes[0, 1].set_title("vs key learned position" + (" (each head its own)" if subject_of(model).delta_heads > 1 else ""))
    axes[-1, 0].set_xlabel(f"key {unit} position")
    axes[-1, 1].set_xlabel("key learned position")
    axes[0, 1].legend(fontsize=6, ncol=min(8, model.cfg.n_heads))
    fig.suptitle(title or "Attention of one query")
    fig.tight_layout()
    return fig


def plot_look_back(table: pd.DataFrame, title: str = "", unit: str = "bytes"):
    """Look-back per head: learned units against bytes x mean δ (y = x: positions are bytes
    scaled), and against uniform attention's look-back."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    layers = list(dict.fromkeys(table.layer))
    many = len(layers) > 10  # e.g. 30 pretrained layers: colour by layer on a scale, not a legend
    for k, (li, sel) in enumerate(table.groupby("layer", sort=False)):
        color = plt.cm.viridis(k / max(1, len(layers) - 1)) if many else None
        axes[0].scatter(sel.lookback_units * sel.mean_delta, sel.lookback_learned, s=18, label=li, color=color)
        axes[1].scatter(sel.uniform_learned, sel.lookback_learned, s=18, label=li, color=color)
    for ax in axes:
        lim = float(np.nanmax(table[["lookback_learned", "uniform_learned"]].to_numpy())) * 1.05 + 1e-9
        lim = max(lim, float(np.nanmax((table.lookback_units * table.mean_delta).to_numpy())) * 1.05)
        ax.plot([0, lim], [0, lim], "k:", lw=1)
        ax.set_ylabel("look-back in learned units")
    axes[0].set_xlabel(f"look-back in {unit} × head's mean δ")
    axes[1].set_xlabel("uniform causal attention's look-back (learned units)")
    if many:
        scale = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, len(layers) - 1))
        fig.colorbar(scale, ax=axes[1], label=f"layer ({layers[0]} … {layers[-1]})")
    else:
        axes[0].legend(fontsize=7)
    fig.suptitle(title or "Look-back per head")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- command
def fit_text(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` (whole characters) of at most ``max_bytes`` UTF-8 bytes."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
    max_docs: int | None = None
    held_out: float | None = None
    window_bytes: int | None = None
    max_windows: int = 32
    text: str = SAMPLE_TEXTS[0]
    view_bytes: int = 120
    query: int = -1
    keys: int = 48
    layers: list[int] | None = None
    bins_per_token: float = 1.5
    window_tokens: int = _tokens.WINDOW_TOKENS  # pretrained rotary models: tokens per window after the BOS
    batch_size: int = 16
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.learned_axis_attention", description=__doc__.split("\n")[0]
    )
    add_common_args(parser, "out/learned_axis_attention", batch_size=16, seed=True)
    add_text_args(parser, max_windows=32)
    parser.add_argument("--text", default=SAMPLE_TEXTS[0], help="text for the attention views and the query figure")
    parser.add_argument("--view-bytes", type=int, default=120, help="cut --text to this many bytes for the views")
    parser.add_argument("--query", type=int, default=-1, help="query token for the figure (default: the last)")
    parser.add_argument("--keys", type=int, default=48, help="keys shown in the query figure (0: all)")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="layers in the HTML views (default all)")
    parser.add_argument("--bins-per-token", type=float, default=1.5, help="learned-axis bins per mean δ")
    _tokens.add_window_tokens_arg(parser)
    return parser


def run(model: HookedIncrementTransformer | Subject, params: Params) -> Result:
    """Look-back per head over windows of held-out text (table look_back), the offline attention
    page (attention.html) and two figures."""
    p = params
    s = subject_of(model)
    model = s.model
    unit = s.unit_plural
    if s.unit == "token":
        windows, source = _tokens.held_out_windows(model, p)
        about = f"{len(windows)} windows of {p.window_tokens} tokens of {source}"
    else:
        windows = text_windows(model, p.text_file, p.window_bytes, p.max_windows, p.max_docs, p.held_out)
        about = f"{len(windows)} windows of {len(windows[0]) - 1} bytes"
    table = look_back_distances(model, windows, p.batch_size, progress=p.progress)
    per_head = s.delta_heads > 1
    layer_means = table.groupby("layer", sort=False)[["lookback_learned", "lookback_units", "uniform_learned", "uniform_units", "mean_delta", "ratio"]].mean().reset_index()
    markdown = "\n".join([
        f"## Look-back per head ({s.label}; {about})\n",
        f"Mean over queries ({'separator' if s.unit == 'byte' else 'BOS'} excluded) of Σ_k pattern·(p_q − p_k) "
        f"(`lookback_learned`) and Σ_k pattern·(q − k) in {unit} (`lookback_units`); `uniform_*` = uniform "
        f"causal attention (position-blind baseline); `ratio` = learned / ({unit} × the head's mean δ), 1 if "
        f"positions were {unit} scaled" + ("; per-head models: each head's own positions and δ" if per_head else "") + ".\n",
        markdown_table(table.drop(columns="n_queries")),
        "\n### Per layer (mean over heads)\n",
        markdown_table(layer_means),
    ])  # fmt: skip
    text = fit_text(p.text, min(p.view_bytes, s.n_ctx - 1))
    n_view = len(text_tokens(model, text)[1])
    if n_view > s.n_ctx:
        raise InputError(f"--text has {n_view} {unit} with the start, more than n_ctx={s.n_ctx}")
    sections = attention_views(model, text, p.layers, p.bins_per_token)
    return Result(
        markdown,
        tables={"look_back": table},
        figures={
            "query_attention": plot_query(model, text, p.query, title=f"One query: {s.label}", keys=p.keys,
                                          layers=p.layers if s.unit == "token" else None),
            "look_back": plot_look_back(table, f"Look-back per head: {s.label}", unit=unit),
        },
        pages={"attention.html": attention_html(sections)},
        facts={"variant": s.label, "unit": s.unit, "n_layers": s.n_layers, "windows": len(windows),
               "window_units": len(windows[0]) - 1, "n_queries": int(table.n_queries.iloc[0]),
               "view_layers": p.layers, "view_units": n_view - 1},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("learned_axis_attention", argv)


if __name__ == "__main__":
    main()
