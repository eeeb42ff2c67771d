"""δ per token category and the English word-boundary AUC at the BPE level, on pretrained models.

The token-level counterpart of `analyses.byte_increments` and `analyses.word_boundaries` for
models opened by `lens_positions.load_rotary_model` (e.g. ``smollm2-135m-per-layer``):

- held-out documents (the corpus's hash rule: blake2b(text) / 2**64 < 0.03, the documents the
  graft never trained on) are tokenised with the model's tokenizer into windows of ``--n-ctx``
  tokens after a BOS token;
- every token is put in a category by its decoded text: word start (a space then letters),
  continuation (letters, no space), digits, sentence punctuation ``. ! ?``, other punctuation
  ``, ; : -``, newline, CJK, other; the table gives each layer's mean δ (``blocks.{l}.hook_delta``)
  per category;
- word boundaries: among letter tokens, label = word start; score = δ of the token (the gap its
  position opens after the previous token); ROC-AUC per layer (0.5 = δ does not separate them;
  above 0.5 = word starts get larger gaps).

Command::

    python -m analyses.token_increments --model smollm2-135m-per-layer \\
        --data /work/data/corpus-v1/en.jsonl --out results/token_increments/smollm2-135m-per-layer
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from analyses._common import markdown_table, save_table
from lens_positions.atomic import write_text_atomic
from training.corpus import content_key

CATEGORIES = ("word start", "continuation", "digits", "sentence punct . ! ?", "other punct , ; : -",
              "newline", "CJK", "other")
_WORD_START = re.compile(r"^ [A-Za-z]+$")
_LETTERS = re.compile(r"^[A-Za-z]+$")
_DIGITS = re.compile(r"^ ?[0-9]+$")


def category(text: str) -> str:
    """The category of one token's decoded text (see module doc)."""
    if "\n" in text:
        return "newline"
    if _WORD_START.match(text):
        return "word start"
    if _LETTERS.match(text):
        return "continuation"
    if _DIGITS.match(text):
        return "digits"
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "CJK"
    stripped = text.strip()
    if stripped and all(ch in ".!?" for ch in stripped):
        return "sentence punct . ! ?"
    if stripped and all(ch in ",;:-" for ch in stripped):
        return "other punct , ; : -"
    return "other"


def heldout_texts(path: Path, val_fraction: float = 0.03, max_docs: int | None = None) -> list[str]:
    """The documents of a jsonl file that the hash rule holds out."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                text = json.loads(line)["text"]
                if text and content_key(text) / 2**64 < val_fraction:
                    out.append(text)
                    if max_docs and len(out) >= max_docs:
                        break
    return out


@torch.no_grad()
def token_deltas(model: nn.Module, texts: Sequence[str], n_ctx: int, max_windows: int,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n] and δ [n_layers, n] of the windows' tokens (BOS excluded)."""
    tok = model.tokenizer
    stream: list[int] = []
    for text in texts:
        stream += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n_windows = min(max_windows, len(stream) // n_ctx)
    if n_windows == 0:
        raise ValueError(f"only {len(stream)} tokens of held-out text: less than one window of {n_ctx}")
    windows = torch.tensor(stream[: n_windows * n_ctx]).view(n_windows, n_ctx)
    bos = torch.full((n_windows, 1), tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)
    windows = torch.cat([bos, windows], dim=1)
    names = [f"blocks.{i}.hook_delta" for i in range(len(model.blocks))]
    deltas = []
    for s in range(0, n_windows, batch_size):
        _, cache = model.run_with_cache(windows[s : s + batch_size], names_filter=lambda n: n in names)
        deltas.append(torch.stack([cache[n][:, 1:] for n in names]).flatten(1))
    return windows[:, 1:].flatten().numpy(), torch.cat(deltas, dim=1).float().numpy()


def run(model: nn.Module, texts: Sequence[str], n_ctx: int = 256, max_windows: int = 32,
        batch_size: int = 4) -> dict[str, Any]:
    """Category table (mean δ per layer and count) and word-start AUC per layer."""
    ids, deltas = token_deltas(model, texts, n_ctx, max_windows, batch_size)
    tok = model.tokenizer
    texts_of = {i: tok.decode([i]) for i in np.unique(ids).tolist()}
    cats = np.array([category(texts_of[i]) for i in ids.tolist()])
    rows = []
    for c in CATEGORIES:
        m = cats == c
        if m.any():
            rows.append({"category": c, "tokens": int(m.sum()),
                         **{f"L{layer}": float(deltas[layer, m].mean()) for layer in range(len(deltas))}})
    letters = np.isin(cats, ["word start", "continuation"])
    label = cats[letters] == "word start"
    auc = []
    for layer in range(len(deltas)):
        score = deltas[layer, letters]
        auc.append({"layer": layer, "auc": float(roc_auc_score(label, score)) if np.ptp(score) > 0 else 0.5,
                    "word starts": int(label.sum()), "continuations": int((~label).sum())})
    return {"categories": pd.DataFrame(rows), "auc": pd.DataFrame(auc), "tokens": int(len(ids))}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m analyses.token_increments", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="smollm2-135m, smollm2-135m-per-layer, an HF folder")
    p.add_argument("--data", required=True, help="jsonl file (field 'text'); its hash-held-out documents are read")
    p.add_argument("--out", default=None)
    p.add_argument("--n-ctx", type=int, default=256)
    p.add_argument("--max-windows", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lens_positions.rotary_models import load_named_rotary

    model = load_named_rotary(args.model)
    result = run(model, heldout_texts(Path(args.data)), args.n_ctx, args.max_windows, args.batch_size)
    out = Path(args.out or f"results/token_increments/{Path(args.model).name}")
    save_table(result["categories"], out, "categories")
    save_table(result["auc"], out, "word_start_auc")
    cats = result["categories"]
    layers = [c for c in cats.columns if c.startswith("L")]
    summary = cats[["category", "tokens"]].assign(
        **{"mean δ (all layers)": cats[layers].mean(axis=1), "min layer mean": cats[layers].min(axis=1),
           "max layer mean": cats[layers].max(axis=1)})
    text = "\n".join([
        f"# δ per token category and word-start AUC: {args.model}", "",
        f"Command: `python -m analyses.token_increments {' '.join(argv)}`", "",
        f"{result['tokens']:,} held-out tokens ({args.max_windows} windows of {args.n_ctx} after BOS).", "",
        "## δ per category (mean over tokens; summary over layers)", "", markdown_table(summary, default_format=".5f"), "",
        "## δ per category and layer", "", markdown_table(cats, default_format=".4f"), "",
        "## Word start vs continuation: ROC-AUC of δ per layer", "", markdown_table(result["auc"]), "",
    ])
    write_text_atomic(out / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
