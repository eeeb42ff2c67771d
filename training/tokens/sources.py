"""Document sources: parse a source spec and stream documents, interleaved by weight.

Spec syntax: comma-separated entries, each

    [NAME@]KIND:TARGET[=WEIGHT]

- KIND `hf`: TARGET is `dataset/path[:config]`, streamed from the Hugging Face Hub, e.g.
  `hf:wikimedia/wikipedia:20231101.en`.
- KIND `local`: TARGET is a file path or glob; the format comes from the extension:
  `.jsonl`/`.json` (JSON lines with a `text` field), `.parquet` (a `text` column), `.txt`
  (plain text, ONE DOCUMENT PER FILE: use a glob such as `local:texts/*.txt` for many documents;
  blank lines inside a file stay inside its document).
- WEIGHT (default 1, must be > 0): relative share of documents. Documents are taken in a fixed
  smooth weighted round-robin, so equal weights alternate document by document (en, zh, en, zh)
  and 2:1 gives en, zh, en, en, zh, en, ... When a source runs out the others continue.
- NAME (letters, digits, `_`, `.`, `-`): the source's name in statistics and document ids.
  Default: the config for `hf` (else the dataset path), the file stem for `local`.
  Paths may not contain `,`; a trailing `=...` is always read as the weight.

The reference run, with per-language names:

    en@hf:wikimedia/wikipedia:20231101.en=1,zh@hf:wikimedia/wikipedia:20231101.zh=1

and the offline corpus written by `training.corpus.build`:

    local:data/corpus/en.jsonl=1,local:data/corpus/zh.jsonl=1

Hub and local sources go through the same call, `datasets.load_dataset(builder, name=...,
data_files=..., split="train", streaming=True)`: for `hf` the builder is the dataset path,
for `local` it is the packaged `json` / `parquet` / `text` builder.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("hf", "local")
# Extension -> packaged `datasets` builder (and its extra arguments).
LOCAL_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {"sample_by": "document"}),
}
_NAME_PREFIX = re.compile(r"^([\w.-]+)@(?=(?:hf|local):)")


@dataclass(frozen=True)
class SourceSpec:
    """One entry of a source spec: where documents come from and their share."""

    name: str
    kind: str  # "hf" or "local"
    target: str  # "dataset/path[:config]" or a path/glob
    weight: float = 1.0


@dataclass(frozen=True)
class Document:
    """A document and its identity: the source's name and its index in that source's stream."""

    source: str
    index: int
    text: str

    @property
    def doc_id(self) -> str:
        return f"{self.source}:{self.index}"


def parse_spec(spec: str) -> list[SourceSpec]:
    """Parse `[NAME@]KIND:TARGET[=WEIGHT],...` into SourceSpecs (see the module docstring)."""
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if not entries:
        raise ValueError("empty source spec: expected e.g. 'local:data/corpus/en.jsonl=1'")
    sources = [_parse_entry(e) for e in entries]
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate source names {dupes} in {spec!r}; give each a NAME@ prefix")
    return sources


def _parse_entry(entry: str) -> SourceSpec:
    name = ""
    if m := _NAME_PREFIX.match(entry):
        name, entry = m.group(1), entry[m.end() :]
    kind, colon, rest = entry.partition(":")
    if not colon or kind not in KINDS:
        raise ValueError(
            f"unknown source {entry!r}: expected [NAME@]hf:dataset/path[:config][=WEIGHT] "
            "or [NAME@]local:path/or/glob.(jsonl|json|parquet|txt)[=WEIGHT]"
        )
    target, weight = _split_weight(rest, entry)
    if not target:
        raise ValueError(f"source {entry!r} has no target")
    if kind == "local" and Path(target).suffix.lower() not in LOCAL_FORMATS:
        raise ValueError(
            f"source {entry!r}: unknown file type {Path(target).suffix!r}; "
            f"supported: {', '.join(LOCAL_FORMATS)}"
        )
    return SourceSpec(name or _default_name(kind, target), kind, target, weight)


def _split_weight(rest: str, entry: str) -> tuple[str, float]:
    target, eq, weight_text = rest.rpartition("=")
    if not eq:
        return rest, 1.0
    try:
        weight = float(weight_text)
    except ValueError:
        raise ValueError(f"source {entry!r}: weight {weight_text!r} is not a number") from None
    if not weight > 0:
        raise ValueError(f"source {entry!r}: weight must be > 0, got {weight_text}")
    return target, weight


def _default_name(kind: str, target: str) -> str:
    if kind == "hf":
        path, _, config = target.partition(":")
        return config or path
    stem = Path(target).name.split(".")[0]
    # A glob's stem ("*") says nothing; fall back to the whole target.
    return target if glob.has_magic(stem) or not stem else stem


def open_stream(source: SourceSpec) -> Iterable[dict[str, Any]]:
    """The source's rows as a streaming `datasets.IterableDataset` (one dict per document).

    Hub and local files differ only in the builder name and `name`/`data_files` arguments,
    so the local tests exercise the same code path the Hub run uses.
    """
    import datasets  # imported here: it is slow to import and only needed to read sources

    if source.kind == "hf":
        path, _, config = source.target.partition(":")
        builder, name, files, extra = path, config or None, None, {}
    else:
        files = resolve_local_files(source)
        builder, extra = LOCAL_FORMATS[Path(source.target).suffix.lower()]
        name = None
    return datasets.load_dataset(
        builder, name=name, data_files=files, split="train", streaming=True, **extra
    )


def resolve_local_files(source: SourceSpec) -> list[str]:
    """The files a local source names, sorted so the document order is reproducible."""
    files = sorted(glob.glob(source.target, recursive=True))
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise FileNotFoundError(f"source {source.name!r}: no file matches {source.target!r}")
    if all(Path(f).stat().st_size == 0 for f in files):
        raise ValueError(f"source {source.name!r}: {source.target!r} is empty (no documents)")
    return files


def iter_source(source: SourceSpec) -> Iterator[Document]:
    """Documents of one source, indexed by their position in its stream (empty ones included)."""
    for index, row in enumerate(open_stream(source)):
        if "text" not in row:
            raise KeyError(
                f"source {source.name!r}: rows have no 'text' field (fields: {sorted(row)})"
            )
        yield Document(source.name, index, row["text"] or "")


def interleave(streams: list[Iterator[Document]], weights: list[float]) -> Iterator[Document]:
    """Merge streams in smooth weighted round-robin order, deterministically.

    Each turn every active stream gains its weight in credit and the richest one (lowest index on
    ties) yields a document and pays the active total. Equal weights therefore alternate strictly,
    which is what the reference did; an exhausted stream drops out and the others go on.
    """
    credit = [0.0] * len(streams)
    active = list(range(len(streams)))
    while active:
        for i in active:
            credit[i] += weights[i]
        pick = max(active, key=lambda i: (credit[i], -i))
        credit[pick] -= sum(weights[i] for i in active)
        try:
            yield next(streams[pick])
        except StopIteration:
            active.remove(pick)


def iter_documents(spec: str | list[SourceSpec]) -> Iterator[Document]:
    """All documents of a spec, interleaved by weight. Streams are opened lazily, on first use."""
    sources = parse_spec(spec) if isinstance(spec, str) else spec
    # Fail fast on missing local files, before any document is read.
    for source in sources:
        if source.kind == "local":
            resolve_local_files(source)
    streams = [iter_source(s) for s in sources]
    return interleave(streams, [s.weight for s in sources])
