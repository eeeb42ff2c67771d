"""The graft's data: the ``text`` of jsonl documents, tokenised once into ``OUT/tokens/``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lens_positions.atomic import atomic_open, write_json_atomic
from training.tokens.byte_tokens import content_key

TOKENS_FORMAT = "lens_positions.graft-tokens/v1"


def read_texts(data: Path, files: list[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Documents (``text`` fields) of the chosen jsonl files, and a description of each file."""
    paths = [data / f for f in files] if files else sorted(data.glob("*.jsonl"))
    if data.is_file():
        paths = [data]
    if not paths:
        raise SystemExit(f"graft: no *.jsonl files in {data}")
    texts, described = [], []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"graft: {path}: no such data file")
        n = 0
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise SystemExit(f"graft: {path}:{i + 1}: not a JSON object with 'text' ({e})") from e
                if text:
                    texts.append(text)
                    n += 1
        described.append({"file": str(path), "bytes": path.stat().st_size, "documents": n})
    return texts, described


def prepare_tokens(args: argparse.Namespace, tokenizer: Any, out: Path) -> dict[str, Any]:
    """Tokenise the data into ``out/tokens/{train,val}.bin`` once; return its metadata."""
    folder = out / "tokens"
    meta_path = folder / "meta.json"
    texts, files = read_texts(Path(args.data), args.files)
    eos = tokenizer.eos_token_id
    want = {
        "format": TOKENS_FORMAT,
        "files": files,
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "eos_token_id": eos,
        "split": {"rule": "hash", "val_fraction": args.val_fraction,
                  "key": "blake2b(utf-8 text, digest_size=8) / 2**64 < val_fraction"},
    }
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} != want:
            raise SystemExit(f"graft: {folder} was made from other data or another tokenizer; "
                             "use a new --out")
        return meta
    dtype = np.uint16 if len(tokenizer) <= 65535 else np.uint32
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    docs = {"train": 0, "val": 0}
    for text in texts:
        split = "val" if content_key(text) / 2**64 < args.val_fraction else "train"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        parts[split].append(np.asarray([*ids, eos], dtype=dtype))
        docs[split] += 1
    meta = dict(want, dtype=np.dtype(dtype).name)
    for split, arrays in parts.items():
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        if tokens.size <= args.n_ctx + 1:
            raise SystemExit(f"graft: the {split} split has only {tokens.size} tokens (need > n_ctx + 1)")
        with atomic_open(folder / f"{split}.bin", "wb", fsync=True) as f:
            f.write(tokens.tobytes())
        meta[split] = {"tokens": int(tokens.size), "documents": docs[split]}
    write_json_atomic(meta_path, meta)
    return meta


def load_split(out: Path, meta: dict[str, Any], split: str) -> np.ndarray:
    return np.fromfile(out / "tokens" / f"{split}.bin", dtype=meta["dtype"])


def window_start_id(choice: str, tokenizer: Any) -> int | None:
    """The id every window starts with (``--window-start``), or None for plain windows.

    ``auto`` follows the tokenizer: a model whose tokenizer puts a BOS before every text (Gemma)
    was trained with one there and degrades without it, so its windows start with it too, as
    the analyses' windows do; a tokenizer that adds none (SmolLM2) gets plain windows.
    """
    bos = tokenizer.bos_token_id
    if choice == "none":
        return None
    if choice == "bos":
        if bos is None:
            raise SystemExit("graft: --window-start bos: the tokenizer has no BOS token")
        return int(bos)
    ids = tokenizer("a")["input_ids"]
    return int(bos) if bos is not None and ids and ids[0] == bos else None


def start_windows(x: torch.Tensor, y: torch.Tensor, start: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows [batch, n_ctx] beginning with ``start``: x = (start, t0 .. t_{n-2}), y = (t0 .. t_{n-1}),
    so the loss still counts n_ctx predictions per window (the first from the start token alone)."""
    if start is None:
        return x, y
    first = torch.full_like(x[:, :1], start)
    return torch.cat([first, x[:, :-1]], dim=1), x
