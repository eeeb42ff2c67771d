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

A pretrained rotary model (``--model smollm2-135m-per-layer``) has BPE tokens: ``run`` hands it over
to `analyses.token_increments` (English word-start AUC at the BPE level) over the English files;
Chinese files are refused (the gap protocol is byte-level).

Command::

    python -m analyses.word_boundaries [--model NAME_OR_DIR] [--text-file ZH_FILE ...] \\
        [--en-file EN_FILE ...] [--max-gaps 40000] --out out/word_boundaries
"""

from __future__ import annotations

import argparse
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from analyses import _common, token_increments
from analyses._common import (
    HookSpec,
    Result,
    char_windows,
    delta_rows,
    head_axis,
    is_cjk,
    run_batches,
    window_limit,
)
from lens_positions import HookedIncrementTransformer
from lens_positions.samples import sample_file
from lens_positions.subject import subject_of

#: Published Chinese AUCs (§3.3): the 6-layer per-layer model, and the shared model.
PUBLISHED_ZH_PER_LAYER = {"L0": 0.50, "L1": 0.54, "L2": 0.68, "L3": 0.37, "L4": 0.63, "L5": 0.47}
PUBLISHED_ZH_SHARED = {"shared": 0.50}

_BOUNDARY_BYTES = frozenset(b" \t\n\r") | frozenset(string.punctuation.encode()) - {ord("'")}
_LETTERS = frozenset(string.ascii_letters.encode())


@dataclass
class GapSet:
    """Scored gaps of one task.

    scores: δ at each gap [n_gaps, n_rows, n_heads_out] (n_heads_out = 1 unless per-head).
    labels: 1 for a word boundary, 0 for a within-word gap [n_gaps].
    rows: row labels (``L0``..., or ``shared``/``none``); task: ``"zh"`` or ``"en"``.
    """

    task: str
    rows: list[str]
    scores: Float[np.ndarray, "gaps rows heads"]
    labels: Int[np.ndarray, " gaps"]


def jieba_boundaries(text: str) -> set[int]:
    """Character offsets i such that jieba (precise mode) starts a new word at ``text[i]``."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary loading prints to stderr otherwise
    out, pos = set(), 0
    for word in jieba.cut(text, cut_all=False, HMM=True):
        pos += len(word)
        out.add(pos)
    out.discard(len(text))
    return out


def _score(
    model: HookedIncrementTransformer,
    token_lists: list[list[int]],
    targets: list[list[int]],
    batch_size: int,
    fwd_hooks: HookSpec,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """δ at the given token indices of each sequence: [sum of len(targets), n_rows, heads]."""
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    n_out = model.cfg.n_delta_outputs
    offsets = np.cumsum([0] + [len(t) for t in targets])
    out = np.zeros((offsets[-1], len(rows), n_out))
    keep = [i for i, t in enumerate(targets) if t]
    for idx, _, captured in run_batches(
        model,
        [token_lists[i] for i in keep],
        names,
        batch_size,
        fwd_hooks,
        progress=progress,
        desc=desc,
    ):
        for row, j in enumerate(idx):
            i = keep[j]
            where = np.asarray(targets[i])
            for r, name in enumerate(names):
                out[offsets[i] : offsets[i + 1], r] = head_axis(
                    captured[name][row], n_out
                ).numpy()[where]
    return out


def collect_chinese_gaps(
    model: HookedIncrementTransformer,
    texts: Sequence[str],
    max_tokens: int | None = None,
    max_gaps: int | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> GapSet:
    """Steps 1-4 of the Chinese protocol. Documents are taken in order until at least
    ``max_gaps`` gaps are collected (the last document is kept whole)."""
    limit = window_limit(model, max_tokens)
    token_lists: list[list[int]] = []
    targets: list[list[int]] = []
    labels: list[int] = []
    for d, text in enumerate(tqdm(texts, desc="jieba", disable=not progress, leave=False)):
        if max_gaps is not None and len(labels) >= max_gaps:
            break
        boundaries = jieba_boundaries(text)
        for w in char_windows(text, limit, d):
            where = []
            for j in range(1, w.end - w.start):
                g = w.start + j
                if is_cjk(text[g - 1]) and is_cjk(text[g]):
                    where.append(w.char_tokens[j])
                    labels.append(int(g in boundaries))
            token_lists.append(w.tokens)
            targets.append(where)
    scores = _score(model, token_lists, targets, batch_size, fwd_hooks, progress, "zh gaps")
    return GapSet(
        "zh", [label for _, label in delta_rows(model)], scores, np.asarray(labels, dtype=np.int64)
    )


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
    scores = _score(model, token_lists, targets, batch_size, fwd_hooks, progress, "en letters")
    return GapSet(
        "en", [label for _, label in delta_rows(model)], scores, np.asarray(labels, dtype=np.int64)
    )


# ------------------------------------------------------------------------------------------ AUC
def weighted_auc(
    scores: Float[np.ndarray, " n"],
    labels: Int[np.ndarray, " n"],
    weights: Float[np.ndarray, "b n"],
) -> Float[np.ndarray, " b"]:
    """ROC-AUC (ties count one half) of each row of sample weights (bootstrap multiplicities).

    Equal to scikit-learn's `roc_auc_score` with ``sample_weight`` but vectorised over resamples:
    AUC = sum over positives of w * (negative weight below + half the tied negative weight) /
    (positive weight * negative weight). NaN where a resample lacks one class.
    """
    values, inverse = np.unique(scores, return_inverse=True)
    n_vals = len(values)
    b = weights.shape[0]
    # Per resample and distinct score: total weight of positives and negatives with that score.
    flat = (inverse[None, :] + n_vals * np.arange(b)[:, None]).ravel()
    pos = np.bincount(
        flat, weights=(weights * labels[None, :]).ravel(), minlength=b * n_vals
    ).reshape(b, n_vals)
    neg = np.bincount(
        flat, weights=(weights * (1 - labels)[None, :]).ravel(), minlength=b * n_vals
    ).reshape(b, n_vals)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bootstrap_auc(
    scores: Float[np.ndarray, "n k"],
    labels: Int[np.ndarray, " n"],
    n_boot: int = 1000,
    seed: int = 0,
    chunk: int = 50,
) -> Float[np.ndarray, "n_boot k"]:
    """AUCs of ``n_boot`` resamples (with replacement) of the n gaps, for each of k score columns;
    every column sees the same resamples."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    out = np.empty((n_boot, scores.shape[1]))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        weights = np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)
        for k in range(scores.shape[1]):
            out[start : start + b, k] = weighted_auc(scores[:, k], labels, weights)
    return out


def auc_table(
    gaps: GapSet, n_boot: int = 1000, seed: int = 0, n_layers: int | None = None
) -> pd.DataFrame:
    """ROC-AUC per row (and per head plus head mean for per-head models) with bootstrap CIs.

    n_layers: the model's layer count; published per-layer values are shown only for a 6-layer
        model, the published shared value for the ``shared`` row.
    Columns: task, layer, head, auc, ci_low, ci_high, n_gaps, n_boundaries, base_rate,
    mean_boundary, mean_within (mean δ of each class), reference.
    """
    n_heads = gaps.scores.shape[2]
    heads: list[str | int] = ["mean"] + (list(range(n_heads)) if n_heads > 1 else [])
    columns, keys = [], []
    for r, label in enumerate(gaps.rows):
        for h in heads:
            columns.append(gaps.scores[:, r].mean(-1) if h == "mean" else gaps.scores[:, r, h])
            keys.append((label, h))
    y = gaps.labels
    n, n_pos = len(y), int(y.sum())
    two_classes = 0 < n_pos < n
    boots = (
        bootstrap_auc(np.stack(columns, 1), y, n_boot, seed) if two_classes and n_boot > 0 else None
    )
    reference = {}
    if gaps.task == "zh":
        reference = dict(PUBLISHED_ZH_SHARED)
        if n_layers == 6:
            reference.update(PUBLISHED_ZH_PER_LAYER)
    records = []
    for k, ((label, h), s) in enumerate(zip(keys, columns, strict=True)):
        auc = float(roc_auc_score(y, s)) if two_classes else np.nan
        lo = hi = np.nan
        if boots is not None:
            lo, hi = np.nanpercentile(boots[:, k], [2.5, 97.5])
        records.append(
            {
                "task": gaps.task,
                "layer": label,
                "head": str(h),
                "auc": auc,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "n_gaps": n,
                "n_boundaries": n_pos,
                "base_rate": n_pos / n if n else np.nan,
                "mean_boundary": float(s[y == 1].mean()) if n_pos else np.nan,
                "mean_within": float(s[y == 0].mean()) if n - n_pos else np.nan,
                "reference": reference.get(label) if h == "mean" and n_heads == 1 else None,
            }
        )
    return pd.DataFrame(records)


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
    for k, (task, sub) in enumerate(table[table["head"] == "mean"].groupby("task", sort=False)):
        x = np.arange(len(sub)) + 0.08 * k
        err = np.vstack([sub["auc"] - sub["ci_low"], sub["ci_high"] - sub["auc"]])
        ax.errorbar(x, sub["auc"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=task)
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
    return parser


def _token_hand_over(model, p: Params) -> Result:
    """A pretrained rotary bridge: `analyses.token_increments` (English word-start AUC at the BPE
    level) over the English files (default: the shipped English sample). The Chinese protocol
    scores gaps between characters, which BPE tokens do not line up with: refused."""
    if p.text_file:
        raise _common.InputError(
            "the Chinese protocol (gaps between characters vs jieba) is byte-level and does not run "
            "on a pretrained rotary model's BPE tokens; give --en-file for the English word-start "
            "AUC at the BPE level (analyses.token_increments)"
        )
    files = p.en_file or [str(sample_file("en"))]
    texts = _common.read_texts(files, p.en_source, p.max_docs)
    return token_increments.hand_over(model, "word_boundaries", texts, ", ".join(map(str, files)),
                                      p.max_tokens, p.batch_size,
                                      "Not run: the Chinese gaps vs jieba (a byte-level protocol). ")  # fmt: skip


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """`word_boundary_table` (table word_boundaries) and the AUC figure. A pretrained rotary
    bridge is handed over to `analyses.token_increments` (see `_token_hand_over`)."""
    p = params
    zh_files, en_files = p.text_file, p.en_file
    if subject_of(model).unit == "token":
        return _token_hand_over(model, p)
    if zh_files is None and en_files is None:
        zh_files, en_files = [str(sample_file("zh"))], [str(sample_file("en"))]
    if not zh_files and not en_files:
        raise _common.InputError("give --text-file (Chinese) and/or --en-file (English)")
    zh = _common.read_texts(zh_files, p.source, p.max_docs) if zh_files else None
    en = _common.read_texts(en_files, p.en_source, p.max_docs) if en_files else None
    table = word_boundary_table(
        model, zh, en, max_tokens=p.max_tokens, max_gaps=p.max_gaps, n_boot=p.n_boot,
        seed=p.seed, batch_size=p.batch_size, progress=p.progress,
    )  # fmt: skip
    variant = subject_of(model).label
    lines = [f"# Word boundaries — {variant}\n"]
    for task, sub in table.groupby("task", sort=False):
        first = sub.iloc[0]
        what = "Chinese gaps vs jieba" if task == "zh" else "English word starts vs within-word letters"
        lines.append(
            f"## {what}: {first['n_gaps']} scored, {first['n_boundaries']} boundaries "
            f"(base rate {first['base_rate']:.3f})\n"
        )
        cols = ["layer", "head", "auc", "ci_low", "ci_high", "mean_boundary", "mean_within", "reference"]
        if not model.cfg.per_head:
            cols.remove("head")
        lines.append(_common.markdown_table(sub[cols], {"reference": ".2f"}) + "\n")
    return Result(
        "\n".join(lines),
        tables={"word_boundaries": table},
        figures={"word_boundaries": plot_auc(table, f"word boundaries — {variant}")},
        facts={"variant": variant, "n_layers": model.cfg.n_layers,
               "window_tokens": window_limit(model, p.max_tokens)},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("word_boundaries", argv)


if __name__ == "__main__":
    main()
