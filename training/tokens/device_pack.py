"""Carry a token folder to the GPU machine compressed, and rebuild it there.

Only 64 MiB of working tree travels to the device (docs/offline.md) and the tracked tree already
takes most of it, while `train.bin` stores every byte as a uint16. A pack stores each split as
the document bytes with the separator written as a NUL byte (extracted text holds no NUL: `pack`
checks), compressed with xz (LZMA), plus the token folder's `meta.json`:

    python -m training.tokens.device_pack pack --data data/tokens-v2 --out .pack [--budget-mib 64]
    python -m training.tokens.device_pack unpack --pack .pack --out data/tokens-v2     # on the device

`--max-train-mb N` keeps only the first N MB of the training split (whole documents; the
interleaved order keeps every source in it), for when the whole split does not fit; the packed
meta then records the smaller split (`packed_from` keeps the original sizes). `pack` prints what
would travel: the tracked and untracked-not-ignored files of the checkout plus the pack.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lens_positions.atomic import atomic_path, write_json_atomic
from training.tokens.byte_tokens import (
    META_NAME,
    OOD,
    SEPARATOR_ID,
    SPLITS,
    TOKEN_DTYPE,
    read_metadata,
)

PACK_META = "pack.json"
MIB = 1 << 20


def tokens_to_bytes(tokens: np.ndarray) -> bytes:
    """uint16 tokens [n] -> n bytes, the separator as NUL (ValueError if the text holds a NUL)."""
    tokens = np.asarray(tokens)
    if np.any(tokens == 0):
        raise ValueError("the token file holds a NUL byte: it cannot be packed with NUL separators")
    out = tokens.astype(np.uint8)  # 256 wraps to 0: the separator becomes NUL
    return out.tobytes()


def bytes_to_tokens(data: bytes) -> np.ndarray:
    """Inverse of `tokens_to_bytes`: uint16 [n]."""
    raw = np.frombuffer(data, dtype=np.uint8)
    out = raw.astype(TOKEN_DTYPE)
    out[raw == 0] = SEPARATOR_ID
    return out


def _cut_documents(tokens: np.ndarray, max_tokens: int) -> np.ndarray:
    """The longest prefix of whole documents with at most `max_tokens` tokens."""
    if len(tokens) <= max_tokens:
        return tokens
    ends = np.flatnonzero(np.asarray(tokens[:max_tokens]) == SEPARATOR_ID)
    if ends.size == 0:
        raise ValueError(f"no whole document fits in {max_tokens} tokens")
    return tokens[: ends[-1] + 1]


def tree_bytes(repo: Path, skip: Path | None = None) -> int:
    """Bytes of the files that travel: tracked and untracked-not-ignored (git ls-files), without
    those under `skip` (the pack, counted on its own whether it is carried or not ignored)."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode().split("\0")
    skip = skip.resolve() if skip is not None else None
    total = 0
    for rel in filter(None, listing):
        path = repo / rel
        if path.is_file() and not (skip and path.resolve().is_relative_to(skip)):
            total += path.stat().st_size
    return total


def pack(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
         max_train_mb: float | None = None, preset: int = 6) -> dict[str, Any]:
    """Write OUT/{split}.xz + OUT/meta.json + OUT/pack.json; return pack.json's content."""
    data_dir, out = Path(data_dir), Path(out_dir)
    meta = read_metadata(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"splits": {}, "preset": preset}
    packed_meta = json.loads(json.dumps(meta))
    for split in (*SPLITS, OOD):
        if split not in meta:
            continue
        tokens = np.memmap(data_dir / meta[split]["file"], dtype="<u2", mode="r",
                           shape=(meta[split]["tokens"],))
        if split == "train" and max_train_mb is not None:
            tokens = _cut_documents(tokens, int(max_train_mb * 1e6))
            if len(tokens) < meta[split]["tokens"]:
                n_docs = int(np.count_nonzero(np.asarray(tokens) == SEPARATOR_ID))
                packed_meta["packed_from"] = {"train_tokens": meta[split]["tokens"],
                                              "train_documents": meta[split]["documents"]}
                packed_meta[split].update(tokens=len(tokens), documents=n_docs,
                                          text_bytes=len(tokens) - n_docs)
                packed_meta[split].pop("bytes_by_source", None)  # no longer known per source
                packed_meta[split].pop("documents_by_source", None)
        with atomic_path(out / f"{split}.xz") as tmp:
            tmp.write_bytes(lzma.compress(tokens_to_bytes(tokens), preset=preset))
        info["splits"][split] = {"tokens": int(len(tokens)),
                                 "xz_bytes": (out / f"{split}.xz").stat().st_size}
    write_json_atomic(out / META_NAME, packed_meta)
    info["pack_bytes"] = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    write_json_atomic(out / PACK_META, info)
    return info


def unpack(pack_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Rebuild the token folder from a pack; return its metadata (checked by read_metadata)."""
    pack_dir, out = Path(pack_dir), Path(out_dir)
    meta = json.loads((pack_dir / META_NAME).read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    (out / META_NAME).unlink(missing_ok=True)  # written last, as prepare_tokens does
    for split in (*SPLITS, OOD):
        if split not in meta:
            continue
        tokens = bytes_to_tokens(lzma.decompress((pack_dir / f"{split}.xz").read_bytes()))
        if len(tokens) != meta[split]["tokens"]:
            raise ValueError(f"{pack_dir}/{split}.xz holds {len(tokens)} tokens, "
                             f"meta.json says {meta[split]['tokens']}")
        with atomic_path(out / meta[split]["file"]) as tmp:
            tmp.write_bytes(tokens.astype("<u2").tobytes())
    write_json_atomic(out / META_NAME, meta)
    return read_metadata(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tokens.device_pack",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="token folder -> xz pack")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-train-mb", type=float, default=None)
    p.add_argument("--preset", type=int, default=6, help="xz preset (0-9)")
    p.add_argument("--budget-mib", type=float, default=64.0,
                   help="what may travel in all; pack fails when the checkout plus pack exceed it")
    p.add_argument("--repo", default=".", help="checkout whose files travel with the pack")
    u = sub.add_parser("unpack", help="xz pack -> token folder")
    u.add_argument("--pack", required=True)
    u.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "unpack":
            meta = unpack(args.pack, args.out)
            print(f"unpacked {args.pack} -> {args.out}: train {meta['train']['tokens']:,} tokens")
            return 0
        info = pack(args.data, args.out, max_train_mb=args.max_train_mb, preset=args.preset)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tree = tree_bytes(Path(args.repo), skip=Path(args.out))
    total = tree + info["pack_bytes"]
    for split, s in info["splits"].items():
        print(f"{split}: {s['tokens']:,} tokens -> {s['xz_bytes'] / MIB:.1f} MiB")
    print(f"pack {info['pack_bytes'] / MIB:.1f} MiB + checkout {tree / MIB:.1f} MiB = "
          f"{total / MIB:.1f} MiB of {args.budget_mib:.0f} MiB")
    if total > args.budget_mib * MIB:
        print(f"error: over the budget by {(total - args.budget_mib * MIB) / MIB:.1f} MiB: pass "
              "--max-train-mb, or make the checkout smaller", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
