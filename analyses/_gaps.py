"""Gaps between units scored by δ, for any model: Chinese word boundaries vs jieba, their AUCs.

The Chinese protocol of `analyses.word_boundaries` (§3.3 of the learned-increments post) is
written here once for bytes and tokens, through `lens_positions.subject`:

- a *gap* lies between two adjacent CJK characters of one window (nothing between them in the
  text); it is *scored* when a unit starts exactly at the second character
  (`lens_positions.subject.Window.unit_starts`): its δ is then the step from the first character
  to the second. On a byte model every gap is scored (δ at the second character's lead byte, as
  published). On a BPE model many gaps lie *inside* a token (会自动 holds 会|自动): no δ is taken
  there, and the table says how many gaps, and how many jieba boundaries, the tokenizer hid so.
- label 1 when jieba puts a word boundary in the gap; ROC-AUC per layer with bootstrap CIs
  (`auc_table`).
- `probe_table`: the δ-free yardstick. A logistic probe on the residual stream entering each
  layer at the same units (the stream that layer's δ MLP reads), trained on some documents and
  scored by AUC on the others: how much of the boundary a layer *could* know, δ or not.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from analyses._common import HookSpec, delta_rows, head_axis, is_cjk, run_batches
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import DOCUMENT_WINDOW_TOKENS, subject_of

#: Published Chinese AUCs (§3.3): the 6-layer per-layer model, and the shared model.
PUBLISHED_ZH_PER_LAYER = {"L0": 0.50, "L1": 0.54, "L2": 0.68, "L3": 0.37, "L4": 0.63, "L5": 0.47}
PUBLISHED_ZH_SHARED = {"shared": 0.50}
#: Share of documents the residual probe is trained on (the rest test it), by a seeded draw.
PROBE_TRAIN_SHARE = 0.7


@dataclass
class GapSet:
    """Scored gaps of one task.

    scores: δ at each gap [n_gaps, n_rows, n_heads_out] (n_heads_out = 1 unless per-head).
    labels: 1 for a word boundary, 0 for a within-word gap [n_gaps].
    rows: row labels (``L0``..., or ``shared``/``none``); task: ``"zh"`` or ``"en"``.
    docs: each gap's document index [n_gaps]; unit: ``"byte"`` or ``"token"``.
    hidden_gaps, hidden_boundaries: CJK gaps inside one unit (no δ), and jieba boundaries among them.
    residual: layer -> the residual stream entering it at each gap's unit [n_gaps, d_model]
        (only when asked for, for `probe_table`).
    """

    task: str
    rows: list[str]
    scores: Float[np.ndarray, "gaps rows heads"]
    labels: Int[np.ndarray, " gaps"]
    docs: Int[np.ndarray, " gaps"] | None = None
    unit: str = "byte"
    hidden_gaps: int = 0
    hidden_boundaries: int = 0
    residual: dict[int, np.ndarray] = field(default_factory=dict)

    def facts(self) -> dict[str, float | int]:
        """Counts of the tokenizer's effect: scored gaps, the share of them inside a jieba word,
        gaps hidden inside units and the share of jieba boundaries hidden there."""
        n, pos = len(self.labels), int(self.labels.sum())
        boundaries = pos + self.hidden_boundaries
        return {
            "scored_gaps": n,
            "scored_inside_word_share": (n - pos) / n if n else float("nan"),
            "hidden_gaps": self.hidden_gaps,
            "hidden_boundary_share": self.hidden_boundaries / boundaries if boundaries else float("nan"),
        }


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


def score_units(
    model: HookedIncrementTransformer,
    token_lists: list[list[int]],
    targets: list[list[int]],
    batch_size: int,
    fwd_hooks: HookSpec,
    progress: bool,
    desc: str,
    residual_layers: Sequence[int] = (),
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """δ at the given unit indices of each sequence [sum of len(targets), n_rows, heads], and the
    residual stream entering each of ``residual_layers`` there ({layer: [sum, d_model]})."""
    s = subject_of(model)
    rows = delta_rows(model)
    names = [s.hook_delta(layer) for layer, _ in rows]
    resid = {layer: s.hook_resid_pre(layer) for layer in residual_layers}
    offsets = np.cumsum([0] + [len(t) for t in targets])
    out = np.zeros((offsets[-1], len(rows), s.delta_heads))
    res = {layer: None for layer in residual_layers}
    keep = [i for i, t in enumerate(targets) if t]
    for idx, _, captured in run_batches(
        model, [token_lists[i] for i in keep], names + list(resid.values()), batch_size, fwd_hooks,
        progress=progress, desc=desc,
    ):  # fmt: skip
        for row, j in enumerate(idx):
            i = keep[j]
            where = np.asarray(targets[i])
            for r, name in enumerate(names):
                out[offsets[i] : offsets[i + 1], r] = head_axis(captured[name][row], s.delta_heads).numpy()[where]
            for layer, name in resid.items():
                x = captured[name][row].float().numpy()[where]
                if res[layer] is None:
                    res[layer] = np.zeros((offsets[-1], x.shape[-1]), dtype=np.float32)
                res[layer][offsets[i] : offsets[i + 1]] = x
    return out, {k: v for k, v in res.items() if v is not None}


def chinese_window_limit(model: HookedIncrementTransformer, max_tokens: int | None) -> int:
    """Windows of the Chinese protocol, start included: ``min(n_ctx, 512)`` bytes, or a bridge's
    `DOCUMENT_WINDOW_TOKENS` tokens after its BOS, unless told."""
    s = subject_of(model)
    if max_tokens is None and s.unit == "token":
        max_tokens = min(DOCUMENT_WINDOW_TOKENS + 1, s.n_ctx)
    return s.window_limit(max_tokens)


def collect_chinese_gaps(
    model: HookedIncrementTransformer,
    texts: Sequence[str],
    max_tokens: int | None = None,
    max_gaps: int | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
    residual: bool = False,
) -> GapSet:
    """The Chinese protocol's gaps (see the module doc) on any model. Documents are taken in
    order until at least ``max_gaps`` gaps are scored (the last document is kept whole); with
    ``residual`` the residual stream entering every layer is kept at each scored gap."""
    s = subject_of(model)
    limit = chinese_window_limit(model, max_tokens)
    token_lists: list[list[int]] = []
    targets: list[list[int]] = []
    labels: list[int] = []
    docs: list[int] = []
    hidden = hidden_bounds = 0
    for d, text in enumerate(tqdm(texts, desc="jieba", disable=not progress, leave=False)):
        if max_gaps is not None and len(labels) >= max_gaps:
            break
        boundaries = jieba_boundaries(text)
        for w in s.windows(text, limit, d):
            where = []
            for j in range(1, w.end - w.start):
                g = w.start + j
                if not (is_cjk(text[g - 1]) and is_cjk(text[g])):
                    continue
                if w.starts_unit(j):
                    where.append(w.char_tokens[j])
                    labels.append(int(g in boundaries))
                    docs.append(d)
                else:
                    hidden += 1
                    hidden_bounds += int(g in boundaries)
            token_lists.append(w.tokens)
            targets.append(where)
    layers = range(s.n_layers) if residual else ()
    scores, resid = score_units(model, token_lists, targets, batch_size, fwd_hooks, progress, "zh gaps", layers)
    return GapSet("zh", [label for _, label in delta_rows(model)], scores, np.asarray(labels, dtype=np.int64),
                  np.asarray(docs, dtype=np.int64), s.unit, hidden, hidden_bounds, resid)


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




def probe_table(gaps: GapSet, n_boot: int = 1000, seed: int = 0, C: float = 1.0) -> pd.DataFrame:
    """Per layer: a standardised logistic probe of the residual stream entering the layer at
    each scored gap, fit on `PROBE_TRAIN_SHARE` of the documents (a seeded draw) and scored by
    ROC-AUC, with a bootstrap 95% interval over the test gaps, on the others.

    Columns: task, layer, auc, ci_low, ci_high, n_train, n_test, base_rate (test).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if not gaps.residual:
        raise ValueError("the gaps hold no residual stream: collect them with residual=True")
    rng = np.random.default_rng(seed)
    doc_ids = np.unique(gaps.docs)
    train_docs = rng.permutation(doc_ids)[: max(1, round(PROBE_TRAIN_SHARE * len(doc_ids)))]
    train = np.isin(gaps.docs, train_docs)
    test = ~train
    y = gaps.labels
    records = []
    layers = sorted(gaps.residual)
    scores = {}
    usable = len(np.unique(y[train])) == 2 and len(np.unique(y[test])) == 2
    for layer in layers:
        X = gaps.residual[layer].astype(np.float64)
        if not usable:
            scores[layer] = np.full(int(test.sum()), np.nan)
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[train], y[train])
            scores[layer] = clf.decision_function(X[test])
    columns = np.stack([scores[layer] for layer in layers], 1)
    boots = bootstrap_auc(columns, y[test], n_boot, seed) if usable and n_boot > 0 else None
    for k, layer in enumerate(layers):
        auc = float(roc_auc_score(y[test], columns[:, k])) if usable else np.nan
        lo = hi = np.nan
        if boots is not None:
            lo, hi = np.nanpercentile(boots[:, k], [2.5, 97.5])
        records.append({"task": gaps.task, "layer": f"L{layer}", "auc": auc, "ci_low": float(lo),
                        "ci_high": float(hi), "n_train": int(train.sum()), "n_test": int(test.sum()),
                        "base_rate": float(y[test].mean()) if test.any() else np.nan})
    return pd.DataFrame(records)
