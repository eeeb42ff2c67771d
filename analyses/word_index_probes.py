"""Word-index probes: does the model know which word of a list a unit belongs to?

The protocol of the "emergent positional embeddings" post (its §4), adapted to bytes:
a fixed prefix, then N random lowercase words (" w1 w2 ... wN", lengths drawn uniformly from the
available word lengths, words from train/test pools split per length so test words are unseen).
At the last byte of each word we read

- the residual stream entering every block (``blocks.{l}.hook_resid_pre``; block 0's is the
  embedding) and the final residual stream, and fit a scikit-learn ``LogisticRegression`` probe
  for the word index 0..N-1;
- the learned cumulative position ``blocks.{l}.hook_position`` (one number per token; the head mean
  for per-head models, and all heads as a second predictor) and fit the same classifier on that
  single feature: the model's own "emergent position" as a candidate word counter;
- the absolute byte position (token index, separator = 0) alone: the baseline every probe must
  beat, both with the same classifier and as a lookup table (the most frequent index at each
  position, the best any position-only predictor can do). For integer RoPE (``none``) the learned position *is* the absolute position, so both give
  the same accuracy (a built-in check).

Block l's position is computed from the residual stream entering block l, so the residual probe at
layer l and the learned position at layer l read the same stage.

Controls and balanced evaluation:

- *balanced for absolute position*: test examples are subsampled so that at every absolute byte
  position each word index present there (with at least two examples) has the same count;
  positions with a single word index are dropped. On that set absolute position carries no
  information about the index, so the absolute-position baseline scores at most chance (reported).
- *random letters*: the same protocol with each word replaced by random lowercase letters of the
  same length; a probe that only counts spaces does as well there as on real words.
- *shuffled labels*: the residual probe trained on permuted labels (should sit at chance).

**Grafted bridges** (``--model smollm2-135m[-per-layer]``) take the BPE protocol of the
follow-up (see `analyses._word_index_data`): probes on every layer's ``hook_resid_post`` at each
word's last token, token count uniform 1-3, the absolute-position baselines, the balanced test
subset and the random-letters control as above, and, on a model with learned increments, the
learned position alone and as an extra feature beside the residual stream. For
``increments="none"`` the learned position is the absolute token index (BOS = 0), a built-in
check. Published: GPT-2 small, layer 3, 10 words, test accuracy 0.749.

Sizes: the defaults are a first look (byte models 400 train / 150 test prompts, bridges 120 /
50); ``--full`` runs the protocol's sizes (1500 / 500 and 800 / 300), which the results document
uses. The parts: `analyses._word_index_data` (prompts, features), `analyses._probe_fits`.

Command::

    python -m analyses.word_index_probes [--model NAME_OR_DIR] [--full] --out out/word_index_probes
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from analyses._common import (
    HookSpec,
    InputError,
    Result,
    add_common_args,
    command_main,
    markdown_table,
)
from analyses._probe_fits import balanced_chance, balanced_subset, fit_probe, lookup_predict
from analyses._word_index_data import (
    DEFAULT_PREFIX,
    TOKEN_PREFIX,
    WORDLIST,
    TokenPrompts,
    WordListMissing,
    WordPrompts,
    collect_features,
    collect_token_features,
    load_words,
    make_prompts,
    make_token_prompts,
    random_letter_pools,
    split_words,
    token_pools,
)
from analyses._wordlist import WORDS
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of

#: The byte protocol's predictors (the BPE protocol adds "residual + learned position").
PREDICTORS = ("residual", "learned position", "learned position (all heads)", "absolute position",
              "absolute position (lookup)")  # fmt: skip


@dataclass
class WordIndexResult:
    """Results of `word_index_probes`.

    accuracy: one row per (dataset, predictor, layer, evaluation) with accuracy, macro F1, mean
        absolute index error, n, and chance (1/N on "test"; the position-only optimum on
        "balanced").
    f1: per-index F1 on the full test set: (dataset, predictor, layer, index, f1).
    n_words, n_layers, per_head: the set-up.
    """

    accuracy: pd.DataFrame
    f1: pd.DataFrame
    n_words: int
    n_layers: int
    per_head: bool
    info: dict[str, float] = field(default_factory=dict)

    def summary(self, dataset: str = "words") -> pd.DataFrame:
        """One row per layer: every predictor's accuracy on the test and balanced sets, plus the
        random-letters and shuffled-label controls."""
        acc = self.accuracy
        rows = []
        for layer in range(self.n_layers + 1):
            row: dict[str, object] = {"layer": layer, "stage": stage_name(layer, self.n_layers)}

            def get(ds: str, pred: str, ev: str, layer: int = layer) -> float:
                sel = acc[(acc.dataset == ds) & (acc.predictor == pred) & (acc.layer == layer) & (acc.evaluation == ev)]
                return float(sel.accuracy.iloc[0]) if len(sel) else float("nan")

            for ev in ("test", "balanced"):
                row[f"resid {ev}"] = get(dataset, "residual", ev)
                row[f"learned {ev}"] = get(dataset, "learned position", ev)
                if self.per_head:
                    row[f"learned heads {ev}"] = get(dataset, "learned position (all heads)", ev)
                row[f"abs {ev}"] = get(dataset, "absolute position", ev, layer=-1)
                row[f"abs lookup {ev}"] = get(dataset, "absolute position (lookup)", ev, layer=-1)
            row["random letters resid"] = get("random letters", "residual", "test")
            row["random letters learned"] = get("random letters", "learned position", "test")
            row["random letters abs"] = get("random letters", "absolute position", "test", layer=-1)
            row["shuffled labels resid"] = get(dataset, "residual (shuffled labels)", "test")
            row["chance test"] = 1.0 / self.n_words
            row["chance balanced"] = self.info.get(f"{dataset} balanced chance", float("nan"))
            rows.append(row)
        return pd.DataFrame(rows)


def stage_name(layer: int, n_layers: int) -> str:
    """Label of a residual stage: "embed" (entering block 0), "L{l-1}" (after block l-1)."""
    return "embed" if layer == 0 else f"L{layer - 1}"


def _scores(y: np.ndarray, pred: np.ndarray, n_words: int) -> dict[str, float]:
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=range(n_words), average="macro", zero_division=0)) if len(y) else float("nan"),
        "mae": float(np.abs(pred - y).mean()) if len(y) else float("nan"),
        "n": len(y),
    }


def word_index_probes(
    model: HookedIncrementTransformer,
    n_words: int = 7,
    n_train: int = 1500,
    n_test: int = 500,
    prefix: str = DEFAULT_PREFIX,
    words: Sequence[str] = WORDS,
    test_fraction: float = 0.2,
    min_len: int = 2,
    max_len: int = 10,
    controls: bool = True,
    C: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> WordIndexResult:
    """Probe every layer for the word index; compare with learned and absolute positions.

    n_train / n_test: prompts (each gives ``n_words`` examples); test prompts use the test pool of
    words. ``controls`` adds the random-letters dataset and the shuffled-label probe.
    Per-head models: "learned position" is the head mean, "learned position (all heads)" uses
    every head's position as a feature.
    """
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    train_pool, test_pool = split_words(words, test_fraction, rng, min_len, max_len)
    longest = 1 + len(prefix.encode("utf-8")) + n_words * (1 + max(train_pool))
    if longest > cfg.n_ctx:
        raise ValueError(
            f"prompts can reach {longest} tokens but n_ctx is {cfg.n_ctx}: shorten the prefix, "
            "n_words or max_len"
        )
    datasets = {"words": False} | ({"random letters": True} if controls else {})
    per_head = cfg.n_delta_outputs > 1
    acc_rows: list[dict] = []
    f1_rows: list[dict] = []
    info: dict[str, float] = {}
    steps = tqdm(total=len(datasets) * (2 * (cfg.n_layers + 1) + 1), desc="probes", disable=not progress, leave=False)
    for ds, random_letters in datasets.items():
        train = make_prompts(train_pool, n_train, n_words, prefix, rng, random_letters)
        test = make_prompts(test_pool, n_test, n_words, prefix, rng, random_letters)
        f_train = collect_features(model, train, batch_size, fwd_hooks, progress, f"{ds}: train")
        f_test = collect_features(model, test, batch_size, fwd_hooks, progress, f"{ds}: test")
        bal = balanced_subset(test.pos, test.label, rng)
        info[f"{ds} balanced n"] = float(len(bal))
        info[f"{ds} balanced chance"] = balanced_chance(test.pos[bal], test.label[bal])
        y_tr, y_te = train.label, test.label

        def record(pred_name: str, layer: int, pred: np.ndarray, ds: str = ds, bal: np.ndarray = bal,
                   y_te: np.ndarray = y_te, test: WordPrompts = test) -> None:
            for ev, idx in (("test", slice(None)), ("balanced", bal)):
                chance = 1.0 / n_words if ev == "test" else balanced_chance(test.pos[idx], y_te[idx])
                acc_rows.append({"dataset": ds, "predictor": pred_name, "layer": layer,
                                 "evaluation": ev, **_scores(y_te[idx], pred[idx], n_words), "chance": chance})
            f1s = f1_score(y_te, pred, labels=range(n_words), average=None, zero_division=0)
            f1_rows.extend({"dataset": ds, "predictor": pred_name, "layer": layer, "index": k, "f1": float(v)}
                           for k, v in enumerate(f1s))

        record("absolute position", -1, fit_probe(train.pos[:, None], y_tr, test.pos[:, None], C))
        record("absolute position (lookup)", -1, lookup_predict(train.pos, y_tr, test.pos))
        steps.update()
        for layer in range(cfg.n_layers + 1):
            record("residual", layer, fit_probe(f_train.resid[layer], y_tr, f_test.resid[layer], C))
            if controls and ds == "words":
                shuffled = y_tr[rng.permutation(len(y_tr))]
                record("residual (shuffled labels)", layer, fit_probe(f_train.resid[layer], shuffled, f_test.resid[layer], C))
            steps.update()
            if layer < cfg.n_layers:
                p_tr, p_te = f_train.positions[layer], f_test.positions[layer]
                record("learned position", layer, fit_probe(p_tr.mean(1, keepdims=True), y_tr, p_te.mean(1, keepdims=True), C))
                if per_head:
                    record("learned position (all heads)", layer, fit_probe(p_tr, y_tr, p_te, C))
            steps.update()
    steps.close()
    return WordIndexResult(pd.DataFrame(acc_rows), pd.DataFrame(f1_rows), n_words, cfg.n_layers, per_head, info)


# ---------------------------------------------------------------------------------------- figures
def plot_accuracy(result: WordIndexResult, title: str = ""):
    """Accuracy by layer for the residual probe, the learned position and absolute position, on the
    full test set and on the set balanced for absolute position, with controls and chance."""
    import matplotlib.pyplot as plt

    summary = result.summary()
    x = summary.layer.to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, ev in zip(axes, ("test", "balanced"), strict=True):
        ax.plot(x, summary[f"resid {ev}"], "o-", label="residual probe")
        ax.plot(x, summary[f"learned {ev}"], "s-", label="learned position" + (" (head mean)" if result.per_head else ""))
        if result.per_head:
            ax.plot(x, summary[f"learned heads {ev}"], "s--", label="learned positions (all heads)")
        ax.plot(x, summary[f"abs {ev}"], "k-", lw=1, label="absolute byte position")
        ax.plot(x, summary[f"abs lookup {ev}"], "k--", lw=1, label="absolute position, best lookup")
        if ev == "test":
            ax.plot(x, summary["random letters resid"], "o:", color="C0", alpha=0.6, label="residual, random letters")
            ax.plot(x, summary["shuffled labels resid"], "x:", color="grey", label="residual, shuffled labels")
        chance = "chance" if ev == "test" else "chance (best position-only guess)"
        ax.axhline(summary[f"chance {ev}"].iloc[0], color="k", ls=":", lw=1, label=chance)
        ax.set_xticks(x, summary.stage, rotation=45)
        ax.set_xlabel("residual stream (and positions of the block it enters)")
        ax.set_title(f"{'all test words' if ev == 'test' else 'balanced for absolute position'}")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel(f"word-index accuracy ({result.n_words} words)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "Word-index probes")
    fig.tight_layout()
    return fig


def plot_f1(result: WordIndexResult, title: str = ""):
    """Per-index F1 of the residual probe by layer (heatmap), beside the two position predictors."""
    import matplotlib.pyplot as plt

    f1 = result.f1[result.f1.dataset == "words"]
    resid = f1[f1.predictor == "residual"].pivot(index="index", columns="layer", values="f1")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    im = axes[0].imshow(resid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes[0].set_xticks(range(resid.shape[1]), [stage_name(int(c), result.n_layers) for c in resid.columns])
    axes[0].set_ylabel("word index")
    axes[0].set_title("residual probe F1")
    fig.colorbar(im, ax=axes[0])
    best = int(result.summary().sort_values("learned test", ascending=False).layer.iloc[0])
    for pred, layer, style in (("residual", best, "o-"), ("learned position", best, "s-"), ("absolute position", -1, "k-")):
        sel = f1[(f1.predictor == pred) & (f1.layer == layer)]
        if len(sel):
            where = "" if layer < 0 else f" ({stage_name(layer, result.n_layers)})"
            axes[1].plot(sel["index"], sel.f1, style, label=pred + where)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xlabel("word index")
    axes[1].set_title("per-index F1")
    axes[1].legend(fontsize=7)
    fig.suptitle(title or "Per-index F1")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- command


# ---------------------------------------------------------------------------------------- command


# ---------------------------------------------------------------------------------------- tokens
def probe_dataset(
    feats: dict[str, np.ndarray], train: TokenPrompts, test: TokenPrompts, C: float, learned: bool,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict[int, np.ndarray], np.ndarray]:
    """Accuracy per layer and predictor, on test and balanced test; residual predictions per layer."""
    n_train = len(train.label)
    resid, position = feats["resid"], feats["position"]
    y, y_test = train.label, test.label
    balanced = balanced_subset(test.pos, y_test, rng)
    rows, preds = [], {}

    def score(name: str, layer: int | None, pred: np.ndarray) -> None:
        rows.append({"predictor": name, "layer": layer, "test": float((pred == y_test).mean()),
                     "balanced": float((pred[balanced] == y_test[balanced]).mean()) if len(balanced) else np.nan})

    score("absolute position", None, fit_probe(train.pos[:, None], y, test.pos[:, None], C))
    score("absolute position (lookup)", None, lookup_predict(train.pos, y, test.pos))
    for layer in range(resid.shape[0]):
        preds[layer] = fit_probe(resid[layer, :n_train], y, resid[layer, n_train:], C)
        score("residual", layer, preds[layer])
        if learned:
            pos_l = position[layer][:, None]
            score("learned position", layer, fit_probe(pos_l[:n_train], y, pos_l[n_train:], C))
            both = np.concatenate([resid[layer], pos_l], axis=1)
            score("residual + learned position", layer, fit_probe(both[:n_train], y, both[n_train:], C))
    return pd.DataFrame(rows), preds, balanced


def token_word_index_probes(model: nn.Module, *, n_words: int = 7, n_train: int = 800, n_test: int = 300,
        max_tokens: int = 3, C: float = 1.0, seed: int = 0, batch_size: int = 32,
        controls: bool = True, prefix: str = TOKEN_PREFIX, words: Sequence[str] | None = None,
        fwd_hooks: list | None = None, letters_per_length: int = 400,
        progress: bool = False) -> dict[str, Any]:
    """The BPE protocol on a bridge; returns tables accuracy and f1 and the set-up facts (info).

    words: the word list (default: `load_words` of /usr/share/dict/words); fwd_hooks: hooks
    active while the features are read (e.g. an intervention to probe under).
    """
    tok = model.tokenizer
    rng = np.random.default_rng(seed)
    words = load_words(WORDLIST) if words is None else sorted(set(words))
    train_pool, test_pool, pool_sizes = token_pools(tok, words, max_tokens, 0.2, rng)
    head = [tok.bos_token_id] if tok.bos_token_id is not None else []
    head += tok(prefix, add_special_tokens=False)["input_ids"]
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    learned = getattr(model, "increments", "none") != "none"
    info: dict[str, Any] = {"prefix tokens": len(head), "words in list": len(words),
                            "pool sizes by token count": pool_sizes, "n_words": n_words,
                            "train prompts": n_train, "test prompts": n_test}
    datasets = {"words": (train_pool, test_pool)}
    if controls:
        letters = random_letter_pools(tok, max_tokens, letters_per_length, rng)
        split = {n: (v[: int(0.8 * len(v))], v[int(0.8 * len(v)):]) for n, v in letters.items()}
        datasets["random letters"] = ({n: a for n, (a, _) in split.items()}, {n: b for n, (_, b) in split.items()})
    tables, f1_rows = [], []
    for name, (tr_pool, te_pool) in datasets.items():
        t0 = time.monotonic()
        train = make_token_prompts(head, tr_pool, n_train, n_words, rng)
        test = make_token_prompts(head, te_pool, n_test, n_words, rng)
        if name == "words":  # the token lists equal tokenising the text whole
            checked = test.tokens[:100]
            same = sum(tok(tok.decode(r[len(head):]), add_special_tokens=False)["input_ids"] == r[len(head):]
                       for r in checked)
            info["test prompts equal to whole-text tokenisation"] = f"{same} of {len(checked)}"
        both = TokenPrompts(train.tokens + test.tokens, np.concatenate([train.prompt, test.prompt + n_train]),
                       np.concatenate([train.pos, test.pos]), np.concatenate([train.label, test.label]),
                       np.concatenate([train.n_tokens, test.n_tokens]))
        with model.hooks(fwd_hooks=fwd_hooks or []):
            feats = collect_token_features(model, both, batch_size, pad, progress=progress, desc=name)
        if name == "words":
            # δ = 1 (increments "none") gives learned position = token index (BOS = 0) exactly
            info["max |learned position - token index|"] = float(
                np.abs(feats["position"] - both.pos[None]).max())
        table, preds, balanced = probe_dataset(feats, train, test, C, learned, rng)
        table.insert(0, "dataset", name)
        tables.append(table)
        info[f"{name}: balanced n"] = int(len(balanced))
        info[f"{name}: balanced, best position-only accuracy"] = round(balanced_chance(
            test.pos[balanced], test.label[balanced]), 3)
        info[f"{name}: seconds"] = round(time.monotonic() - t0, 1)
        best = int(table[table.predictor == "residual"].sort_values("test").iloc[-1].layer)
        f1 = f1_score(test.label, preds[best], average=None, labels=list(range(n_words)))
        base = fit_probe(train.pos[:, None], train.label, test.pos[:, None], C)
        f1_pos = f1_score(test.label, base, average=None, labels=list(range(n_words)))
        for k in range(n_words):
            f1_rows.append({"dataset": name, "best layer": best, "index": k, "residual f1": float(f1[k]),
                            "absolute position f1": float(f1_pos[k])})
    return {"accuracy": pd.concat(tables, ignore_index=True), "f1": pd.DataFrame(f1_rows), "info": info}


def token_summary_table(acc: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: residual test/balanced accuracy, learned-position columns, control."""
    words = acc[acc.dataset == "words"]
    res = words[words.predictor == "residual"].set_index("layer")
    out = pd.DataFrame({"layer": res.index.astype(int), "residual test": res.test.values,
                        "residual balanced": res.balanced.values})
    for name in ("learned position", "residual + learned position"):
        part = words[words.predictor == name].set_index("layer")
        if len(part):
            out[f"{name} test"] = part.test.reindex(res.index).values
            out[f"{name} balanced"] = part.balanced.reindex(res.index).values
    ctrl = acc[(acc.dataset == "random letters") & (acc.predictor == "residual")].set_index("layer")
    if len(ctrl):
        out["random letters test"] = ctrl.test.reindex(res.index).values
    return out


def token_report(result: dict[str, Any], model_name: str) -> str:
    """The printed report of the BPE protocol."""
    acc, f1, info = result["accuracy"], result["f1"], result["info"]
    words = acc[acc.dataset == "words"]
    summary = token_summary_table(acc)
    best = summary.sort_values("residual test").iloc[-1]
    pos = words[words.predictor.str.startswith("absolute")].set_index("predictor")
    n_words = info["n_words"]
    lines = [
        f"# Word-index probes on {model_name} (BPE; the emergent-positions post's protocol)", "",
        f"Set-up: {info['prefix tokens']} prefix tokens (BOS + filler ending in a newline and \"When\"), "
        f"then {n_words} lowercase words, token count uniform 1–3 (pool sizes by token count "
        f"{info['pool sizes by token count']} from /usr/share/dict/words, split 80/20), "
        f"{info['train prompts']} train / {info['test prompts']} test prompts; probe = standardised "
        "logistic regression on each layer's `hook_resid_post` at each word's last token. "
        f"Balanced test subset: n = {info['words: balanced n']}, on which no position-only guess "
        f"can exceed {info['words: balanced, best position-only accuracy']:.3f}. Chance = {1 / n_words:.3f}.", "",
        "| | model | layer | words | test accuracy | balanced accuracy |",
        "|---|---|---:|---:|---:|---:|",
        f"| published follow-up | {PUBLISHED['model']} | {PUBLISHED['layer']} | {PUBLISHED['n_words']} | "
        f"{PUBLISHED['test_accuracy']:.3f} | — |",
        f"| this run, best layer | {model_name} | {int(best.layer)} | {n_words} | {best['residual test']:.3f} | "
        f"{best['residual balanced']:.3f} |",
        f"| position only (logistic) | {model_name} | — | {n_words} | {pos.loc['absolute position', 'test']:.3f} | "
        f"{pos.loc['absolute position', 'balanced']:.3f} |",
        f"| position only (per-position majority of train) | {model_name} | — | {n_words} | "
        f"{pos.loc['absolute position (lookup)', 'test']:.3f} | {pos.loc['absolute position (lookup)', 'balanced']:.3f} |",
        "", "## Accuracy by layer", "", markdown_table(summary), "",
        "## Per-index F1 at the best layer (test set)", "",
        markdown_table(f1[f1.dataset == "words"].drop(columns=["dataset"])), "",
        "## Notes", "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- command
@dataclass
class Params:
    """Options of `run` (the command's flags of the same names); None: the unit's default."""

    n_words: int = 7
    n_train: int | None = None
    n_test: int | None = None
    full: bool = False
    prefix: str | None = None
    min_len: int = 2
    max_len: int = 10
    C: float = 1.0
    no_controls: bool = False
    seed: int = 0
    batch_size: int | None = None  # None: 16 prompts a batch on byte models, 32 on bridges
    progress: bool = True

    def sizes(self, unit: str) -> tuple[int, int]:
        """(train, test) prompts: the flags, else `SIZES` of the unit (``--full``: the protocol's)."""
        train, test = SIZES[(unit, self.full)]
        return self.n_train or train, self.n_test or test


#: (unit, full) -> (train, test) prompts: a first look by default, the protocol with --full.
SIZES = {("byte", False): (400, 150), ("byte", True): (1500, 500),
         ("token", False): (120, 50), ("token", True): (800, 300)}  # fmt: skip
#: The published follow-up: GPT-2 small, layer 3, 10 words.
PUBLISHED = {"model": "GPT-2 small", "layer": 3, "n_words": 10, "test_accuracy": 0.749}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.word_index_probes", description=__doc__.split("\n")[0]
    )
    add_common_args(parser, "out/word_index_probes", batch_size=None, seed=True)
    parser.add_argument("--n-words", type=int, default=7, help="words per prompt (default 7)")
    parser.add_argument("--n-train", type=int, default=None, help="training prompts (default: see --full)")
    parser.add_argument("--n-test", type=int, default=None, help="test prompts (default: see --full)")
    parser.add_argument("--full", action="store_true",
                        help="the protocol's sizes (byte models 1500 / 500 prompts, bridges 800 / 300) "
                             "instead of the first look (400 / 150, 120 / 50)")
    parser.add_argument("--prefix", default=None, help="fixed prefix before the words (default: the unit's)")
    parser.add_argument("--min-len", type=int, default=2, help="byte models: shortest word (bytes)")
    parser.add_argument("--max-len", type=int, default=10, help="byte models: longest word (bytes)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the probes")
    parser.add_argument("--no-controls", action="store_true", help="skip random letters and shuffled labels")
    return parser


def run(model: HookedIncrementTransformer | Subject, params: Params) -> Result:
    """The probes, their tables (accuracy, f1, summary) and figures, and the printed report."""
    p = params
    s = subject_of(model)
    model = s.model
    n_train, n_test = p.sizes(s.unit)
    if s.unit == "token":
        return _token_run(s, p, n_train, n_test)
    try:
        result = word_index_probes(
            model, n_words=p.n_words, n_train=n_train, n_test=n_test, prefix=p.prefix or DEFAULT_PREFIX,
            min_len=p.min_len, max_len=p.max_len, controls=not p.no_controls, C=p.C,
            seed=p.seed, batch_size=p.batch_size or 16, progress=p.progress,
        )  # fmt: skip
    except ValueError as e:  # prompts longer than the context, no word length with two words
        raise InputError(str(e)) from e
    summary = result.summary()
    variant = s.label
    lines = [
        f"## Word-index probes ({variant}, {p.n_words} words, {n_train} train / {n_test} test prompts)\n",
        "Accuracy at the last byte of each word (test words unseen in training). `learned` = "
        "logistic regression on the block's cumulative position alone"
        + (" (head mean; `learned heads` = all heads)" if result.per_head else "")
        + "; `abs` = on the absolute byte position alone (`abs lookup`: the most frequent index at each "
        "position, the best position-only guess). `balanced` = test examples balanced "
        f"for absolute position (n = {int(result.info['words balanced n'])}).\n",
    ]
    controls = [c for c in summary.columns if c.startswith(("random letters", "shuffled"))]
    lines.append(markdown_table(summary.drop(columns=controls)))
    if controls:
        lines += [
            "\n### Controls (test set): random lowercase strings of the same lengths; probe trained on "
            "shuffled labels (chance = 1 / n_words on average; one draw)\n",
            markdown_table(summary[["layer", "stage", *controls, "chance test"]]),
        ]
    f1 = result.f1[(result.f1.dataset == "words") & (result.f1.predictor == "residual")]
    table = f1.pivot(index="index", columns="layer", values="f1")
    table.columns = [stage_name(int(c), model.cfg.n_layers) for c in table.columns]
    absf = result.f1[(result.f1.dataset == "words") & (result.f1.predictor == "absolute position")]
    table["abs position"] = absf.set_index("index").f1
    lines += [
        "\n### Per-index F1 of the residual probe (test set), with the absolute-position baseline\n",
        markdown_table(table.reset_index()),
    ]
    return Result(
        markdown="\n".join(lines),
        tables={"accuracy": result.accuracy, "f1": result.f1, "summary": summary},
        figures={
            "accuracy_by_layer": plot_accuracy(result, f"Word-index probes: {variant}"),
            "f1_by_index": plot_f1(result, f"Per-index F1: {variant}"),
        },
        facts={"variant": variant, "unit": s.unit, "n_layers": s.n_layers, "n_words": p.n_words,
               "n_train": n_train, "n_test": n_test, **result.info},
    )  # fmt: skip


def _token_run(s: Subject, p: Params, n_train: int, n_test: int) -> Result:
    """`run` on a bridge: the BPE protocol's tables accuracy, f1 and summary, the report."""
    try:
        result = token_word_index_probes(
            s.model, n_words=p.n_words, n_train=n_train, n_test=n_test, C=p.C, seed=p.seed,
            batch_size=p.batch_size or 32, controls=not p.no_controls, prefix=p.prefix or TOKEN_PREFIX,
            progress=p.progress,
        )  # fmt: skip
    except WordListMissing as e:
        raise InputError(str(e)) from e
    summary = token_summary_table(result["accuracy"])
    return Result(
        token_report(result, s.name if s.increments == "none" else f"{s.name}-{s.increments.replace('_', '-')}"),
        tables={"accuracy": result["accuracy"], "f1": result["f1"], "summary": summary},
        figures={"accuracy_by_layer": plot_token_accuracy(summary, f"Word-index probes: {s.label}")},
        facts={"variant": s.label, "unit": s.unit, "n_layers": s.n_layers, "n_words": p.n_words,
               "n_train": n_train, "n_test": n_test, **{k: v for k, v in result["info"].items()
                                                        if not isinstance(v, dict)}},
    )  # fmt: skip


def plot_token_accuracy(summary: pd.DataFrame, title: str = ""):
    """Bridges: test and balanced accuracy of the residual probe by layer (the learned position
    and the random-letters control where measured)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.8))
    ax = fig.subplots()
    for col, style in (("residual test", "o-"), ("residual balanced", "o--"),
                       ("learned position test", "s-"), ("random letters test", "x:")):
        if col in summary:
            ax.plot(summary["layer"], summary[col], style, ms=4, label=col)
    ax.set_xlabel("layer (hook_resid_post)")
    ax.set_ylabel("word-index accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(title or "Word-index probes", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("word_index_probes", argv)


if __name__ == "__main__":
    main()
