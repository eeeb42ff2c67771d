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

Texts default to the English held-out sample shipped with the package
(``lens_positions/assets/heldout/en.jsonl``: validation documents under the same hash rule);
``--data`` reads other JSON-lines or text files, of which ``--held-out FRACTION`` keeps only the
hash-held-out documents (default 0.03, the graft's split).

Command (``--model`` defaults to the shipped adapter ``smollm2-135m-per-layer``)::

    python -m analyses.token_increments --max-windows 16 \\
        --out results/token_increments/smollm2-135m-per-layer
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from analyses import _common, _tokens
from analyses._common import InputError, Result, markdown_table
from lens_positions.samples import content_key, sample_file
from lens_positions.subject import DOCUMENT_WINDOW_TOKENS, subject_of

__all__ = ["CATEGORIES", "DEFAULT_MODEL_OVERRIDE", "Params", "build_parser", "category",
           "content_key", "hand_over", "main", "run", "texts_result", "token_deltas", "token_tables"]

#: This analysis needs a pretrained rotary model (`lens_positions.rotary_models`), not the
#: shipped byte-level default: ``--model`` defaults to the shipped graft adapter instead.
DEFAULT_MODEL_OVERRIDE = "smollm2-135m-per-layer"

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


@torch.no_grad()
def token_deltas(model: nn.Module, texts: Sequence[str], n_ctx: int, max_windows: int,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n] and δ [n_layers, n] of the windows' tokens (BOS excluded)."""
    windows = torch.tensor(_tokens.token_windows(model, texts, n_ctx, max_windows))
    n_windows = len(windows)
    names = [f"blocks.{i}.hook_delta" for i in range(len(model.blocks))]
    deltas = []
    for s in range(0, n_windows, batch_size):
        _, cache = model.run_with_cache(windows[s : s + batch_size], names_filter=lambda n: n in names)
        deltas.append(torch.stack([cache[n][:, 1:] for n in names]).flatten(1))
    return windows[:, 1:].flatten().numpy(), torch.cat(deltas, dim=1).float().numpy()


def token_tables(model: nn.Module, texts: Sequence[str], n_ctx: int = DOCUMENT_WINDOW_TOKENS, max_windows: int = 32,
                 batch_size: int = 4) -> dict[str, Any]:
    """Category table (mean δ per layer and count) and word-start AUC per layer, from
    `token_deltas`: ``{"categories", "auc", "tokens"}``."""
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


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    data: list[str] | None = None
    held_out: float = 0.03
    max_docs: int | None = None
    n_ctx: int = DOCUMENT_WINDOW_TOKENS
    max_windows: int = 32
    batch_size: int = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.token_increments", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/token_increments", batch_size=4)
    parser.set_defaults(model=DEFAULT_MODEL_OVERRIDE)
    parser.add_argument(
        "--data", nargs="+", default=None,
        help="JSON lines (field 'text') or plain text files (default: the shipped English "
        "held-out sample, lens_positions/assets/heldout/en.jsonl)",
    )  # fmt: skip
    parser.add_argument(
        "--held-out", type=float, default=0.03, metavar="FRACTION",
        help="keep only documents of the hash split's validation set with this fraction "
        "(default 0.03, the graft's split; 1 keeps every document)",
    )  # fmt: skip
    parser.add_argument("--max-docs", type=int, default=None, help="documents read per file")
    parser.add_argument("--n-ctx", type=int, default=DOCUMENT_WINDOW_TOKENS, help=f"tokens per window after BOS (default {DOCUMENT_WINDOW_TOKENS})")
    parser.add_argument("--max-windows", type=int, default=32, help="windows (default 32)")
    for action in parser._actions:  # name the rotary default in --model's help
        if action.dest == "model":
            action.help = ("pretrained rotary model: smollm2-135m, a shipped adapter or an HF "
                           f"folder (default {DEFAULT_MODEL_OVERRIDE})")
    return parser


def run(model: nn.Module, params: Params) -> Result:
    """δ per token category and the word-start AUC per layer of ``model`` (a
    `lens_positions.load_rotary_model` bridge) over the held-out documents of ``params.data``:
    tables ``categories`` (count and mean δ per layer) and ``word_start_auc``."""
    p = params
    if subject_of(model).unit != "token":
        raise InputError(f"{subject_of(model).label} is a byte model: token_increments reads a grafted "
                         "bridge's BPE tokens (e.g. --model smollm2-135m-per-layer); byte models: "
                         "python -m analyses.byte_increments")
    files = p.data or [str(sample_file("en"))]
    texts = _common.read_text_files(files, max_docs=p.max_docs, held_out=p.held_out)
    if not texts:
        raise InputError(f"no held-out document (fraction {p.held_out}) in {', '.join(files)}; "
                         "--held-out 1 keeps every document")
    source = (f"the held-out documents (fraction {p.held_out}) of {', '.join(p.data)}" if p.data
              else "the shipped English held-out sample (lens_positions/assets/heldout/en.jsonl)")
    return texts_result(model, texts, source, p.n_ctx, p.max_windows, p.batch_size)


def texts_result(model: nn.Module, texts: Sequence[str], source: str, n_ctx: int = DOCUMENT_WINDOW_TOKENS,
                 max_windows: int = 32, batch_size: int = 4, note: str = "") -> Result:
    """`token_tables` of ``texts`` as this command's `Result` (``source`` names where the texts
    come from in the report; ``note``, if any, is printed under the title)."""
    try:
        result = token_tables(model, texts, n_ctx, max_windows, batch_size)
    except ValueError as e:  # too little text for one window
        raise InputError(str(e)) from e
    cats = result["categories"]
    layers = [c for c in cats.columns if c.startswith("L")]
    summary = cats[["category", "tokens"]].assign(
        **{"mean δ (all layers)": cats[layers].mean(axis=1), "min layer mean": cats[layers].min(axis=1),
           "max layer mean": cats[layers].max(axis=1)})
    name = subject_of(model).name
    n_windows = result["tokens"] // n_ctx
    text = "\n".join([
        f"# δ per token category and word-start AUC: {name} ({model.increments} increments)", "",
        *([note, ""] if note else []),
        f"{result['tokens']:,} tokens ({n_windows} windows of {n_ctx} after BOS) "
        f"from {len(texts)} documents of {source}.", "",
        "## δ per category (mean over tokens; summary over layers)", "",
        markdown_table(summary, default_format=".5f"), "",
        "## δ per category and layer", "", markdown_table(cats, default_format=".4f"), "",
        "## Word start vs continuation: ROC-AUC of δ per layer", "", markdown_table(result["auc"]), "",
    ])
    return Result(
        text,
        tables={"categories": cats, "word_start_auc": result["auc"]},
        facts={"tokens": result["tokens"], "windows": n_windows, "documents": len(texts),
               "n_layers": len(model.blocks), "increments": model.increments},
    )  # fmt: skip


def hand_over(model: nn.Module, command: str, texts: Sequence[str], source: str,
              n_ctx: int | None = None, batch_size: int = 4, not_run: str = "") -> Result:
    """What the byte-level ``analyses.<command>`` (byte_increments, word_boundaries) returns for a
    pretrained rotary bridge: this module's tables over ``texts`` (windows of ``n_ctx`` tokens,
    default 256, after BOS; at most 32), with a note naming the hand-over and what of the byte
    command does not run (``not_run``)."""
    if not texts:
        raise InputError("the text files hold no documents")
    n_ctx = n_ctx or min(256, model.cfg.n_ctx - 1)
    note = (f"> `analyses.{command}` is byte-level; given a pretrained rotary model it hands over to "
            "`analyses.token_increments` (δ per BPE token category, English word-start AUC at the "
            f"BPE level). {not_run}The same analysis directly: `python -m analyses.token_increments`.")
    result = texts_result(model, texts, source, n_ctx, 32, batch_size, note)
    result.facts["handed_over_from"] = command
    return result


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("token_increments", argv)


if __name__ == "__main__":
    main()
