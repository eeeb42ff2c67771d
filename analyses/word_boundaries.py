"""Word boundaries in δ: Chinese against jieba (§3.3 of the learned-increments post), and English word starts.

Chinese protocol (as published):

1. Each held-out document is segmented by jieba in precise mode (``cut_all=False``, HMM on, its
   default) over the whole document.
2. The document is cut into consecutive character-aligned windows of at most ``max_tokens``
   tokens, the prepended separator included (default ``min(n_ctx, 512)``); each window runs
   separately.
3. A *gap* is scored only between two adjacent characters of one window that are both CJK
   Unified Ideographs (U+4E00-U+9FFF) — adjacent in the text, so no space, punctuation or
   anything else lies between them.
4. Label = 1 when jieba puts a word boundary in the gap; score = δ at the lead byte of the
   second character (the increment from the first character's last byte to it).
5. ROC-AUC per reported layer (scikit-learn), with a bootstrap 95% interval: gaps are resampled
   with replacement (``n_boot`` times, seeded; the same resamples for every layer and head) and
   the 2.5th and 97.5th percentiles of the resampled AUCs are reported. 0.5 is chance; below 0.5
   means the layer *compresses* boundaries.

English protocol (defined here; not in the post): in the same windows, every ASCII letter
(a-z, A-Z) whose preceding byte is also in the window is scored by its own δ.

- positive (word start): the preceding byte is an ASCII space, tab or newline, or ASCII
  punctuation other than an apostrophe (so ``step-by-step`` has three word starts);
- negative (within word): the preceding byte is an ASCII letter;
- letters after an apostrophe (``don't``, ``Babbage's``), a digit or a non-ASCII byte, and the
  first letter of a window, are not scored.

Per-head models: one row per head and one for δ averaged over heads (``head = "mean"``).
Models whose δ is the same in every layer report one ``shared`` (or ``none``) row.

The Chinese protocol runs on any model (`analyses._gaps`, written once for bytes and tokens).
On a pretrained rotary model (``--model gemma3-270m-per-layer``) a gap is scored where a token
starts at the second character; a gap inside a token (会自动 holds 会|自动) has no δ of its own
and is counted, not scored: the report gives the share of jieba's boundaries the tokenizer hides
so, and the share of scored gaps that fall inside a jieba word. Its windows hold 256 tokens after
the BOS. The English protocol is byte-level: on a bridge the English files are handed over to
`analyses.token_increments` (English word-start AUC at the BPE level).

``--probe`` adds the δ-free yardstick: per layer, a logistic probe of the residual stream entering
the layer at the scored units, trained on 70% of the documents and scored by AUC on the rest
(`analyses._gaps.probe_table`). On a base model (δ = 1, AUC 0.5 by construction) it is the only
informative row.

Command::

    python -m analyses.word_boundaries [--model NAME_OR_DIR] [--text-file ZH_FILE ...] \\
        [--en-file EN_FILE ...] [--max-gaps 40000] --out out/word_boundaries
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses import _common, token_increments
from analyses._common import HookSpec, Result, char_windows, delta_rows, window_limit
from analyses._gaps import (  # noqa: F401 - the protocol's parts, re-exported
    PUBLISHED_ZH_PER_LAYER,
    PUBLISHED_ZH_SHARED,
    GapSet,
    auc_table,
    bootstrap_auc,
    chinese_window_limit,
    collect_chinese_gaps,
    jieba_boundaries,
    probe_table,
    score_units,
    weighted_auc,
)
from lens_positions import HookedIncrementTransformer
from lens_positions.samples import sample_file
from lens_positions.subject import subject_of

#: A bridge's first look without ``--full`` or ``--max-gaps``: documents until this many Chinese
#: gaps are scored (a forward pass of a pretrained model costs ~100x a byte model's).
TOKEN_FIRST_LOOK_GAPS = 3000

_BOUNDARY_BYTES = frozenset(b" \t\n\r") | frozenset(string.punctuation.encode()) - {ord("'")}
_LETTERS = frozenset(string.ascii_letters.encode())


def english_targets(tokens: Sequence[int]) -> tuple[list[int], list[int]]:
    """Token indices of scored letters in one window and their labels (see module docstring).

    Index 0 is the separator, so a letter is scored only if its predecessor is a text byte.
    """
    where, labels = [], []
    for i in range(2, len(tokens)):
        if tokens[i] not in _LETTERS:
            continue
        prev = tokens[i - 1]
        if prev in _LETTERS:
            where.append(i)
            labels.append(0)
        elif prev in _BOUNDARY_BYTES:
            where.append(i)
            labels.append(1)
    return where, labels


def collect_english_boundaries(
    model: HookedIncrementTransformer,
    texts: Sequence[str],
    max_tokens: int | None = None,
    max_gaps: int | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> GapSet:
    """The English protocol: δ at word-start letters (label 1) and within-word letters (0)."""
    limit = window_limit(model, max_tokens)
    token_lists, targets, labels = [], [], []
    for d, text in enumerate(texts):
        if max_gaps is not None and len(labels) >= max_gaps:
            break
        for w in char_windows(text, limit, d):
            where, lab = english_targets(w.tokens)
            token_lists.append(w.tokens)
            targets.append(where)
            labels.extend(lab)
    scores, _ = score_units(model, token_lists, targets, batch_size, fwd_hooks, progress, "en letters")
    return GapSet(
        "en", [label for _, label in delta_rows(model)], scores, np.asarray(labels, dtype=np.int64)
    )


def word_boundary_table(
    model: HookedIncrementTransformer,
    zh_texts: Sequence[str] | None = None,
    en_texts: Sequence[str] | None = None,
    max_tokens: int | None = None,
    max_gaps: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Both protocols on the given texts; one table (see `auc_table`) with a ``task`` column."""
    tables = []
    kw = dict(
        max_tokens=max_tokens,
        max_gaps=max_gaps,
        batch_size=batch_size,
        fwd_hooks=fwd_hooks,
        progress=progress,
    )
    if zh_texts:
        gaps = collect_chinese_gaps(model, zh_texts, **kw)
        tables.append(auc_table(gaps, n_boot, seed, model.cfg.n_layers))
    if en_texts:
        gaps = collect_english_boundaries(model, en_texts, **kw)
        tables.append(auc_table(gaps, n_boot, seed, model.cfg.n_layers))
    if not tables:
        raise ValueError("give Chinese and/or English texts")
    return pd.concat(tables, ignore_index=True)


def plot_auc(table: pd.DataFrame, title: str = ""):
    """AUC per row with its 95% interval, one line per task (head-mean rows); chance at 0.5."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    groups = list(table[table["head"] == "mean"].groupby("task", sort=False))
    widest = max(len(sub) for _, sub in groups)
    for k, (task, sub) in enumerate(groups):
        if len(sub) == 1 < widest:  # one δ for every layer (none, shared) beside per-layer rows
            row = sub.iloc[0]
            ax.axhspan(row["ci_low"], row["ci_high"], color=f"C{k}", alpha=0.15)
            ax.axhline(row["auc"], color=f"C{k}", lw=1.5, label=f"{task} ({row['layer']}: every layer)")
            continue
        x = np.arange(len(sub)) + 0.08 * k
        err = np.vstack([sub["auc"] - sub["ci_low"], sub["ci_high"] - sub["auc"]])
        ax.errorbar(x, sub["auc"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=task, color=f"C{k}")
        ax.set_xticks(np.arange(len(sub)), list(sub["layer"]))
        ref = sub["reference"].astype(float)
        if ref.notna().any():
            ax.plot(np.arange(len(sub)), ref, "x", color="0.3", label=f"{task} published")
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_ylabel("ROC-AUC (95% bootstrap CI)")
    ax.set_title(title or "word boundaries", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names). With neither ``text_file`` nor
    ``en_file`` the shipped held-out sample is read (both languages)."""

    text_file: list[str] | None = None
    en_file: list[str] | None = None
    source: str | None = None
    en_source: str | None = None
    max_docs: int | None = None
    max_gaps: int | None = None
    max_tokens: int | None = None
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 8
    probe: bool = False  # the residual-stream probe per layer (Chinese gaps)
    full: bool = False  # a bridge: every document instead of the first look's TOKEN_FIRST_LOOK_GAPS
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.word_boundaries", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/word_boundaries")
    parser.add_argument(
        "--text-file", nargs="*", default=None,
        help="held-out Chinese text (plain or .jsonl; default, with no --en-file either: the "
        "shipped held-out sample)",
    )  # fmt: skip
    parser.add_argument(
        "--en-file", nargs="*", default=None, help="English text for the English protocol"
    )
    parser.add_argument(
        "--source", default=None, help='keep only .jsonl rows with this "source" (Chinese files)'
    )
    parser.add_argument("--en-source", default=None, help="the same for the English files")
    parser.add_argument("--max-docs", type=int, default=None, help="documents per language at most")
    parser.add_argument(
        "--max-gaps", type=int, default=None, help="stop adding documents after this many gaps"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=None,
        help="window size (default min(n_ctx, 512); a pretrained rotary model: tokens after BOS, default 256)",
    )
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--full", action="store_true",
                        help=f"a bridge: every document of the files instead of the first look (documents "
                             f"until {TOKEN_FIRST_LOOK_GAPS} Chinese gaps are scored)")
    parser.add_argument("--probe", action="store_true",
                        help="also probe the residual stream entering each layer for jieba boundaries "
                             "(the δ-free yardstick; Chinese gaps)")
    return parser


def _chinese_section(model, zh: list[str], p: Params) -> tuple[list[str], dict[str, pd.DataFrame], dict]:
    """The Chinese protocol on any model: its Markdown lines, tables and facts."""
    s = subject_of(model)
    max_gaps = p.max_gaps
    if max_gaps is None and s.unit == "token" and not p.full:
        max_gaps = TOKEN_FIRST_LOOK_GAPS
    gaps = collect_chinese_gaps(model, zh, max_tokens=p.max_tokens, max_gaps=max_gaps,
                                batch_size=p.batch_size, progress=p.progress, residual=p.probe)
    if not len(gaps.labels):
        raise _common.InputError(
            "the Chinese files hold no scored gap (two adjacent Chinese characters, a unit starting at "
            f"the second; {gaps.hidden_gaps} gaps lie inside {s.unit}s)")
    table = auc_table(gaps, p.n_boot, p.seed, s.n_layers)
    tables = {"word_boundaries": table}
    f = gaps.facts()
    lines = [f"## Chinese gaps vs jieba: {f['scored_gaps']} scored, {int(gaps.labels.sum())} boundaries "
             f"(base rate {gaps.labels.mean():.3f})\n" if len(gaps.labels) else
             "## Chinese gaps vs jieba: none scored\n"]
    if s.unit == "token":
        lines.append(
            f"Token level: {f['hidden_gaps']} more gaps lie inside a token and have no δ; they hold "
            f"{f['hidden_boundary_share']:.1%} of jieba's boundaries between Chinese characters. "
            f"{f['scored_inside_word_share']:.1%} of the scored gaps (token starts) fall inside a "
            "jieba word.\n")
    cols = ["layer", "head", "auc", "ci_low", "ci_high", "mean_boundary", "mean_within", "reference"]
    if s.delta_heads == 1:
        cols.remove("head")
    lines.append(_common.markdown_table(table[cols], {"reference": ".2f"}) + "\n")
    if p.probe:
        probes = probe_table(gaps, p.n_boot, p.seed)
        tables["residual_probe"] = probes
        first = probes.iloc[0]
        lines += [f"## Residual probe (δ-free yardstick): {first['n_train']} training and "
                  f"{first['n_test']} test gaps, held-out documents\n",
                  _common.markdown_table(probes[["layer", "auc", "ci_low", "ci_high"]]) + "\n"]
    return lines, tables, f


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """The Chinese protocol on any model (table word_boundaries; with ``probe`` also
    residual_probe) and the English one (byte models; a bridge hands its English files over to
    `analyses.token_increments`), with the AUC figure."""
    p = params
    s = subject_of(model)
    zh_files, en_files = p.text_file, p.en_file
    if zh_files is None and en_files is None:
        zh_files, en_files = [str(sample_file("zh"))], [str(sample_file("en"))]
    if not zh_files and not en_files:
        raise _common.InputError("give --text-file (Chinese) and/or --en-file (English)")
    zh = _common.read_texts(zh_files, p.source, p.max_docs) if zh_files else None
    en = _common.read_texts(en_files, p.en_source, p.max_docs) if en_files else None
    variant = s.label
    lines = [f"# Word boundaries — {variant}\n"]
    tables: dict[str, pd.DataFrame] = {}
    window = chinese_window_limit(model, p.max_tokens)
    facts: dict = {"variant": variant, "n_layers": s.n_layers, "unit": s.unit,
                   "window_units": window, "window_tokens": window}
    if zh:
        zh_lines, tables, zh_facts = _chinese_section(model, zh, p)
        lines += zh_lines
        facts.update(zh_facts)
    handed = None
    if en and s.unit == "token":
        handed = token_increments.hand_over(model, "word_boundaries", en, ", ".join(map(str, en_files)),
                                            p.max_tokens, p.batch_size, "")
        lines.append(handed.markdown)
        tables.update(handed.tables)
        facts["handed_over_from"] = "word_boundaries"
    elif en:
        en_table = auc_table(collect_english_boundaries(
            model, en, max_tokens=p.max_tokens, max_gaps=p.max_gaps, batch_size=p.batch_size,
            progress=p.progress), p.n_boot, p.seed, s.n_layers)
        first = en_table.iloc[0]
        lines.append(f"## English word starts vs within-word letters: {first['n_gaps']} scored, "
                     f"{first['n_boundaries']} boundaries (base rate {first['base_rate']:.3f})\n")
        cols = ["layer", "head", "auc", "ci_low", "ci_high", "mean_boundary", "mean_within"]
        if s.delta_heads == 1:
            cols.remove("head")
        lines.append(_common.markdown_table(en_table[cols]) + "\n")
        tables["word_boundaries"] = pd.concat([tables["word_boundaries"], en_table], ignore_index=True) \
            if "word_boundaries" in tables else en_table
    figures = {}
    if "word_boundaries" in tables:
        plotted = tables["word_boundaries"]
        if "residual_probe" in tables:
            plotted = pd.concat([plotted, tables["residual_probe"].assign(
                task="zh residual probe", head="mean", reference=None)], ignore_index=True)
        figures["word_boundaries"] = plot_auc(plotted, f"word boundaries — {variant}")
    if handed is not None:
        figures.update(handed.figures)
    return Result("\n".join(lines), tables=tables, figures=figures, facts=facts)


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("word_boundaries", argv)


if __name__ == "__main__":
    main()
