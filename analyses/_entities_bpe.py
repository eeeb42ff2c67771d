"""Multi-word entities at the token level: δ at the first token of the second word (§3.4, BPE).

The token-level counterpart of `analyses.entities` for pretrained rotary bridges
(`lens_positions.load_rotary_model`, e.g. ``smollm2-135m-per-layer``), with the same pairs,
carriers, controls (nonce pairs, frequency-matched bigrams) and statistics, which it imports from
there:

- every prompt ``carrier.format(a=first, b=second)`` is tokenised whole (BOS first), and the
  target is found by the tokenizer's character offsets: the token that holds the space before the
  second word. In GPT-2-style byte-level BPE (SmolLM2) the pre-tokenizer keeps a word's leading
  space with it, so that is the second word's first token (``" York"`` of ``"New York"``; of a
  second word split into several tokens, the first). δ there (``blocks.{l}.hook_delta``) is the
  gap that token's position opens after the last token of the first word: the byte version's δ
  at the space, read at the token level;
- BPE does not see the two orders alike: a word takes different tokens at the start of a prompt
  and after a space (``"Galilei"`` may be one token where ``" Galilei"`` is ``" Galile" "i"``),
  so the two orders may have different token counts and the target sits at different indices. δ is a per-token
  gap, so real and reversed are compared by δ, never by position. Each pair records the target
  token's text and how many tokens the second word took, in both orders;
- at the token level L0 is not identical by construction (in the byte version the space is the
  same byte in both orders): the target is ``" York"`` in one order and ``" New"`` in the other,
  and L0's δ reads the token's own embedding. So a third order separates the token's identity
  from its context: ``other first word``, the pair's second word after the *next* pair's first
  word (``"Hong York"``), the same target token as the real order in a context that does not
  predict it; ``other − real`` is a pure context effect (exactly 0 at L0, whose δ reads the
  token alone);
- a target token that also covers characters *before* the space (a tokenizer that merges across
  it) has no token boundary at the space: such a pair is counted as ``merged`` and left out of the
  statistics (none for SmolLM2, whose pre-tokenizer never merges across a space).

Per condition and layer: mean δ in each order over pairs (each pair averaged over the carriers),
the percentage of pairs whose real order has the strictly smaller δ, and the two-sided Wilcoxon
signed-rank p (`analyses.entities.wilcoxon_p`). On the base model (``smollm2-135m``, δ = 1 at every
token) every difference is 0: the table says so and gives p = 1 by that convention.

A private module: its command is `analyses.entities`'s, whose ``run`` hands a bridge over here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import nn

from analyses import _common, _tokens
from analyses._common import HookSpec, InputError, Result, run_batches
from analyses.entities import CARRIERS, EntityResult, Pair, draw_differences, wilcoxon_p

__all__ = ["Located", "TokenPairDeltas", "delta_rows", "entity_analysis", "locate_second_word",
           "measure_pairs", "plot_token_entities", "run"]


@dataclass(frozen=True)
class Located:
    """A prompt as the bridge reads it and its target token.

    tokens: BOS + the prompt's token ids; index: the target's index in ``tokens``; text: the
    target's decoded text; b_tokens: how many tokens the second word with its leading space
    takes (the target and the tokens after it up to the word's end); merged: the target
    also covers characters before the space (no token boundary there).
    """

    prompt: str
    tokens: list[int]
    index: int
    text: str
    b_tokens: int
    merged: bool


def locate_second_word(model: nn.Module, carrier: str, a: str, b: str) -> Located:
    """Tokenise ``carrier.format(a=a, b=b)`` whole and find the token holding the space before
    ``b`` by the tokenizer's character offsets (see module doc)."""
    prompt = carrier.format(a=a, b=b)
    space = len(carrier.split("{a}")[0].format(a=a, b=b)) + len(a)
    if "{a}" not in carrier or prompt[space : space + 1 + len(b)] != " " + b:
        raise ValueError(f"carrier {carrier!r} must put {{a}}, one space, then {{b}}")
    tok = model.tokenizer
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{type(tok).__name__}: locating a word needs a fast tokenizer's offsets")
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    holders = [i for i, (start, end) in enumerate(offsets) if start <= space < end]
    if not holders:
        raise ValueError(f"{prompt!r}: no token covers the space at character {space}")
    t = holders[0]
    b_end = space + 1 + len(b)
    b_tokens = sum(1 for start, end in offsets[t:] if start < b_end and end > space)
    return Located(prompt, [_tokens.bos_id(model), *ids], t + 1, tok.decode([ids[t]]), b_tokens,
                   offsets[t][0] < space)  # fmt: skip


def delta_rows(model: nn.Module) -> list[tuple[int, str]]:
    """The layers whose δ differ, as in `lens_positions.plots.delta_rows`: every layer of a
    per-layer graft (``L0`` ...), one row (``shared`` / ``none``) when one δ serves every layer."""
    if model.increments == "per_layer":
        return [(layer, f"L{layer}") for layer in range(len(model.blocks))]
    return [(0, "shared" if model.increments == "shared" else "none")]


@dataclass
class TokenPairDeltas:
    """δ at the target token, averaged over carriers, and what was located.

    real, reversed, other: [n_pairs, n_rows] (``other``: the second word after the next pair's
    first word); tokens: per pair the target texts of the real and reversed orders (one per
    distinct text over the carriers, ``|``-joined); b_tokens: [n_pairs, 2] the most tokens the
    second word (with its leading space) took over the carriers, real and reversed; merged:
    [n_pairs] any prompt of the pair merged across the space.
    """

    pairs: list[Pair]
    rows: list[str]
    real: Float[np.ndarray, "pairs rows"]
    reversed: Float[np.ndarray, "pairs rows"]
    other: Float[np.ndarray, "pairs rows"]
    tokens: list[tuple[str, str]]
    b_tokens: np.ndarray
    merged: np.ndarray


def measure_pairs(
    model: nn.Module, pairs: Sequence[Pair], carriers: Sequence[str] = CARRIERS,
    batch_size: int = 64, fwd_hooks: HookSpec = None, progress: bool = True,
) -> TokenPairDeltas:  # fmt: skip
    """δ at the second word's first token of every pair in the three orders: real ("New York"),
    reversed ("York New") and other first word ("Hong York", the next pair's first word); each
    averaged over the carriers (see module doc)."""
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    if len(pairs) < 2:
        raise ValueError("need at least two pairs (the other-first-word order borrows the next pair's)")
    orders = [((a, b), (b, a), (pairs[(i + 1) % len(pairs)][0], b)) for i, (a, b) in enumerate(pairs)]
    located = [locate_second_word(model, c, x, y) for order in orders for x, y in order for c in carriers]
    values = np.zeros((len(located), len(rows)))
    for idx, _, captured in run_batches(model, [loc.tokens for loc in located], names, batch_size,
                                        fwd_hooks, progress=progress, desc="pairs"):  # fmt: skip
        for row, i in enumerate(idx):
            for r, name in enumerate(names):
                values[i, r] = float(captured[name][row, located[i].index])
    n, k = len(pairs), len(carriers)
    values = values.reshape(n, 3, k, len(rows)).mean(axis=2)
    grid = [located[i * 3 * k : (i + 1) * 3 * k] for i in range(n)]  # per pair: real, reversed, other
    texts = [tuple("|".join(dict.fromkeys(loc.text for loc in g[o * k : (o + 1) * k])) for o in (0, 1))
             for g in grid]  # fmt: skip
    b_tokens = np.array([[max(loc.b_tokens for loc in g[o * k : (o + 1) * k]) for o in (0, 1)] for g in grid])
    merged = np.array([any(loc.merged for loc in g) for g in grid], dtype=bool)
    return TokenPairDeltas(list(pairs), [label for _, label in rows], values[:, 0], values[:, 1],
                           values[:, 2], texts, b_tokens.reshape(n, 2), merged)  # fmt: skip


def _compare(real: np.ndarray, other: np.ndarray) -> tuple[float, float, float, bool]:
    """(mean other - real, % real < other, Wilcoxon p, every difference 0) over pairs."""
    if len(real) == 0:
        return np.nan, np.nan, np.nan, True
    diff = other - real
    return (float(diff.mean()), float(100 * (real < other).mean()), wilcoxon_p(real, other),
            bool(np.allclose(diff, 0.0, atol=1e-9)))  # fmt: skip


def entity_analysis(
    model: nn.Module, conditions: dict[str, Sequence[Pair]], carriers: Sequence[str] = CARRIERS,
    batch_size: int = 64, fwd_hooks: HookSpec = None, progress: bool = True,
) -> EntityResult:  # fmt: skip
    """Real vs reversed (and vs other first word) δ at the second word's first token, per
    condition and layer.

    summary: one row per condition and layer: condition, layer, n, n_merged, pct_b_split_real,
    pct_b_split_reversed, mean_real, mean_reversed, mean_diff (reversed - real),
    pct_real_smaller, wilcoxon_p, mean_other, other_diff (other - real), pct_real_smaller_other,
    wilcoxon_p_other, all_zero (every difference 0). pairs: one row per condition, pair and layer
    with real, reversed, other, the target tokens, the second word's token counts and merged
    (merged pairs are left out of summary).
    """
    summary, detail = [], []
    for condition, pairs in conditions.items():
        m = measure_pairs(model, pairs, carriers, batch_size, fwd_hooks, progress)
        keep = ~m.merged
        split = m.b_tokens[keep] > 1
        for r, label in enumerate(m.rows):
            real, rev, other = m.real[keep, r], m.reversed[keep, r], m.other[keep, r]
            diff, pct, p, zero = _compare(real, rev)
            o_diff, o_pct, o_p, o_zero = _compare(real, other)
            summary.append({
                "condition": condition, "layer": label, "n": int(keep.sum()),
                "n_merged": int(m.merged.sum()),
                "pct_b_split_real": float(100 * split[:, 0].mean()) if keep.any() else np.nan,
                "pct_b_split_reversed": float(100 * split[:, 1].mean()) if keep.any() else np.nan,
                "mean_real": float(real.mean()) if keep.any() else np.nan,
                "mean_reversed": float(rev.mean()) if keep.any() else np.nan,
                "mean_diff": diff, "pct_real_smaller": pct, "wilcoxon_p": p,
                "mean_other": float(other.mean()) if keep.any() else np.nan,
                "other_diff": o_diff, "pct_real_smaller_other": o_pct, "wilcoxon_p_other": o_p,
                "all_zero": zero and o_zero,
            })  # fmt: skip
            detail += [
                {"condition": condition, "a": a, "b": b, "layer": label, "real": float(m.real[i, r]),
                 "reversed": float(m.reversed[i, r]), "other": float(m.other[i, r]),
                 "real_token": m.tokens[i][0], "reversed_token": m.tokens[i][1],
                 "real_b_tokens": int(m.b_tokens[i, 0]), "reversed_b_tokens": int(m.b_tokens[i, 1]),
                 "merged": bool(m.merged[i])}
                for i, (a, b) in enumerate(m.pairs)
            ]  # fmt: skip
    return EntityResult(pd.DataFrame(summary), pd.DataFrame(detail))


def plot_token_entities(result: EntityResult, title: str = ""):
    """Two panels per layer and condition: mean (reversed − real) δ and mean (other first word −
    real) δ at the second word's first token, ± s.e. over pairs. Positive: the real pair gets the
    smaller gap."""
    from matplotlib.figure import Figure

    detail = result.pairs[~result.pairs["merged"]]
    n_layers = detail["layer"].nunique()
    fig = Figure(figsize=(min(14.0, max(5.0, 0.45 * n_layers + 3)), 6.4))
    top, bottom = fig.subplots(2, 1, sharex=True)
    draw_differences(top, detail, "reversed")
    draw_differences(bottom, detail, "other")
    top.set_title(title or "second word's first token", fontsize=10)
    bottom.set_title("same target token after another pair's first word (context only)", fontsize=9)
    fig.tight_layout()
    return fig


#: Columns of the printed tables (the CSV keeps every column of `entity_analysis`).
SHOWN = ["layer", "mean_real", "mean_reversed", "mean_diff", "pct_real_smaller", "wilcoxon_p",
         "mean_other", "other_diff", "pct_real_smaller_other", "wilcoxon_p_other"]


def run(model: nn.Module, params) -> Result:
    """`analyses.entities.run` for a bridge: `entity_analysis` of the conditions ``params`` names
    (`analyses.entities.Params`); tables entities and entity_pairs, the difference figure."""
    from analyses.entities import conditions_of

    if params.per_head:
        raise InputError("--per-head: a pretrained rotary bridge has one δ per layer, no per-head rates")
    conditions = conditions_of(params)
    try:
        result = entity_analysis(model, conditions, batch_size=params.batch_size, progress=params.progress)
    except ValueError as e:  # a pair file the protocol cannot use
        raise InputError(str(e)) from e
    name = f"{_tokens.model_name(model)} ({model.increments} increments)"
    s = result.summary
    lines = [
        f"# Two-word pairs at the token level: δ at the second word's first token — {name}",
        "",
        f"Each prompt (BOS + one of {len(CARRIERS)} carriers, e.g. \"I visited New York\") is tokenised "
        "whole; the target is the token holding the space before the second word (\" York\"; its "
        "first token when the word splits), found by the tokenizer's character offsets. δ is averaged "
        "over the carriers. Real vs reversed (\"York New\": the target is then \" New\"): "
        "mean_diff = reversed − real, pct_real_smaller, two-sided Wilcoxon signed-rank p over pairs. "
        "Because the two orders put different tokens at the target (L0's δ reads the token itself), "
        "a context-only control keeps the target token and changes the first word to the next "
        "pair's (\"Hong York\"): other_diff = other − real, pct_real_smaller_other, wilcoxon_p_other.",
        "",
    ]  # fmt: skip
    if s["all_zero"].all():
        lines += ["**Every difference is 0**: δ does not vary here (δ = 1 at every token of the "
                  "base model and of a graft at its start), so nothing separates the orders; "
                  "p = 1 by convention (no non-zero difference to rank).", ""]  # fmt: skip
    for cond, sub in s.groupby("condition", sort=False):
        first = sub.iloc[0]
        merged = f"; {first['n_merged']} left out (target merged across the space)" if first["n_merged"] else ""
        lines += [f"## {cond} ({first['n']} pairs{merged})", "",
                  f"Second word split into several tokens (leading space included): "
                  f"{first['pct_b_split_real']:.0f}% of pairs in real order, "
                  f"{first['pct_b_split_reversed']:.0f}% reversed.", "",
                  _common.markdown_table(sub[SHOWN], {"wilcoxon_p": ".2g", "wilcoxon_p_other": ".2g",
                                                      "pct_real_smaller": ".0f",
                                                      "pct_real_smaller_other": ".0f"}), ""]  # fmt: skip
    return Result(
        "\n".join(lines),
        tables={"entities": s, "entity_pairs": result.pairs},
        figures={"entities": plot_token_entities(result, f"second word's first token — {name}")},
        facts={"model": _tokens.model_name(model), "increments": model.increments,
               "n_layers": len(model.blocks), "carriers": len(CARRIERS),
               "conditions": {c: len(v) for c, v in conditions.items()}},
    )  # fmt: skip
