"""Byte tokens on disk: tokenisation, the train/validation split, and the token files.

Tokens are raw UTF-8 bytes (ids 0-255) with the separator id 256 appended after EVERY document,
stored as flat little-endian uint16 arrays (`train.bin`, `val.bin`, read back with np.memmap)
beside `meta.json`:

    {
      "format": "lens_positions.tokens/v1", "dtype": "uint16", "vocab_size": 257,
      "separator_id": 256, "spec": "en@local:...=1,zh@local:...=1",
      "sources": [{"name": "en", "kind": "local", "target": "...", "weight": 1.0}, ...],
      "split": {"rule": "hash", "val_fraction": 0.03, "key": "..."}     # or
               {"rule": "first", "val_docs": 2000, "key": "..."},
      "limits": {"max_docs": null, "max_bytes": null},
      "documents_read": ..., "skipped_empty": ..., "dropped_duplicates_of_val": ...,
      "train": {"file": "train.bin", "tokens": N, "documents": D, "text_bytes": N - D,
                "bytes_by_source": {"en": ..., "zh": ...}, "documents_by_source": {...}},
      "val": {... same fields ...},
      "ood": {... same fields ..., "spec": "...", "max_bytes_per_source": ...}   # optional
    }

Out-of-domain split (optional, `ood_spec`): whole sources that are never trained on (e.g.
novels and reviews when training is on documentation and news) go, all of their documents up to
`ood_max_bytes_per_source` each, into `ood.bin`; any training or validation document with the
same text as an out-of-domain one is dropped (`dropped_duplicates_of_ood`).

Split rules (both put whole documents on one side, so validation text is never trained on):

- `val_fraction=f` ("hash"): a document is held out iff the 64-bit BLAKE2b hash of its text,
  read as a fraction of 2**64, is below f. It depends on the text alone, so it does not move when
  sources, weights or limits change, and identical texts always fall on the same side.
- `val_docs=n` ("first"): the first n interleaved non-empty documents are held out (the
  reference's rule); a later document whose text equals a held-out one is dropped.

`prepare_tokens` writes each file to a temporary name and renames it into place only after every
document has been written; `meta.json` goes last. An interrupted run therefore leaves the previous
files untouched, and `read_metadata` refuses a directory whose files do not match its metadata.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from lens_positions.atomic import write_json_atomic
from lens_positions.config import BYTE_VOCAB as VOCAB_SIZE
from lens_positions.config import SEPARATOR_ID
from lens_positions.samples import content_key
from training.tokens.sources import (
    Document,
    interleave,
    iter_documents,
    iter_source,
    parse_spec,
    resolve_local_files,
)

TOKEN_DTYPE = np.uint16
FORMAT = "lens_positions.tokens/v1"
META_NAME = "meta.json"
SPLITS = ("train", "val")
OOD = "ood"  # the optional out-of-domain split
# Tokens buffered per split before a write: ~2 MB, so memory stays flat on any corpus size.
FLUSH_TOKENS = 1 << 20


def encode_document(text: str) -> np.ndarray:
    """UTF-8 bytes of one document followed by the separator: uint16 [n_bytes + 1]."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    out = np.empty(raw.size + 1, dtype=TOKEN_DTYPE)
    out[:-1] = raw
    out[-1] = SEPARATOR_ID
    return out


def decode_documents(tokens: np.ndarray) -> list[str]:
    """Split a token array [n] at separators and decode each document (inverse of encoding).

    Text after the last separator (a truncated document) is dropped.
    """
    tokens = np.asarray(tokens)
    ends = np.flatnonzero(tokens == SEPARATOR_ID)
    starts = np.concatenate([[0], ends + 1])[: ends.size]
    return [
        tokens[s:e].astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        for s, e in zip(starts, ends, strict=True)
    ]


@dataclass(frozen=True)
class SplitRule:
    """Which documents are held out: a hash fraction or the first `val_docs` documents."""

    val_fraction: float | None = None
    val_docs: int | None = None

    def __post_init__(self) -> None:
        if (self.val_fraction is None) == (self.val_docs is None):
            raise ValueError("give exactly one of val_fraction and val_docs")
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.val_docs is not None and self.val_docs < 1:
            raise ValueError(f"val_docs must be >= 1, got {self.val_docs}")

    def describe(self) -> dict[str, Any]:
        if self.val_fraction is not None:
            return {
                "rule": "hash",
                "val_fraction": self.val_fraction,
                "key": "blake2b(utf-8 text, digest_size=8) as big-endian int / 2**64 < val_fraction",
            }
        return {
            "rule": "first",
            "val_docs": self.val_docs,
            "key": "first val_docs interleaved non-empty documents; later exact duplicates dropped",
        }


@dataclass
class _SplitWriter:
    """Appends documents of one split to a temporary file in chunks, counting as it goes."""

    file: IO[bytes]
    tokens: int = 0
    documents: int = 0
    bytes_by_source: Counter = field(default_factory=Counter)
    documents_by_source: Counter = field(default_factory=Counter)
    _pending: list[np.ndarray] = field(default_factory=list)
    _pending_tokens: int = 0

    def add(self, doc: Document, tokens: np.ndarray) -> None:
        self._pending.append(tokens)
        self._pending_tokens += tokens.size
        self.tokens += tokens.size
        self.documents += 1
        self.bytes_by_source[doc.source] += tokens.size - 1
        self.documents_by_source[doc.source] += 1
        if self._pending_tokens >= FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.file.write(np.concatenate(self._pending).astype("<u2", copy=False).tobytes())
        self._pending, self._pending_tokens = [], 0

    def summary(self, filename: str) -> dict[str, Any]:
        return {
            "file": filename,
            "tokens": self.tokens,
            "documents": self.documents,
            "text_bytes": self.tokens - self.documents,
            "bytes_by_source": dict(sorted(self.bytes_by_source.items())),
            "documents_by_source": dict(sorted(self.documents_by_source.items())),
        }


def _limited(
    docs: Iterator[Document], max_docs: int | None, max_bytes: int | None, counts: Counter
) -> Iterator[Document]:
    """Non-empty documents until `max_docs` documents or `max_bytes` text bytes are reached."""
    total_bytes = 0
    for doc in docs:
        counts["documents_read"] += 1
        if not doc.text.strip():
            counts["skipped_empty"] += 1
            continue
        yield doc
        counts["documents_kept"] += 1
        total_bytes += len(doc.text.encode("utf-8"))
        if max_docs is not None and counts["documents_kept"] >= max_docs:
            return
        if max_bytes is not None and total_bytes >= max_bytes:
            return


def _split_documents(
    docs: Iterator[Document], rule: SplitRule, counts: Counter
) -> Iterator[tuple[str, Document]]:
    """Tag each document "train" or "val" by the split rule."""
    threshold = None if rule.val_fraction is None else rule.val_fraction * 2.0**64
    held_out: set[int] = set()
    for n, doc in enumerate(docs):
        key = content_key(doc.text)
        if threshold is not None:
            yield ("val" if key < threshold else "train"), doc
        elif n < rule.val_docs:
            held_out.add(key)
            yield "val", doc
        elif key in held_out:
            counts["dropped_duplicates_of_val"] += 1  # same text as a validation document
        else:
            yield "train", doc


def prepare_tokens(
    spec: str,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float | None = None,
    val_docs: int | None = None,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    ood_spec: str | None = None,
    ood_max_bytes_per_source: int | None = 1_000_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Stream the spec's documents into `out_dir/{train,val}.bin` + `meta.json`; return the meta.

    val_fraction / val_docs: the split rule (see module docstring); default val_fraction=0.03.
    max_docs / max_bytes: stop after this many non-empty documents / text bytes (both splits).
    ood_spec: sources of the out-of-domain split `ood.bin` (each capped at
    `ood_max_bytes_per_source` text bytes, None = all), written first.
    Raises ValueError if either split ends up empty, FileNotFoundError for missing local files.
    """
    if val_fraction is None and val_docs is None:
        val_fraction = 0.03
    rule = SplitRule(val_fraction, val_docs)
    sources = parse_spec(spec)
    documents = iter_documents(sources)  # checks local files exist before anything is created
    ood_sources = parse_spec(ood_spec) if ood_spec else []
    clash = {s.name for s in sources} & {s.name for s in ood_sources}
    if clash:
        raise ValueError(f"sources {sorted(clash)} are in both the training and the ood spec")
    ood_streams = [iter_source(s) for s in ood_sources] if ood_sources else []
    for s in ood_sources:
        if s.kind == "local":
            resolve_local_files(s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    splits = (*SPLITS, OOD) if ood_sources else SPLITS
    temps = {split: _temp_file(out, f"{split}.bin") for split in splits}
    try:
        writers = {split: _SplitWriter(temps[split]) for split in splits}
        ood_keys: set[int] = set()
        if ood_sources:
            capped = [_capped(s, ood_max_bytes_per_source) for s in ood_streams]
            for doc in interleave(capped, [s.weight for s in ood_sources]):
                ood_keys.add(content_key(doc.text))
                writers[OOD].add(doc, encode_document(doc.text))
        docs = _limited(documents, max_docs, max_bytes, counts)
        with tqdm(total=max_docs, unit="doc", desc="tokenising", disable=not progress) as bar:
            for split, doc in _split_documents(docs, rule, counts):
                if ood_keys and content_key(doc.text) in ood_keys:
                    counts["dropped_duplicates_of_ood"] += 1
                    continue
                writers[split].add(doc, encode_document(doc.text))
                bar.update(1)
        for split in splits:
            writers[split].flush()
            _close_synced(temps[split])
        _check_not_empty(writers, counts, rule)
        if ood_sources and writers[OOD].documents == 0:
            raise ValueError(f"the ood split is empty: no text in {ood_spec!r}")
        meta = {
            "format": FORMAT,
            "dtype": "uint16",
            "vocab_size": VOCAB_SIZE,
            "separator_id": SEPARATOR_ID,
            "spec": spec,
            "sources": [vars(s) for s in sources],
            "split": rule.describe(),
            "limits": {"max_docs": max_docs, "max_bytes": max_bytes},
            "documents_read": counts["documents_read"],
            "skipped_empty": counts["skipped_empty"],
            "dropped_duplicates_of_val": counts["dropped_duplicates_of_val"],
            **{split: writers[split].summary(f"{split}.bin") for split in SPLITS},
        }
        if ood_sources:
            meta["dropped_duplicates_of_ood"] = counts["dropped_duplicates_of_ood"]
            meta[OOD] = {
                **writers[OOD].summary(f"{OOD}.bin"),
                "spec": ood_spec,
                "sources": [vars(s) for s in ood_sources],
                "max_bytes_per_source": ood_max_bytes_per_source,
            }
        _commit(out, temps, meta)
    finally:
        for f in temps.values():  # after a failure; after success the names are already gone
            f.close()
            Path(f.name).unlink(missing_ok=True)
    return meta


def _capped(stream: Iterator[Document], max_bytes: int | None) -> Iterator[Document]:
    """About `max_bytes` of one stream's non-empty documents, spread over the whole stream: every
    k-th document with k = ceil(total bytes / max_bytes), so a source ordered by book or by
    label (negative reviews, then positive) is sampled from end to end, not cut after its start.
    The stream is read into memory (out-of-domain sources are a few MB)."""
    docs = [d for d in stream if d.text.strip()]
    total = sum(len(d.text.encode("utf-8")) for d in docs)
    step = 1 if max_bytes is None or total <= max_bytes else math.ceil(total / max_bytes)
    yield from docs[::step]


def _temp_file(out: Path, final_name: str) -> IO[bytes]:
    # Same directory as the final file, so os.replace is an atomic rename on one filesystem.
    return tempfile.NamedTemporaryFile(
        dir=out, prefix=f".{final_name}.", suffix=".tmp", delete=False
    )


def _close_synced(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _check_not_empty(writers: dict[str, _SplitWriter], counts: Counter, rule: SplitRule) -> None:
    if writers["train"].documents + writers["val"].documents == 0:
        raise ValueError(f"empty corpus: read {counts['documents_read']} documents, none with text")
    for split in SPLITS:
        if writers[split].documents == 0:
            raise ValueError(
                f"the {split} split is empty ({counts['documents_kept']} documents, "
                f"split {rule.describe()['rule']}); change val_fraction/val_docs or add data"
            )


def _commit(out: Path, temps: dict[str, IO[bytes]], meta: dict[str, Any]) -> None:
    """Move the finished files into place. meta.json is removed first and written last, so a
    crash between the renames leaves a directory that `read_metadata` rejects."""
    (out / META_NAME).unlink(missing_ok=True)
    for split in temps:
        publish(temps[split].name, out / f"{split}.bin")
    if OOD not in temps:  # a rebuild without an ood split must not leave an old one behind
        (out / f"{OOD}.bin").unlink(missing_ok=True)
    write_json_atomic(out / META_NAME, meta)


def publish(temp_name: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file onto `path` (atomic on one filesystem)."""
    os.chmod(
        temp_name, 0o644
    )  # tempfile creates 0600; the result should be readable like any output
    os.replace(temp_name, path)



def read_metadata(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Load `meta.json` and check that the token files match it (complete, right size)."""
    data_dir = Path(data_dir)
    meta_path = data_dir / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: run `python -m training.tokens.prepare` "
            "(an interrupted run leaves no meta.json)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}")
    for split in (*SPLITS, OOD):
        if split not in meta:
            continue
        path = data_dir / meta[split]["file"]
        expected = meta[split]["tokens"] * np.dtype(TOKEN_DTYPE).itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise ValueError(f"{path} does not match {meta_path} (expected {expected} bytes)")
    return meta


def has_split(data_dir: str | os.PathLike, split: str) -> bool:
    """Whether the token folder holds `split` (train and val always; ood when it was built)."""
    return split in read_metadata(data_dir)


def load_tokens(data_dir: str | os.PathLike, split: str = "train") -> np.memmap:
    """Read-only memmap of one split's tokens: uint16 [n_tokens]."""
    if split not in (*SPLITS, OOD):
        raise ValueError(f"split must be one of {(*SPLITS, OOD)}, got {split!r}")
    meta = read_metadata(data_dir)
    if split not in meta:
        raise ValueError(
            f"{data_dir} has no {split!r} split: rebuild it with "
            "`python -m training.tokens.prepare ... --ood-spec SPEC`"
        )
    path = Path(data_dir) / meta[split]["file"]
    return np.memmap(path, dtype="<u2", mode="r", shape=(meta[split]["tokens"],))
