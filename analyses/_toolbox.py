"""Small helpers for the analyses in this folder that are not part of the post's reproduction
(word-index probes, position patching, δ attribution, learned-axis attention).

Kept separate from ``_common.py`` on purpose: these modules only need a handful of helpers (model
loading, text windows, batched captures, Markdown tables, PNG figures) and should not break when
that module changes.

Hook specifications
-------------------
Library functions take an optional ``fwd_hooks`` applied while the model runs: a list of
TransformerLens hooks ``[(name_or_filter, fn), ...]``, or a *hook factory* ``tokens -> hooks``
that sees each batch's token ids [batch, pos] first (needed for hooks that depend on the bytes).
User hooks are added before the hooks that record activations, so what is recorded is what the
model used.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from analyses import _common
from analyses._common import Hook, HookSpec, resolve_hooks  # noqa: F401  (re-exported)
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer

#: A few paragraphs written for these analyses, used when no ``--text-file`` is given (quick looks
#: only: real analyses should pass held-out corpus text, e.g. data/corpus/en.jsonl).
SAMPLE_TEXTS: tuple[str, ...] = (
    "Marie Curie was a Polish-born physicist and chemist who worked in Paris, where she shared "
    "a Nobel Prize with her husband, Pierre, and later won a second one on her own. Her notebooks "
    "are still kept in lead-lined boxes.",
    "The old harbour in New York was crowded every morning: ferries, fishing boats and barges "
    "waited in long lines, while gulls circled above the market stalls and shouted at the crowd.",
    "To install the package, open a terminal and type the command below. If the download fails, "
    "check your proxy settings, then try again; most errors come from a missing certificate.",
    "She said that the river had frozen twice that winter, once in December and again in late "
    "February, and that nobody in the village could remember anything like it.",
    "人工智能是计算机科学的一个分支，它试图理解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。",
)


# ---------------------------------------------------------------------------------------- models
def add_model_args(parser: argparse.ArgumentParser, out_default: str) -> argparse.ArgumentParser:
    """Options every command here shares: --model, --out, --threads, --batch-size, --no-progress."""
    parser.add_argument("--model", required=True, help="shipped model name or checkpoint folder")
    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    parser.add_argument("--device", default=None, help="torch device (default: where it loads, CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def load_model_from_args(args: argparse.Namespace) -> HookedIncrementTransformer:
    """Set the torch thread count, load ``--model`` in eval mode, say what was loaded (stderr)."""
    torch.set_num_threads(max(1, args.threads))
    model = HookedIncrementTransformer.from_pretrained(args.model, device=args.device).eval()
    cfg = model.cfg
    print(
        f"model {args.model}: {cfg.variant_name}, {cfg.n_layers} layers x {cfg.n_heads} heads, "
        f"d_model {cfg.d_model}, n_ctx {cfg.n_ctx}",
        file=sys.stderr,
    )
    return model


def head_axis(x: Tensor) -> Float[Tensor, "batch pos heads"]:
    """δ or positions with a head axis: [batch, pos] -> [batch, pos, 1]; [batch, pos, h] as is."""
    return x.unsqueeze(-1) if x.ndim == 2 else x


def head_mean(x: Tensor) -> Float[Tensor, "batch pos"]:
    """δ or positions averaged over heads: [batch, pos, h] -> [batch, pos]; [batch, pos] as is.

    Per-head models give every head its own positions; analyses that want one number per token
    use the head mean (and say so in their output).
    """
    return x.mean(-1) if x.ndim == 3 else x


def pad_batch(
    token_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu"
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Right-pad token lists with the separator: tokens [batch, max_len] and lengths [batch].

    The model is causal, so padding after a sequence never changes its real positions.
    """
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
    tokens = torch.full((len(token_lists), int(lengths.max())), SEPARATOR_ID, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tokens[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return tokens.to(device), lengths


# ---------------------------------------------------------------------------------------- texts
def in_held_out(text: str, fraction: float) -> bool:
    """Whether a document is in the training pipeline's hash-split validation set.

    The rule written in ``data/tokens/meta.json``: blake2b(UTF-8 text, 8-byte digest) as a
    big-endian integer / 2**64 < val_fraction.
    """
    key = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return key / 2**64 < fraction


def read_texts(path: str | Path, max_docs: int | None = None, held_out: float | None = None) -> list[str]:
    """Documents of a text file: ``.jsonl`` gives one per line (field ``"text"``), else one.

    held_out: keep only documents of the hash-split validation set with this fraction (see
    `in_held_out`), i.e. text the shipped models never trained on.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    if path.suffix != ".jsonl":
        text = path.read_text(encoding="utf-8")
        keep = text and (held_out is None or in_held_out(text, held_out))
        return [text] if keep else []
    docs: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f'{path}:{n}: expected a JSON object with a "text" string')
            if row["text"] and (held_out is None or in_held_out(row["text"], held_out)):
                docs.append(row["text"])
            if max_docs is not None and len(docs) >= max_docs:
                break
    return docs


def byte_windows(
    texts: Sequence[str], n_bytes: int, max_windows: int, per_doc: int = 2
) -> list[list[int]]:
    """Windows of exactly ``n_bytes`` UTF-8 bytes (separator prepended: n_bytes + 1 tokens).

    Consecutive, non-overlapping pieces, at most ``per_doc`` from each document so that a few long
    documents do not make up the whole sample. Pieces may cut a multi-byte character, as the
    training windows did. Texts shorter than ``n_bytes`` give no window.
    """
    if n_bytes < 2:
        raise ValueError(f"windows need at least 2 bytes, got {n_bytes}")
    windows: list[list[int]] = []
    for text in texts:
        data = text.encode("utf-8")
        for k in range(min(per_doc, len(data) // n_bytes)):
            windows.append([SEPARATOR_ID, *data[k * n_bytes : (k + 1) * n_bytes]])
            if len(windows) >= max_windows:
                return windows
    return windows


def text_windows_from_args(
    args: argparse.Namespace, model: HookedIncrementTransformer, default_bytes: int
) -> list[list[int]]:
    """Equal-length windows from ``--text-file`` (or the built-in samples) for a command.

    Several files: their documents are interleaved. ``--held-out F`` keeps only the training
    split's validation documents.

    Uses ``--window-bytes`` (default ``min(default_bytes, n_ctx - 1)``) and ``--max-windows``;
    with the built-in samples the window shrinks to the shortest sample so that each gives one.
    """
    limit = model.cfg.n_ctx - 1
    n_bytes = min(args.window_bytes or default_bytes, limit)
    if args.text_file:
        # documents of several files are interleaved (en, zh, en, zh, ...) so that a window limit
        # does not fill up from the first file alone
        per_file = [read_texts(f, max_docs=args.max_docs, held_out=args.held_out) for f in args.text_file]
        texts = [doc for group in itertools.zip_longest(*per_file) for doc in group if doc is not None]
    else:
        texts = list(SAMPLE_TEXTS)
        n_bytes = min(n_bytes, min(len(t.encode("utf-8")) for t in texts))
        print("no --text-file: using the built-in sample paragraphs", file=sys.stderr)
    windows = byte_windows(texts, n_bytes, args.max_windows)
    if not windows:
        raise SystemExit(f"no text window of {n_bytes} bytes: give longer texts or --window-bytes")
    return windows


def add_text_args(parser: argparse.ArgumentParser, max_windows: int = 64) -> None:
    """--text-file, --max-docs, --window-bytes, --max-windows."""
    parser.add_argument("--text-file", nargs="+", default=None, help="plain text or JSON lines (field 'text'); several are interleaved")
    parser.add_argument("--max-docs", type=int, default=None, help="read at most this many documents")
    parser.add_argument(
        "--held-out", type=float, default=None, metavar="FRACTION",
        help="keep only documents of the training hash split's validation set with this fraction "
        "(0.03 for data/tokens, see its meta.json)",
    )
    parser.add_argument("--window-bytes", type=int, default=None, help="bytes per window")
    parser.add_argument("--max-windows", type=int, default=max_windows, help=f"windows (default {max_windows})")


# ---------------------------------------------------------------------------------------- output
def markdown_table(df: pd.DataFrame, fmt: str = ".3f", formats: dict[str, str] | None = None) -> str:
    """A DataFrame as a GitHub Markdown table; NaN prints as an em dash (`_common.markdown_table`)."""
    return _common.markdown_table(df, formats=formats, default_format=fmt)


def save_png(fig: Any, out_dir: str | Path, stem: str, dpi: int = 130) -> Path:
    """Save a matplotlib figure as ``out_dir/stem.png`` (folder created) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def save_csv(df: pd.DataFrame, out_dir: str | Path, stem: str) -> Path:
    """Write a table as ``out_dir/stem.csv`` (folder created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.csv"
    df.to_csv(path, index=False)
    return path


def use_agg() -> None:
    """Select matplotlib's file-only backend (commands run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
