"""Per-head increments against attention look-back distance (§3.5 of the learned-increments post).

For every layer and head, over real text (character-aligned windows, separator first), `look_back`
measures (`analyses._look_back`, the one implementation, also used by
`analyses.learned_axis_attention`):

- ``mean_delta``: the head's mean δ over the queries (every text token; the separator at index 0
  is left out: its δ only offsets every position and never shows in a difference). Models
  without per-head rates give every head its layer's δ;
- ``lookback_units``: mean attention look-back distance in units (bytes, or a bridge's tokens),
  ``sum_k pattern[q, k] * (q - k)`` averaged over the same queries (the separator can only attend
  to itself);
- ``lookback_learned``: the same in learned position units, ``sum_k pattern[q, k] * (p_q - p_k)``
  with the head's (or layer's) positions;
- ``uniform_units``, ``uniform_learned``: the same for uniform causal attention (what a head that
  ignores position would give), and ``ratio`` = lookback_learned / (lookback_units * mean_delta),
  1 when positions are bytes scaled by the head's mean δ (e.g. previous-token heads).

Sums are in float64. The correlation table gives Pearson and Spearman correlations (scipy) of
``mean_delta`` against ``lookback_units`` over all layer-heads (``scope = "all"``) and within each
layer. The post found r = -0.35 (Spearman -0.48) over 48 layer-heads: larger δ, more local
attention.

Distances count the model's units: bytes on the byte models, BPE tokens on a grafted bridge; the
columns say ``units`` (``lookback_units``, ``uniform_units``) and ``Result.facts["unit"]`` names
the unit.

**Grafted bridges** (``--model smollm2-135m-per-layer``) cannot carry per-head rates: their
attention rotates each shared key/value head (grouped-query attention) with one (cos, sin) table,
so the graft has one δ per layer and every head of a layer sees the same positions. The token
branch keeps the per-head measurement on the attention side only: ``mean_delta`` is the *layer's*
mean δ (the same for the layer's heads), and the correlations of ``mean_delta`` with each
distance (``lookback_units``, ``lookback_learned``) are taken over all layer-heads (270 on
SmolLM2-135M: 30 layers x 9 heads; the x values repeat within a layer, so this is a between-layer
correlation with the heads' spread as replicates) and over the layers' means (30 points). Not
comparable one-to-one with the post's r = -0.35 over 48 heads with their own rates; the published
figure is quoted as context only. On the base model (δ = 1 everywhere) every correlation is
undefined (NaN: constant δ). Texts: the English held-out sample unless ``--text-file`` is given (a
BPE model of English), at most two windows of ``--max-tokens`` tokens (default 256) per document
after a BOS.

Command::

    python -m analyses.head_rates --model smollm2-135m-per-layer --max-docs 16 --out out/head_rates_tokens
    python -m analyses.head_rates [--model bilingual-per-layer-per-head] [--text-file FILE ...] \\
        [--max-docs 100] --out out/head_rates
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr
from torch import nn

from analyses import _common, _tokens
from analyses._common import HookSpec, InputError, Result, char_windows
from analyses._look_back import LOOK_BACK_COLUMNS, layer_label, look_back  # noqa: F401 - re-exported
from lens_positions.samples import sample_file
from lens_positions.subject import DOCUMENT_WINDOW_TOKENS, Subject, subject_of

PUBLISHED = {"pearson_r": -0.35, "spearman_rho": -0.48, "n": 48}
#: The two look-back distances the token branch correlates with its layers' δ.
DISTANCES = ("lookback_units", "lookback_learned")
#: Tokens per window after the BOS on a bridge (``--max-tokens``'s default there).
BRIDGE_WINDOW = DOCUMENT_WINDOW_TOKENS


@dataclass
class HeadRates:
    """heads: `look_back`'s table, one row per layer and head. correlations: one row per scope
    (byte models: "all", "L0", ...; bridges: "all heads", "layer means" by distance) with n,
    pearson_r, pearson_p, spearman_rho, spearman_p, reference."""

    heads: pd.DataFrame
    correlations: pd.DataFrame


def _correlate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman with their p; NaN when fewer than 3 points or a constant input."""
    nan = {"pearson_r": np.nan, "pearson_p": np.nan, "spearman_rho": np.nan, "spearman_p": np.nan}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = pearsonr(x, y)
        s = spearmanr(x, y)
    return {
        "pearson_r": float(p.statistic),
        "pearson_p": float(p.pvalue),
        "spearman_rho": float(s.statistic),
        "spearman_p": float(s.pvalue),
    }


def _published(prefix: str = "") -> str:
    return f"{prefix}r {PUBLISHED['pearson_r']}, rho {PUBLISHED['spearman_rho']} (n {PUBLISHED['n']})"


def head_rates(
    model: nn.Module | Subject,
    texts: Sequence[str],
    max_tokens: int | None = None,
    batch_size: int = 4,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> HeadRates:
    """Mean δ and mean look-back distance of every layer and head over ``texts``, and their
    correlations.

    Byte models: character-aligned windows of at most ``max_tokens`` (default min(n_ctx, 512)),
    correlations over all heads and within each layer. Bridges: at most two windows per document
    of BOS + up to ``max_tokens`` tokens (default 256), correlations of the layer's δ with each
    distance over all heads and over the layer means.
    """
    s = subject_of(model)
    if s.unit == "token":
        n_tokens = max_tokens or min(BRIDGE_WINDOW, s.n_ctx - 1)
        windows = _tokens.document_windows(s.model, texts, n_tokens, 10**9)
        if not windows:
            raise InputError("no document has two tokens or more")
    else:
        limit = _common.window_limit(s.model, max_tokens)
        windows = [w.tokens for d, text in enumerate(texts) for w in char_windows(text, limit, d)]
    heads = look_back(s, windows, batch_size, fwd_hooks, progress, desc="heads")
    corr: list[dict[str, Any]] = []
    if s.unit == "token":
        layers = heads.groupby("layer", sort=False)[["mean_delta", *DISTANCES]].mean()
        for distance in DISTANCES:
            for scope, table in (("all heads", heads), ("layer means", layers)):
                corr.append({"scope": scope, "distance": distance, "n": len(table),
                             **_correlate(table["mean_delta"].to_numpy(), table[distance].to_numpy())})  # fmt: skip
        reference = [_published("byte model, per-head δ: ")
                     if c["scope"] == "all heads" and c["distance"] == "lookback_units" else None
                     for c in corr]  # fmt: skip
    else:
        scopes = [("all", heads)] + [(label, heads[heads["layer"] == label])
                                     for label in dict.fromkeys(heads["layer"])]  # fmt: skip
        for scope, table in scopes:
            corr.append({"scope": scope, "n": len(table),
                         **_correlate(table["mean_delta"].to_numpy(), table["lookback_units"].to_numpy())})  # fmt: skip
        reference = [_published() if c["scope"] == "all" else None for c in corr]
    correlations = pd.DataFrame(corr)
    correlations["reference"] = reference
    return HeadRates(heads, correlations)


def layer_summary(heads: pd.DataFrame) -> pd.DataFrame:
    """Per layer: its mean δ, the mean / min / max look-back in units over its heads, the mean
    learned look-back and the uniform-attention baseline."""
    g = heads.groupby("layer", sort=False)
    return pd.DataFrame({
        "mean_delta": g["mean_delta"].mean(), "lookback_units": g["lookback_units"].mean(),
        "min_head": g["lookback_units"].min(), "max_head": g["lookback_units"].max(),
        "lookback_learned": g["lookback_learned"].mean(), "uniform_units": g["uniform_units"].mean(),
    }).reset_index()  # fmt: skip


def plot_head_rates(result: HeadRates, title: str = "", unit: str = "bytes"):
    """Scatter of mean δ against look-back distance, one colour per layer, points labelled
    ``L{layer}H{head}``; the title gives the all-heads correlations."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.subplots()
    heads = result.heads
    for label, sub in heads.groupby("layer", sort=False):
        ax.scatter(sub["lookback_units"], sub["mean_delta"], s=22, label=label)
        for _, row in sub.iterrows():
            ax.annotate(
                f"{label}H{row['head']}",
                (row["lookback_units"], row["mean_delta"]),
                fontsize=6,
                xytext=(2, 2),
                textcoords="offset points",
                color="0.35",
            )
    c = result.correlations.iloc[0]
    ax.set_xlabel(f"mean attention look-back ({unit})")
    ax.set_ylabel("mean δ")
    ax.set_title(
        f"{title}\nPearson r {c['pearson_r']:.2f}, Spearman ρ {c['spearman_rho']:.2f} (n {c['n']})",
        fontsize=10,
    )
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return fig


def plot_layer_rates(result: HeadRates, title: str = ""):
    """Bridges: two scatters of the layer's mean δ against each head's look-back (tokens; learned
    axis), coloured by layer, with uniform causal attention's look-back dashed; panel titles give
    the all-heads correlations."""
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
    uniform = {"lookback_units": "uniform_units", "lookback_learned": "uniform_learned"}
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


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample (bridges: English)
    source: str | None = None
    max_docs: int | None = None
    max_tokens: int | None = None
    batch_size: int = 4
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.head_rates", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/head_rates", batch_size=4)
    parser.add_argument(
        "--text-file", nargs="+", default=None,
        help="plain-text or .jsonl files (default: the shipped held-out sample)",
    )  # fmt: skip
    parser.add_argument("--source", default=None, help='keep only .jsonl rows with this "source"')
    parser.add_argument("--max-docs", type=int, default=None, help="documents to read at most")
    parser.add_argument(
        "--max-tokens", type=int, default=None,
        help=f"window size (default min(n_ctx, 512); a pretrained rotary model: tokens after BOS, default {BRIDGE_WINDOW})",
    )
    return parser


def run(model: nn.Module | Subject, params: Params) -> Result:
    """`head_rates` over the files' documents: tables head_rates and head_rate_correlations (and
    head_rate_layers on a bridge), the scatter."""
    s = subject_of(model)
    if params.text_file:
        files, source = params.text_file, ", ".join(params.text_file)
    elif s.unit == "token":
        files = [str(sample_file("en"))]
        source = "the shipped English held-out sample (lens_positions/assets/heldout/en.jsonl)"
    else:
        files, source = _common.default_text_files(), "the shipped held-out sample"
    texts = _common.read_texts(files, params.source, params.max_docs)
    if not texts:
        raise InputError("the text files hold no documents")
    try:
        result = head_rates(s, texts, params.max_tokens, params.batch_size, progress=params.progress)
    except ValueError as e:  # windows longer than the context
        raise InputError(str(e)) from e
    facts = {"variant": s.label, "unit": s.unit, "n_layers": s.n_layers, "documents": len(texts),
             "n_queries": int(result.heads["n_queries"].iloc[0])}  # fmt: skip
    if s.unit == "token":
        return _bridge_result(s, result, texts, source, params, facts)
    note = "per-head δ" if s.delta_heads > 1 else "no per-head rates: every head shows its layer's δ"
    markdown = "\n".join([
        f"# Head rates vs attention look-back — {s.label} ({note})\n",
        "## Correlation of mean δ with look-back (bytes)\n",
        _common.markdown_table(result.correlations, {"pearson_p": ".2g", "spearman_p": ".2g"}) + "\n",
        "## Layer-heads\n",
        _common.markdown_table(result.heads.drop(columns=["n_queries"])),
    ])  # fmt: skip
    return Result(
        markdown,
        tables={"head_rates": result.heads, "head_rate_correlations": result.correlations},
        figures={"head_rates": plot_head_rates(result, f"head rates — {s.label}")},
        facts={**facts, "bytes": sum(len(t.encode("utf-8")) for t in texts)},
    )


def _bridge_result(s: Subject, result: HeadRates, texts: Sequence[str], source: str,
                   params: Params, facts: dict[str, Any]) -> Result:  # fmt: skip
    """The report of a bridge: the layer's δ against its heads' look-back."""
    heads = result.heads
    n_tokens = params.max_tokens or min(BRIDGE_WINDOW, s.n_ctx - 1)
    layers = layer_summary(heads)
    constant = bool(np.ptp(heads["mean_delta"].to_numpy()) == 0)
    name = f"{s.name} ({s.increments} increments)"
    markdown = "\n".join([
        f"# Head look-back vs their layer's δ — {name}", "",
        "A pretrained rotary bridge has one δ per layer (its grouped-query attention rotates the "
        "shared key heads with one table), so no head has a rate of its own. Adapted: each head's "
        "mean attention look-back in tokens and in learned position units, against its *layer's* "
        f"mean δ; correlations over all {len(heads)} layer-heads ({len(layers)} layers x {s.n_heads} "
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
        figures={"head_rates": plot_layer_rates(result, f"head look-back vs layer δ — {name}")},
        facts={**facts, "model": s.name, "increments": s.increments, "n_heads": s.n_heads,
               "window_tokens": n_tokens},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("head_rates", argv)


if __name__ == "__main__":
    main()
