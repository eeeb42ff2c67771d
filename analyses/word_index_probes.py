"""Word-index probes on byte models: does the model know which word of a list a byte belongs to?

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

Command::

    python -m analyses.word_index_probes [--model NAME_OR_DIR] --out out/word_index_probes
"""

from __future__ import annotations

import argparse
import string
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from analyses._common import (
    HookSpec,
    Result,
    add_common_args,
    command_main,
    head_axis,
    markdown_table,
    run_batches,
)
from analyses._wordlist import WORDS
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer

#: The post's prefix: generic filler, then a newline and a capitalised first word, so that every
#: probed word is lowercase and preceded by a space.
DEFAULT_PREFIX = (
    "The United States Declaration of Independence received its first formal public reading, "
    "in Philadelphia.\nWhen"
)

PREDICTORS = (
    "residual",
    "learned position",
    "learned position (all heads)",
    "absolute position",
    "absolute position (lookup)",
)


# ---------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class WordPrompts:
    """Prompts of a prefix and N words, with one probe example per word.

    tokens: per prompt, the separator then the UTF-8 bytes.
    prompt, pos, label, word_len: per example [n_examples]: prompt index, token index of the
        word's last byte (the absolute position; the separator is 0), word index, word length.
    words: per example, the word.
    """

    tokens: list[list[int]]
    prompt: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    label: Int[np.ndarray, " n"]
    word_len: Int[np.ndarray, " n"]
    words: list[str]


def split_words(
    words: Sequence[str], test_fraction: float, rng: np.random.Generator, min_len: int = 2, max_len: int = 10
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Split words into train and test pools, by length, so that every length is in both.

    Returns two dicts length -> words; lengths outside [min_len, max_len] or with fewer than two
    words are left out (both pools need one).
    """
    by_len: dict[int, list[str]] = defaultdict(list)
    for w in dict.fromkeys(words):
        if min_len <= len(w) <= max_len:
            by_len[len(w)].append(w)
    train: dict[int, list[str]] = {}
    test: dict[int, list[str]] = {}
    for n, group in sorted(by_len.items()):
        if len(group) < 2:
            continue
        group = [group[i] for i in rng.permutation(len(group))]
        n_test = min(len(group) - 1, max(1, round(test_fraction * len(group))))
        test[n], train[n] = group[:n_test], group[n_test:]
    if not train:
        raise ValueError("no word length has two words: cannot split train and test pools")
    return train, test


def make_prompts(
    pool: dict[int, list[str]],
    n_prompts: int,
    n_words: int,
    prefix: str,
    rng: np.random.Generator,
    random_letters: bool = False,
) -> WordPrompts:
    """Prompts ``prefix + " w1 w2 ... wN"``: each word's length uniform over the pool's lengths,
    then a word of that length uniformly (as the post did with token lengths).

    random_letters: replace each word by random lowercase letters of the same length (control).
    """
    lengths = sorted(pool)
    head = [SEPARATOR_ID, *prefix.encode("utf-8")]
    tokens: list[list[int]] = []
    cols: dict[str, list] = defaultdict(list)
    for i in range(n_prompts):
        row = list(head)
        for k in range(n_words):
            n = lengths[int(rng.integers(len(lengths)))]
            if random_letters:
                word = "".join(rng.choice(list(string.ascii_lowercase), size=n))
            else:
                word = pool[n][int(rng.integers(len(pool[n])))]
            row.extend(b" " + word.encode("ascii"))
            cols["prompt"].append(i)
            cols["pos"].append(len(row) - 1)
            cols["label"].append(k)
            cols["word_len"].append(n)
            cols["words"].append(word)
        tokens.append(row)
    return WordPrompts(
        tokens=tokens,
        prompt=np.asarray(cols["prompt"]),
        pos=np.asarray(cols["pos"]),
        label=np.asarray(cols["label"]),
        word_len=np.asarray(cols["word_len"]),
        words=cols["words"],
    )


# ---------------------------------------------------------------------------------------- features
@dataclass
class ProbeFeatures:
    """What the probes read at every example (the last byte of each word).

    resid: stage -> [n_examples, d_model]; stages 0..n_layers-1 are the residual stream entering
        block l (0 = the embedding), stage n_layers the final residual stream.
    positions: block l -> [n_examples, n_out] learned positions (n_out = n_heads for per-head
        models, else 1).
    """

    resid: dict[int, Float[np.ndarray, "n d_model"]]
    positions: dict[int, Float[np.ndarray, "n n_out"]]


@torch.no_grad()
def collect_features(
    model: HookedIncrementTransformer,
    prompts: WordPrompts,
    batch_size: int = 16,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
    desc: str = "features",
) -> ProbeFeatures:
    """Run the model over the prompts and read the residual streams and positions at the examples."""
    n_layers = model.cfg.n_layers
    names = {f"blocks.{li}.hook_resid_pre": ("resid", li) for li in range(n_layers)}
    names[f"blocks.{n_layers - 1}.hook_resid_post"] = ("resid", n_layers)
    names.update({f"blocks.{li}.hook_position": ("positions", li) for li in range(n_layers)})
    out: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for j, i in enumerate(prompts.prompt):
        by_prompt[int(i)].append(j)
    order: list[int] = []
    batches = run_batches(
        model, prompts.tokens, list(names), batch_size, fwd_hooks, progress=progress, desc=desc
    )
    for rows, _, captured in batches:
        # example j of batch row r sits at token prompts.pos[j]
        ex = [j for i in rows for j in by_prompt[i]]
        row_of = torch.tensor([r for r, i in enumerate(rows) for _ in by_prompt[i]])
        pos_of = torch.as_tensor(prompts.pos[ex])
        order.extend(ex)
        for name, key in names.items():
            act = captured[name][row_of, pos_of]
            if key[0] == "positions":
                act = head_axis(act.unsqueeze(0))[0]  # [n, n_out]
            out[key].append(act.numpy())
    inverse = np.argsort(np.asarray(order))
    joined = {key: np.concatenate(v)[inverse] for key, v in out.items()}
    return ProbeFeatures(
        resid={li: joined[("resid", li)] for li in range(n_layers + 1)},
        positions={li: joined[("positions", li)] for li in range(n_layers)},
    )


# ---------------------------------------------------------------------------------------- probes
def fit_probe(
    X_train: Float[np.ndarray, "n f"],
    y_train: Int[np.ndarray, " n"],
    X_test: Float[np.ndarray, "m f"],
    C: float = 1.0,
    max_iter: int = 500,
) -> Int[np.ndarray, " m"]:
    """Standardise, fit a multinomial logistic regression, predict the test labels.

    Standardising first matters: residual streams have large, uneven scales and positions run into
    the hundreds, which slows lbfgs and makes the (default) L2 penalty act unevenly. On a single
    feature the multinomial model partitions the line into intervals, one per class, so it acts as
    an ordinal threshold fit of the word index on that feature.
    """
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # One BLAS thread: on these small problems OpenBLAS threads fighting other jobs for 2 cores
    # made fits ~50x slower (measured 5.4 s vs 0.1 s).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # a few more lbfgs iterations change nothing visible; the warning would flood the output
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.asarray(X_train, dtype=np.float64), y_train)
        return clf.predict(np.asarray(X_test, dtype=np.float64))


def lookup_predict(
    x_train: Int[np.ndarray, " n"], y_train: Int[np.ndarray, " n"], x_test: Int[np.ndarray, " m"]
) -> Int[np.ndarray, " m"]:
    """The best position-only guess: the most frequent training label at each value of ``x``
    (the nearest seen value for unseen ones). No linear model can beat it using position alone."""
    df = pd.DataFrame({"x": x_train, "y": y_train})
    table = df.groupby("x")["y"].agg(lambda s: s.value_counts().index[0])
    seen = table.index.to_numpy()
    nearest = seen[np.abs(np.asarray(x_test)[:, None] - seen[None, :]).argmin(1)]
    return table.loc[nearest].to_numpy()


def balanced_subset(
    abs_pos: Int[np.ndarray, " n"], labels: Int[np.ndarray, " n"], rng: np.random.Generator, min_per_class: int = 2
) -> Int[np.ndarray, " m"]:
    """Indices of a subset balanced for absolute position.

    At each absolute position, keep the labels with at least ``min_per_class`` examples there; if at
    least two remain, sample the same number of examples (the smallest count) of each. Within every
    kept position the labels are then uniform, so position alone predicts at most chance.
    """
    keep: list[np.ndarray] = []
    for p in np.unique(abs_pos):
        at = np.flatnonzero(abs_pos == p)
        classes, counts = np.unique(labels[at], return_counts=True)
        ok = classes[counts >= min_per_class]
        if len(ok) < 2:
            continue
        m = int(counts[counts >= min_per_class].min())
        for c in ok:
            members = at[labels[at] == c]
            keep.append(rng.choice(members, size=m, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


def balanced_chance(abs_pos: Int[np.ndarray, " n"], labels: Int[np.ndarray, " n"]) -> float:
    """Expected accuracy of the best guess that knows only the absolute position (per-position
    majority class), on the given examples; on a balanced subset this is the mean of 1/k."""
    if len(labels) == 0:
        return float("nan")
    df = pd.DataFrame({"p": abs_pos, "y": labels})
    return float(df.groupby("p")["y"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(df))


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
@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    n_words: int = 7
    n_train: int = 1500
    n_test: int = 500
    prefix: str = DEFAULT_PREFIX
    min_len: int = 2
    max_len: int = 10
    C: float = 1.0
    no_controls: bool = False
    seed: int = 0
    batch_size: int = 16
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.word_index_probes", description=__doc__.split("\n")[0]
    )
    add_common_args(parser, "out/word_index_probes", batch_size=16, seed=True)
    parser.add_argument("--n-words", type=int, default=7, help="words per prompt (default 7)")
    parser.add_argument("--n-train", type=int, default=1500, help="training prompts (default 1500)")
    parser.add_argument("--n-test", type=int, default=500, help="test prompts (default 500)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="fixed prefix before the words")
    parser.add_argument("--min-len", type=int, default=2, help="shortest word (bytes)")
    parser.add_argument("--max-len", type=int, default=10, help="longest word (bytes)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the probes")
    parser.add_argument("--no-controls", action="store_true", help="skip random letters and shuffled labels")
    return parser


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """The probes, their tables (accuracy, f1, summary) and figures, and the printed report."""
    p = params
    result = word_index_probes(
        model, n_words=p.n_words, n_train=p.n_train, n_test=p.n_test, prefix=p.prefix,
        min_len=p.min_len, max_len=p.max_len, controls=not p.no_controls, C=p.C,
        seed=p.seed, batch_size=p.batch_size, progress=p.progress,
    )  # fmt: skip
    summary = result.summary()
    variant = model.cfg.variant_name
    lines = [
        f"## Word-index probes ({variant}, {p.n_words} words, {p.n_train} train / {p.n_test} test prompts)\n",
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
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "n_words": p.n_words,
               "n_train": p.n_train, "n_test": p.n_test, **result.info},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result | None:
    # Pretrained BPE models (e.g. smollm2-135m) take the token-level protocol.
    from lens_positions.rotary_models import is_rotary_model_name

    args = list(sys.argv[1:] if argv is None else argv)
    model_arg = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--model"), None)
    if model_arg is not None and is_rotary_model_name(model_arg):
        from analyses import _word_index_bpe

        return _word_index_bpe.main(args)
    return command_main("word_index_probes", argv)


if __name__ == "__main__":
    main()
