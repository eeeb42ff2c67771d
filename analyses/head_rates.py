"""Per-head increments against attention look-back distance (§3.5 of the learned-increments post).

For every layer and head, over real text (character-aligned windows, separator first), `look_back`
measures (the one implementation, also used by `analyses.learned_axis_attention`):

- ``mean_delta``: the head's mean δ over the queries (every text token; the separator at index 0
  is left out: its δ only offsets every position and never shows in a difference). Models
  without per-head rates give every head its layer's δ;
- ``lookback_bytes``: mean attention look-back distance in bytes,
  ``sum_k pattern[q, k] * (q - k)`` averaged over the same queries (the separator can only attend
  to itself);
- ``lookback_learned``: the same in learned position units, ``sum_k pattern[q, k] * (p_q - p_k)``
  with the head's (or layer's) positions;
- ``uniform_bytes``, ``uniform_learned``: the same for uniform causal attention (what a head that
  ignores position would give), and ``ratio`` = lookback_learned / (lookback_bytes * mean_delta),
  1 when positions are bytes scaled by the head's mean δ (e.g. previous-token heads).

Sums are in float64. The correlation table gives Pearson and Spearman correlations (scipy) of
``mean_delta`` against ``lookback_bytes`` over all layer-heads (``scope = "all"``) and within each
layer. The post found r = -0.35 (Spearman -0.48) over 48 layer-heads: larger δ, more local
attention.

Pretrained rotary bridges (``--model smollm2-135m-per-layer``) have one δ per layer, no per-head
rates: ``run`` hands them to `analyses._head_rates_bpe`, which measures each head's look-back in
tokens and on the learned axis with this module's `look_back` and correlates it with its layer's
mean δ (see there).

Command::

    python -m analyses.head_rates --model smollm2-135m-per-layer --max-docs 16 --out out/head_rates_bpe
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
import torch
from scipy.stats import pearsonr, spearmanr
from torch import Tensor

from analyses import _common
from analyses._common import HookSpec, Result, char_windows, head_axis, run_batches, window_limit
from lens_positions import HookedIncrementTransformer

PUBLISHED = {"pearson_r": -0.35, "spearman_rho": -0.48, "n": 48}
#: Columns of `look_back`, one row per layer and head.
LOOK_BACK_COLUMNS = (
    "layer", "head", "mean_delta", "lookback_bytes", "lookback_learned", "uniform_bytes",
    "uniform_learned", "ratio", "n_queries",
)  # fmt: skip


def layer_label(layer: int) -> str:
    """How tables name a layer: ``L0``, ``L1``, ..."""
    return f"L{layer}"


@torch.no_grad()
def look_back(
    model: HookedIncrementTransformer,
    token_lists: Sequence[Sequence[int]],
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
    desc: str = "look-back",
) -> pd.DataFrame:
    """Each head's mean δ and mean look-back (bytes and learned units), with the uniform baseline.

    model: a byte model, or a pretrained rotary bridge (`analyses._tokens.is_token_model`: one δ
    per layer, every head shows it; distances counted in BPE tokens, so the columns are named
    ``lookback_tokens`` and ``uniform_tokens`` instead of ``..._bytes``).
    token_lists: sequences, separator (a bridge: BOS) first, of any lengths (batches are
    right-padded; padding and the first token are never counted as queries). Attention patterns
    [batch, head, q, k] are reduced inside hooks as each layer produces them, so no pattern is
    stored. The user's
    ``fwd_hooks`` run first, so an edited pattern or δ is what gets measured.
    Returns one row per (layer, head) with `LOOK_BACK_COLUMNS` (``bytes`` -> ``tokens`` on a bridge).
    """
    from analyses._tokens import is_token_model

    cfg = model.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    keys = ("delta", "learned", "bytes", "u_learned", "u_bytes")
    sums = {k: torch.zeros(n_layers, n_heads, dtype=torch.float64) for k in keys}
    positions: dict[int, Tensor] = {}

    def measuring_hooks(tokens: Tensor, lengths: Tensor) -> list[tuple[str, Any]]:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        lengths = lengths.to(tokens.device)
        # queries: text tokens of each row (not the separator at 0, not padding): [b, q]
        queries = ((pos[None, :] >= 1) & (pos[None, :] < lengths[:, None])).double()
        dbytes = (pos[:, None] - pos[None, :]).double()  # q - k: [q, k]
        causal = (dbytes >= 0).double()

        def on_delta(delta: Tensor, hook: Any) -> None:
            d = head_axis(delta.double()).expand(-1, -1, n_heads)  # [b, q, h]
            sums["delta"][_layer(hook)] += (d * queries[..., None]).sum((0, 1)).cpu()

        def on_position(p: Tensor, hook: Any) -> None:
            # [b, pos] or [b, pos, h] -> [b, h, pos] (shared positions broadcast to every head)
            positions[_layer(hook)] = head_axis(p.double()).expand(-1, -1, n_heads).permute(0, 2, 1)

        def on_pattern(pattern: Tensor, hook: Any) -> None:
            layer = _layer(hook)
            pat = pattern.double()  # [b, h, q, k]
            p = positions[layer]
            dist = p[..., :, None] - p[..., None, :]  # p_q - p_k: [b, h, q, k]
            w = queries[:, None, :]  # [b, 1, q]
            sums["learned"][layer] += ((pat * dist).sum(-1) * w).sum((0, 2)).cpu()
            sums["bytes"][layer] += ((pat * dbytes).sum(-1) * w).sum((0, 2)).cpu()
            uniform = causal / causal.sum(-1, keepdim=True)  # [q, k]
            sums["u_learned"][layer] += ((uniform * dist).sum(-1) * w).sum((0, 2)).cpu()
            sums["u_bytes"][layer] += ((uniform * dbytes).sum(-1) * w).sum((0, 2)).cpu()

        hooks: list[tuple[str, Any]] = []
        for layer in range(n_layers):
            hooks += [
                (f"blocks.{layer}.hook_delta", on_delta),
                (f"blocks.{layer}.hook_position", on_position),
                (f"blocks.{layer}.attn.hook_pattern", on_pattern),
            ]
        return hooks

    n_queries = 0
    for _, lengths, _ in run_batches(
        model, token_lists, (), batch_size, fwd_hooks, extra_hooks=measuring_hooks,
        progress=progress, desc=desc,
    ):  # fmt: skip
        n_queries += int((lengths - 1).clamp(min=0).sum())
    if n_queries == 0:
        raise ValueError("no text tokens to measure: give non-empty texts")
    rows = []
    for layer in range(n_layers):
        for h in range(n_heads):
            mean = {k: float(sums[k][layer, h]) / n_queries for k in keys}
            scale = mean["bytes"] * mean["delta"]
            rows.append({
                "layer": layer_label(layer), "head": h, "mean_delta": mean["delta"],
                "lookback_bytes": mean["bytes"], "lookback_learned": mean["learned"],
                "uniform_bytes": mean["u_bytes"], "uniform_learned": mean["u_learned"],
                "ratio": mean["learned"] / scale if scale > 0 else float("nan"),
                "n_queries": n_queries,
            })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(LOOK_BACK_COLUMNS))
    if is_token_model(model):
        table = table.rename(columns={"lookback_bytes": "lookback_tokens", "uniform_bytes": "uniform_tokens"})
    return table


def _layer(hook: Any) -> int:
    """The layer of a ``blocks.{l}....`` hook point."""
    return int(hook.name.split(".")[1])


@dataclass
class HeadRates:
    """heads: `look_back`'s table, one row per layer and head. correlations: one row per scope
    ("all", "L0", ...) with n, pearson_r, pearson_p, spearman_rho, spearman_p, reference."""

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


def head_rates(
    model: HookedIncrementTransformer,
    texts: Sequence[str],
    max_tokens: int | None = None,
    batch_size: int = 4,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> HeadRates:
    """Mean δ and mean look-back distance of every layer and head over ``texts`` (character-aligned
    windows of at most ``max_tokens``), and their correlations."""
    limit = window_limit(model, max_tokens)
    windows = [w.tokens for d, text in enumerate(texts) for w in char_windows(text, limit, d)]
    heads = look_back(model, windows, batch_size, fwd_hooks, progress, desc="heads")
    corr = [{"scope": "all", "n": len(heads), **_correlate(heads["mean_delta"].to_numpy(), heads["lookback_bytes"].to_numpy())}]
    for label in dict.fromkeys(heads["layer"]):
        sub = heads[heads["layer"] == label]
        corr.append({"scope": label, "n": len(sub), **_correlate(sub["mean_delta"].to_numpy(), sub["lookback_bytes"].to_numpy())})
    correlations = pd.DataFrame(corr)
    correlations["reference"] = [
        f"r {PUBLISHED['pearson_r']}, rho {PUBLISHED['spearman_rho']} (n {PUBLISHED['n']})"
        if c["scope"] == "all" else None
        for c in corr
    ]  # fmt: skip
    return HeadRates(heads, correlations)


def plot_head_rates(result: HeadRates, title: str = ""):
    """Scatter of mean δ against look-back distance, one colour per layer, points labelled
    ``L{layer}H{head}``; the title gives the all-heads correlations."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.subplots()
    heads = result.heads
    for label, sub in heads.groupby("layer", sort=False):
        ax.scatter(sub["lookback_bytes"], sub["mean_delta"], s=22, label=label)
        for _, row in sub.iterrows():
            ax.annotate(
                f"{label}H{row['head']}",
                (row["lookback_bytes"], row["mean_delta"]),
                fontsize=6,
                xytext=(2, 2),
                textcoords="offset points",
                color="0.35",
            )
    c = result.correlations.iloc[0]
    ax.set_xlabel("mean attention look-back (bytes)")
    ax.set_ylabel("mean δ")
    ax.set_title(
        f"{title}\nPearson r {c['pearson_r']:.2f}, Spearman ρ {c['spearman_rho']:.2f} (n {c['n']})",
        fontsize=10,
    )
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return fig


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
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
        help="window size (default min(n_ctx, 512); a pretrained rotary model: tokens after BOS, default 256)",
    )
    return parser


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """`head_rates` over the files' documents: tables heads and correlations, the scatter. A
    pretrained rotary bridge goes to the token-level adaptation, `analyses._head_rates_bpe.run`."""
    from analyses import _tokens

    if _tokens.is_token_model(model):
        from analyses import _head_rates_bpe

        return _head_rates_bpe.run(model, params)
    files = params.text_file or _common.default_text_files()
    texts = _common.read_texts(files, params.source, params.max_docs)
    if not texts:
        raise _common.InputError("the text files hold no documents")
    result = head_rates(model, texts, params.max_tokens, params.batch_size, progress=params.progress)
    variant = model.cfg.variant_name
    note = "per-head δ" if model.cfg.per_head else "no per-head rates: every head shows its layer's δ"
    markdown = "\n".join([
        f"# Head rates vs attention look-back — {variant} ({note})\n",
        "## Correlation of mean δ with look-back (bytes)\n",
        _common.markdown_table(result.correlations, {"pearson_p": ".2g", "spearman_p": ".2g"}) + "\n",
        "## Layer-heads\n",
        _common.markdown_table(result.heads.drop(columns=["n_queries"])),
    ])  # fmt: skip
    return Result(
        markdown,
        tables={"head_rates": result.heads, "head_rate_correlations": result.correlations},
        figures={"head_rates": plot_head_rates(result, f"head rates — {variant}")},
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "documents": len(texts),
               "bytes": sum(len(t.encode("utf-8")) for t in texts),
               "n_queries": int(result.heads["n_queries"].iloc[0])},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("head_rates", argv)


if __name__ == "__main__":
    main()
