"""Multi-word entities: δ at the space inside "New York" against "York New" (§3.4 of the learned-increments post).

For every pair (a, b) and each carrier of `CARRIERS`, the model reads ``carrier.format(a=a, b=b)``
(real order) and ``carrier.format(a=b, b=a)`` (reversed), separator first. The score is δ at the
space between the two words, averaged over the carriers, per reported layer. Per condition and
layer the table gives the mean over pairs in each order, the percentage of pairs whose real order
has the strictly smaller δ, and a two-sided Wilcoxon signed-rank p over the paired differences
(scipy; zero differences dropped; p = 1 when every difference is zero, as for byte-identity δ).

δ is causal: at the space the model has read the prefix and the first word only, so the score
measures how strongly the first word predicts a continuation, not that the two words are
grouped. Three conditions separate these readings:

- ``entities``: `ENTITIES`, 70 two-word named entities (cities, countries, people,
  organisations, geography, events, titles), no word shared between two pairs;
- ``nonce``: `nonce_pairs`, capitalised pronounceable invented words (seeded) — no pair can be
  expected, so real and reversed should not differ beyond noise;
- ``bigrams``: `BIGRAMS`, frequency-matched non-entity bigrams (adjective + noun, lower case).
  Matching, done by hand without a corpus: the i-th bigram's words are within one letter of the
  lengths of the i-th entity's words, and every bigram word is a common English word (roughly the
  few thousand most frequent); as collocations the bigrams are frequent but not fixed names. They
  keep natural lower case (title case would make them read as names), so compare conditions by
  their real-minus-reversed *differences*, not by raw δ.

Per-head models: ``head = "mean"`` rows average δ over heads; ``per_head=True`` adds each head.

**Grafted bridges** (``--model smollm2-135m`` or ``smollm2-135m-per-layer``) read BPE tokens, so
the unit branch of `entity_analysis` measures the same pairs, carriers, controls and statistics at
the token level, δ at the second word's first token (``" York"``):

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

Per condition and layer (token level): mean δ in each order over pairs (each pair averaged over
the carriers), the percentage of pairs whose real order has the strictly smaller δ, and the
two-sided Wilcoxon signed-rank p. On the base model (``smollm2-135m``, δ = 1 at every token) every
difference is 0: the table says so and gives p = 1 by that convention. The lists live in
`analyses._entity_list`.

Command::

    python -m analyses.entities --out out/entities
    python -m analyses.entities --model bilingual-per-layer --pairs my_pairs.txt   # "a b" per line
    python -m analyses.entities --model smollm2-135m-per-layer --out out/entities_tokens
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy.stats import wilcoxon
from torch import nn

from analyses import _common
from analyses._common import HookSpec, InputError, Result, delta_rows, head_axis, run_batches
from analyses._entity_list import (  # noqa: F401 - re-exported: the lists belong to this analysis too
    BIGRAMS,
    CARRIERS,
    ENTITIES,
    PATCHING_ENTITIES,
    Pair,
    default_conditions,
    nonce_pairs,
    nonce_word,
    read_pairs,
)
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of, tokenizer_start_id
from lens_positions.tokenizer import encode


def space_index(carrier: str, a: str, b: str) -> int:
    """Token index (separator at 0) of the space between ``a`` and ``b`` in the carrier."""
    head = carrier.split("{a}")[0].format(a=a, b=b)
    index = 1 + len((head + a).encode("utf-8"))
    ids = encode(carrier.format(a=a, b=b))
    if ids[index] != ord(" "):
        raise ValueError(f"carrier {carrier!r} must put one space between {{a}} and {{b}}")
    return index


@dataclass
class PairDeltas:
    """δ at the internal space, averaged over carriers.

    real, reversed: [n_pairs, n_rows, n_heads_out]; rows: row labels.
    """

    pairs: list[Pair]
    rows: list[str]
    real: Float[np.ndarray, "pairs rows heads"]
    reversed: Float[np.ndarray, "pairs rows heads"]


def measure_pairs(
    model: HookedIncrementTransformer,
    pairs: Sequence[Pair],
    carriers: Sequence[str] = CARRIERS,
    batch_size: int = 64,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> PairDeltas:
    """δ at the space of every pair in both orders, each averaged over the carriers."""
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    n_out = model.cfg.n_delta_outputs
    token_lists, targets = [], []
    for a, b in pairs:
        for first, second in ((a, b), (b, a)):
            for carrier in carriers:
                token_lists.append(encode(carrier.format(a=first, b=second)))
                targets.append(space_index(carrier, first, second))
    values = np.zeros((len(token_lists), len(rows), n_out))
    for idx, _, captured in run_batches(
        model, token_lists, names, batch_size, fwd_hooks, progress=progress, desc="pairs"
    ):
        for row, i in enumerate(idx):
            for r, name in enumerate(names):
                values[i, r] = head_axis(captured[name][row], n_out).numpy()[targets[i]]
    values = values.reshape(len(pairs), 2, len(carriers), len(rows), n_out).mean(axis=2)
    return PairDeltas(list(pairs), [label for _, label in rows], values[:, 0], values[:, 1])


def wilcoxon_p(real: np.ndarray, rev: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired differences; 1.0 if all are zero."""
    diff = np.asarray(real, float) - np.asarray(rev, float)
    if np.allclose(diff, 0.0, atol=1e-9):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(real, rev, alternative="two-sided").pvalue)


#: Published per-layer results (§3.4 and the post's table) for a 6-layer per-layer model.
PUBLISHED = {
    "L0": "9.99 vs 9.99 (0%, p 1.0)",
    "L1": "1.42 vs 1.43 (51%, p 0.28)",
    "L2": "1.43 vs 1.54 (71%, p 3e-5)",
    "L3": "0.06 vs 0.10 (66%, p 6e-5)",
    "L4": "0.86 vs 1.21 (77%, p 3e-8)",
    "L5": "0.47 vs 0.64 (78%, p 3e-7)",
}


@dataclass
class EntityResult:
    """summary: one row per condition, layer and head (columns condition, layer, head, n,
    mean_real, mean_reversed, mean_diff (reversed - real), pct_real_smaller, wilcoxon_p,
    reference). pairs: one row per condition, pair, layer and head with real, reversed."""

    summary: pd.DataFrame
    pairs: pd.DataFrame


def entity_analysis(
    model: HookedIncrementTransformer | Subject,
    conditions: dict[str, Sequence[Pair]] | None = None,
    carriers: Sequence[str] = CARRIERS,
    per_head: bool = False,
    batch_size: int = 64,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> EntityResult:
    """Real vs reversed δ at the internal space for every condition (default: `default_conditions`).

    Byte models: δ at the space. Bridges: δ at the second word's first token, with the
    other-first-word control (`token_entity_analysis`; no per-head rows).
    """
    conditions = default_conditions() if conditions is None else conditions
    s = subject_of(model)
    if s.unit == "token":
        if per_head:
            raise ValueError("per_head: a grafted bridge has one δ per layer, no per-head rates")
        return token_entity_analysis(s.model, conditions, carriers, batch_size, fwd_hooks, progress)
    model = s.model
    summary, detail = [], []
    n_out = model.cfg.n_delta_outputs
    heads: list[str | int] = ["mean"] + (list(range(n_out)) if per_head and n_out > 1 else [])
    for condition, pairs in conditions.items():
        pd_ = measure_pairs(model, pairs, carriers, batch_size, fwd_hooks, progress)
        for r, label in enumerate(pd_.rows):
            for h in heads:
                real = pd_.real[:, r].mean(-1) if h == "mean" else pd_.real[:, r, h]
                rev = pd_.reversed[:, r].mean(-1) if h == "mean" else pd_.reversed[:, r, h]
                ref = None
                if condition == "entities" and h == "mean" and n_out == 1 and model.cfg.n_layers == 6:
                    ref = PUBLISHED.get(label)
                summary.append({
                    "condition": condition, "layer": label, "head": str(h), "n": len(pairs),
                    "mean_real": float(real.mean()), "mean_reversed": float(rev.mean()),
                    "mean_diff": float((rev - real).mean()),
                    "pct_real_smaller": float(100.0 * (real < rev).mean()),
                    "wilcoxon_p": wilcoxon_p(real, rev), "reference": ref,
                })  # fmt: skip
                detail += [
                    {"condition": condition, "a": a, "b": b, "layer": label, "head": str(h),
                     "real": float(x), "reversed": float(y)}
                    for (a, b), x, y in zip(pairs, real, rev, strict=True)
                ]  # fmt: skip
    return EntityResult(pd.DataFrame(summary), pd.DataFrame(detail))


def draw_differences(ax, detail: pd.DataFrame, versus: str = "reversed") -> None:
    """Bars of mean (``versus`` - real) δ per layer and condition, ± the standard error over pairs,
    on ``ax``; ``detail`` has columns condition, layer, real and ``versus``."""
    conds = list(dict.fromkeys(detail["condition"]))
    layers = list(dict.fromkeys(detail["layer"]))
    width = 0.8 / max(1, len(conds))
    for k, cond in enumerate(conds):
        sub = detail[detail["condition"] == cond]
        means, sems = [], []
        for layer in layers:
            rows = sub[sub["layer"] == layer]
            diff = (rows[versus] - rows["real"]).to_numpy()
            means.append(diff.mean())
            sems.append(diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0)
        x = np.arange(len(layers)) + (k - (len(conds) - 1) / 2) * width
        ax.bar(x, means, width, yerr=sems, capsize=2, label=cond)
    ax.axhline(0, color="0.5", lw=0.7)
    ax.margins(x=0.01)
    ax.set_xticks(np.arange(len(layers)), layers, fontsize=8 if len(layers) <= 12 else 6)
    ax.set_ylabel(f"δ {versus} − δ real (mean ± s.e.)")
    ax.legend(fontsize=8)


def plot_entities(result: EntityResult, title: str = ""):
    """Mean (reversed - real) δ per layer and condition, with the standard error over pairs
    (head-mean rows). Positive: the real order gets the smaller space."""
    from matplotlib.figure import Figure

    detail = result.pairs
    if "head" in detail:  # token-level tables have one δ per layer and no head column
        detail = detail[detail["head"] == "mean"]
    n_layers = detail["layer"].nunique()
    fig = Figure(figsize=(min(14.0, max(5.0, 1.1 * n_layers + 2)), 3.6))
    ax = fig.subplots()
    draw_differences(ax, detail)
    ax.set_title(title or "space inside two-word pairs", fontsize=10)
    fig.tight_layout()
    return fig


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    pairs: list[str] = field(default_factory=list)
    with_defaults: bool = False
    seed: int = 0
    per_head: bool = False
    batch_size: int = 64
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.entities", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/entities", batch_size=64)
    parser.add_argument(
        "--pairs", nargs="*", default=[],
        help="pair files (condition = file name); replace the built-in conditions",
    )  # fmt: skip
    parser.add_argument(
        "--with-defaults", action="store_true", help="with --pairs, keep the built-in conditions too"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the nonce pairs")
    parser.add_argument(
        "--per-head", action="store_true", help="per-head models: one row per head too"
    )
    return parser


def conditions_of(params: Params) -> dict[str, list[Pair]]:
    """The conditions ``params`` names: the built-in ones and/or one per pair file (its stem)."""
    conditions: dict[str, list[Pair]] = {}
    if not params.pairs or params.with_defaults:
        conditions.update(default_conditions(params.seed))
    for path in params.pairs:
        conditions[Path(path).stem] = read_pairs(path)
    return conditions


def run(model: HookedIncrementTransformer | Subject, params: Params) -> Result:
    """`entity_analysis` of the conditions: tables entities (summary) and entity_pairs, a figure."""
    subject = subject_of(model)
    if subject.unit == "token":
        return _token_run(subject.model, params)
    model = subject.model
    p = params
    conditions = conditions_of(p)
    result = entity_analysis(
        model, conditions, per_head=p.per_head, batch_size=p.batch_size, progress=p.progress
    )
    variant = subject_of(model).label
    lines = [
        f"# Two-word pairs: δ at the internal space, real vs reversed — {variant}",
        f"(mean over {len(CARRIERS)} carriers; two-sided Wilcoxon signed-rank"
        + ("; head = mean: δ averaged over heads" if model.cfg.per_head else "") + ")\n",
    ]  # fmt: skip
    for cond, sub in result.summary.groupby("condition", sort=False):
        shown = sub.drop(columns=["condition", "n"] + ([] if model.cfg.per_head else ["head"]))
        if shown["reference"].isna().all():
            shown = shown.drop(columns=["reference"])
        lines += [
            f"## {cond} ({sub['n'].iloc[0]} pairs)\n",
            _common.markdown_table(shown, {"wilcoxon_p": ".2g", "pct_real_smaller": ".0f"}) + "\n",
        ]
    return Result(
        "\n".join(lines),
        tables={"entities": result.summary, "entity_pairs": result.pairs},
        figures={"entities": plot_entities(result, f"two-word pairs — {variant}")},
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "carriers": len(CARRIERS),
               "conditions": {c: len(v) for c, v in conditions.items()}},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------- token level
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
    return Located(prompt, [tokenizer_start_id(tok), *ids], t + 1, tok.decode([ids[t]]), b_tokens,
                   offsets[t][0] < space)  # fmt: skip


def token_delta_rows(model: nn.Module) -> list[tuple[int, str]]:
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


def measure_token_pairs(
    model: nn.Module, pairs: Sequence[Pair], carriers: Sequence[str] = CARRIERS,
    batch_size: int = 64, fwd_hooks: HookSpec = None, progress: bool = True,
) -> TokenPairDeltas:  # fmt: skip
    """δ at the second word's first token of every pair in the three orders: real ("New York"),
    reversed ("York New") and other first word ("Hong York", the next pair's first word); each
    averaged over the carriers (see module doc)."""
    rows = token_delta_rows(model)
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


def token_entity_analysis(
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
        m = measure_token_pairs(model, pairs, carriers, batch_size, fwd_hooks, progress)
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


def _token_run(model: nn.Module, params: Params) -> Result:
    """`run` for a bridge: `token_entity_analysis` of the conditions ``params`` names; tables
    entities and entity_pairs, the difference figure."""
    if params.per_head:
        raise InputError("--per-head: a pretrained rotary bridge has one δ per layer, no per-head rates")
    conditions = conditions_of(params)
    try:
        result = token_entity_analysis(model, conditions, batch_size=params.batch_size, progress=params.progress)
    except ValueError as e:  # a pair file the protocol cannot use
        raise InputError(str(e)) from e
    name = f"{subject_of(model).name} ({model.increments} increments)"
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
        facts={"model": subject_of(model).name, "increments": model.increments,
               "n_layers": len(model.blocks), "carriers": len(CARRIERS),
               "conditions": {c: len(v) for c, v in conditions.items()}},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("entities", argv)


if __name__ == "__main__":
    main()
