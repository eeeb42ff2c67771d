"""Word-index probes on a pretrained BPE language model (the emergent-positions post's protocol).

REFERENCE.md §4, adapted faithfully to a BPE model such as SmolLM2-135M:

- a fixed prefix (generic filler ending in a newline and "When"), then N = 7 random lowercase
  words, each fed with a leading space; each word's *token* length is drawn uniformly from 1-3,
  then a word of that length (``" " + word`` tokenised alone) from an English word list (Debian's
  ``wamerican``, ``/usr/share/dict/words``: lowercase a-z only);
- the words of each token length are split 80/20 into train and test pools, so test prompts use
  words no probe saw;
- the probe reads each word's last token, in every layer's ``blocks.{l}.hook_resid_post``; a
  scikit-learn logistic regression on standardised features predicts the word index 0..N-1.

Reported per layer: test accuracy; accuracy on a test subset balanced for absolute position (at
each token position, the same number of examples of every word index found there; positions
with one index dropped, so position alone predicts at most chance there); position-only
baselines (the same classifier on the absolute token position; the per-position majority
lookup, the best any position-only guess can do); per-index F1 at the best layer; the
random-letters control (each word replaced by random lowercase letters with the same token
count, same protocol); and, on a model with learned increments, the learned position
(``blocks.{l}.hook_position``, the positions layer l's attention uses) alone and as an extra
feature beside the residual stream. For ``increments="none"`` the learned position is the
absolute token index (BOS = 0), a built-in check.

Prompts are built as token lists (BOS, prefix tokens, then each ``" " + word``'s tokens), so the
probed token is exactly each word's last; BPE splits at the leading spaces, so this equals
tokenising the whole string (counted and reported).

A private module: its command is `analyses.word_index_probes`'s, which hands over here when
``--model`` names a pretrained rotary model (`lens_positions.rotary_models.is_rotary_model_name`).

Command::

    python -m analyses.word_index_probes --model smollm2-135m [--out results/word_index_bpe/NAME]
"""

from __future__ import annotations

import argparse
import string
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from torch import nn

from analyses._common import markdown_table, save_table
from lens_positions.atomic import write_text_atomic

#: Filler ending in a newline and a capitalised "When", so every probed word is lowercase and
#: follows a space (written for this project in the post's spirit; ~19 SmolLM2 tokens).
PREFIX = (
    "The old harbour town held its first public market of the year on a cold morning in March.\nWhen"
)
WORDLIST = Path("/usr/share/dict/words")
#: The published follow-up: GPT-2 small, layer 3, 10 words (REFERENCE.md §4).
PUBLISHED = {"model": "GPT-2 small", "layer": 3, "n_words": 10, "test_accuracy": 0.749}


class WordListMissing(RuntimeError):
    pass


def load_words(path: Path = WORDLIST) -> list[str]:
    """Lowercase a-z words of the list (proper nouns, accents and possessives dropped)."""
    if not path.is_file():
        raise WordListMissing(
            f"{path} not found: install Debian's English word list (`apt-get install wamerican`)"
        )
    words = [w.strip() for w in path.read_text(encoding="utf-8", errors="ignore").splitlines()]
    return sorted({w for w in words if w and w.isascii() and w.isalpha() and w.islower()})


def token_pools(
    tokenizer: Any, words: Sequence[str], max_tokens: int, test_fraction: float, rng: np.random.Generator
) -> tuple[dict[int, list[list[int]]], dict[int, list[list[int]]], dict[int, int]]:
    """Words' ``" " + word`` token ids grouped by token count 1..max_tokens, split train/test."""
    by_len: dict[int, list[list[int]]] = defaultdict(list)
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    for ids in encoded:
        if 1 <= len(ids) <= max_tokens:
            by_len[len(ids)].append(ids)
    train, test = {}, {}
    for n in range(1, max_tokens + 1):
        group = by_len[n]
        if len(group) < 5:
            raise ValueError(f"only {len(group)} words of {n} token(s): cannot make both pools")
        order = rng.permutation(len(group))
        n_test = max(1, round(test_fraction * len(group)))
        test[n] = [group[i] for i in order[:n_test]]
        train[n] = [group[i] for i in order[n_test:]]
    return train, test, {n: len(v) for n, v in by_len.items()}


def random_letter_pools(
    tokenizer: Any, max_tokens: int, per_length: int, rng: np.random.Generator
) -> dict[int, list[list[int]]]:
    """Random lowercase strings (2-10 letters) grouped by their token count (control)."""
    pools: dict[int, list[list[int]]] = {n: [] for n in range(1, max_tokens + 1)}
    letters = np.array(list(string.ascii_lowercase))
    tries = 0
    while min(len(v) for v in pools.values()) < per_length:
        tries += 1
        if tries > 200 * per_length * max_tokens:
            raise RuntimeError("could not draw enough random-letter strings of every token count")
        s = "".join(rng.choice(letters, size=int(rng.integers(1, 11))))
        ids = tokenizer(" " + s, add_special_tokens=False)["input_ids"]
        if len(ids) in pools and len(pools[len(ids)]) < per_length:
            pools[len(ids)].append(ids)
    return pools


@dataclass
class Prompts:
    """Token rows and one example per word: prompt index, token position, word index, token count."""

    tokens: list[list[int]]
    prompt: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    label: Int[np.ndarray, " n"]
    n_tokens: Int[np.ndarray, " n"]


def make_prompts(
    head: list[int], pool: dict[int, list[list[int]]], n_prompts: int, n_words: int, rng: np.random.Generator
) -> Prompts:
    """``head`` then N words: token count uniform over the pool's counts, then a word of that count."""
    counts = sorted(pool)
    rows, cols = [], defaultdict(list)
    for i in range(n_prompts):
        row = list(head)
        for k in range(n_words):
            n = counts[int(rng.integers(len(counts)))]
            row.extend(pool[n][int(rng.integers(len(pool[n])))])
            for key, v in (("prompt", i), ("pos", len(row) - 1), ("label", k), ("n_tokens", n)):
                cols[key].append(v)
        rows.append(row)
    return Prompts(rows, *(np.asarray(cols[k]) for k in ("prompt", "pos", "label", "n_tokens")))


@torch.no_grad()
def collect(model: nn.Module, prompts: Prompts, batch_size: int, pad_id: int,
            progress: bool = False, desc: str = "prompts") -> dict[str, np.ndarray]:
    """resid_post of every layer [n_layers, n, d_model] and hook_position [n_layers, n] at the examples.

    Rows are right-padded: attention is causal and δ reads only earlier tokens, so padding after
    the last word changes nothing before it. Positions are token indices (BOS = 0).
    """
    n_layers = len(model.blocks)
    resid_names = [f"blocks.{li}.hook_resid_post" for li in range(n_layers)]
    pos_names = [f"blocks.{li}.hook_position" for li in range(n_layers)]
    wanted = set(resid_names + pos_names)
    resid, position = [], []
    starts = range(0, len(prompts.tokens), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    for start in starts:
        rows = range(start, min(len(prompts.tokens), start + batch_size))
        width = max(len(prompts.tokens[i]) for i in rows)
        batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, : len(prompts.tokens[i])] = torch.tensor(prompts.tokens[i])
        sel = np.flatnonzero((prompts.prompt >= start) & (prompts.prompt < start + len(rows)))
        r_idx = torch.as_tensor(prompts.prompt[sel] - start)
        p_idx = torch.as_tensor(prompts.pos[sel])
        _, cache = model.run_with_cache(batch, names_filter=lambda name: name in wanted)
        resid.append(torch.stack([cache[n][r_idx, p_idx] for n in resid_names]).float().numpy())
        position.append(torch.stack([cache[n][r_idx, p_idx] for n in pos_names]).float().numpy())
    return {"resid": np.concatenate(resid, axis=1), "position": np.concatenate(position, axis=1)}


def fit_predict(X: Float[np.ndarray, "n f"], y: Int[np.ndarray, " n"], X_test: Float[np.ndarray, "m f"],
                C: float) -> Int[np.ndarray, " m"]:
    """Standardise, multinomial logistic regression (lbfgs), predict."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.asarray(X, np.float64), y)
        return clf.predict(np.asarray(X_test, np.float64))


def lookup_predict(x: Int[np.ndarray, " n"], y: Int[np.ndarray, " n"], x_test: Int[np.ndarray, " m"]) -> np.ndarray:
    """Most frequent training label at each position (nearest seen position for unseen ones)."""
    table = pd.DataFrame({"x": x, "y": y}).groupby("x")["y"].agg(lambda s: s.value_counts().index[0])
    seen = table.index.to_numpy()
    return table.loc[seen[np.abs(np.asarray(x_test)[:, None] - seen[None]).argmin(1)]].to_numpy()


def balanced_subset(pos: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Test indices with, at every position kept, equally many examples of each word index there."""
    keep = []
    for p in np.unique(pos):
        at = np.flatnonzero(pos == p)
        classes, counts = np.unique(label[at], return_counts=True)
        ok = classes[counts >= 2]
        if len(ok) >= 2:
            m = int(counts[counts >= 2].min())
            keep += [rng.choice(at[label[at] == c], size=m, replace=False) for c in ok]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def position_optimum(pos: np.ndarray, label: np.ndarray) -> float:
    """Accuracy of the per-position majority guess made with hindsight on these very examples:
    the most any position-only predictor can score here (on a balanced subset, a mean of 1/k)."""
    if len(label) == 0:
        return float("nan")
    df = pd.DataFrame({"p": pos, "y": label})
    return float(df.groupby("p")["y"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(df))


def probe_dataset(
    feats: dict[str, np.ndarray], train: Prompts, test: Prompts, C: float, learned: bool,
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

    score("absolute position", None, fit_predict(train.pos[:, None], y, test.pos[:, None], C))
    score("absolute position (lookup)", None, lookup_predict(train.pos, y, test.pos))
    for layer in range(resid.shape[0]):
        preds[layer] = fit_predict(resid[layer, :n_train], y, resid[layer, n_train:], C)
        score("residual", layer, preds[layer])
        if learned:
            pos_l = position[layer][:, None]
            score("learned position", layer, fit_predict(pos_l[:n_train], y, pos_l[n_train:], C))
            both = np.concatenate([resid[layer], pos_l], axis=1)
            score("residual + learned position", layer, fit_predict(both[:n_train], y, both[n_train:], C))
    return pd.DataFrame(rows), preds, balanced


def run(model: nn.Module, *, n_words: int = 7, n_train: int = 800, n_test: int = 300,
        max_tokens: int = 3, C: float = 1.0, seed: int = 0, batch_size: int = 32,
        controls: bool = True, prefix: str = PREFIX, words: Sequence[str] | None = None,
        fwd_hooks: list | None = None, letters_per_length: int = 400,
        progress: bool = False) -> dict[str, Any]:
    """The whole protocol on one model; returns tables and set-up facts (see module doc).

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
        train = make_prompts(head, tr_pool, n_train, n_words, rng)
        test = make_prompts(head, te_pool, n_test, n_words, rng)
        if name == "words":  # the token lists equal tokenising the text whole
            checked = test.tokens[:100]
            same = sum(tok(tok.decode(r[len(head):]), add_special_tokens=False)["input_ids"] == r[len(head):]
                       for r in checked)
            info["test prompts equal to whole-text tokenisation"] = f"{same} of {len(checked)}"
        both = Prompts(train.tokens + test.tokens, np.concatenate([train.prompt, test.prompt + n_train]),
                       np.concatenate([train.pos, test.pos]), np.concatenate([train.label, test.label]),
                       np.concatenate([train.n_tokens, test.n_tokens]))
        with model.hooks(fwd_hooks=fwd_hooks or []):
            feats = collect(model, both, batch_size, pad, progress=progress, desc=name)
        if name == "words":
            # δ = 1 (increments "none") gives learned position = token index (BOS = 0) exactly
            info["max |learned position - token index|"] = float(
                np.abs(feats["position"] - both.pos[None]).max())
        table, preds, balanced = probe_dataset(feats, train, test, C, learned, rng)
        table.insert(0, "dataset", name)
        tables.append(table)
        info[f"{name}: balanced n"] = int(len(balanced))
        info[f"{name}: balanced, best position-only accuracy"] = round(position_optimum(
            test.pos[balanced], test.label[balanced]), 3)
        info[f"{name}: seconds"] = round(time.monotonic() - t0, 1)
        best = int(table[table.predictor == "residual"].sort_values("test").iloc[-1].layer)
        f1 = f1_score(test.label, preds[best], average=None, labels=list(range(n_words)))
        base = fit_predict(train.pos[:, None], train.label, test.pos[:, None], C)
        f1_pos = f1_score(test.label, base, average=None, labels=list(range(n_words)))
        for k in range(n_words):
            f1_rows.append({"dataset": name, "best layer": best, "index": k, "residual f1": float(f1[k]),
                            "absolute position f1": float(f1_pos[k])})
    return {"accuracy": pd.concat(tables, ignore_index=True), "f1": pd.DataFrame(f1_rows), "info": info}


# ---------------------------------------------------------------------------------------- report
def summary_table(acc: pd.DataFrame) -> pd.DataFrame:
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


def report(result: dict[str, Any], model_name: str, command: str) -> str:
    acc, f1, info = result["accuracy"], result["f1"], result["info"]
    words = acc[acc.dataset == "words"]
    summary = summary_table(acc)
    best = summary.sort_values("residual test").iloc[-1]
    pos = words[words.predictor.str.startswith("absolute")].set_index("predictor")
    n_words = info["n_words"]
    lines = [
        f"# Word-index probes on {model_name} (BPE; REFERENCE.md §4)", "",
        f"Command: `{command}`", "",
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


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="smollm2-135m, smollm2-135m-per-layer, an HF folder")
    parser.add_argument("--out", default=None, help="output folder (default results/word_index_bpe/MODEL)")
    parser.add_argument("--n-words", type=int, default=7)
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-controls", action="store_true")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m analyses.word_index_probes", description=__doc__.split("\n")[0])
    add_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    from lens_positions.rotary_models import load_named_rotary

    model = load_named_rotary(args.model)
    result = run(model, n_words=args.n_words, n_train=args.n_train, n_test=args.n_test, C=args.C,
                 seed=args.seed, batch_size=args.batch_size, controls=not args.no_controls,
                 progress=not args.no_progress)
    out = Path(args.out or f"results/word_index_bpe/{Path(args.model).name}")
    save_table(result["accuracy"], out, "accuracy")
    save_table(result["f1"], out, "f1")
    save_table(summary_table(result["accuracy"]), out, "summary")
    text = report(result, args.model, "python -m analyses.word_index_probes " + " ".join(argv))
    write_text_atomic(out / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
