"""Held-out text: the validation documents of a token folder, as JSON lines by language.

The training split's validation documents (``val.bin``: whole documents the models never trained
on) decoded and written as JSON lines: ``zh.jsonl`` and ``en.jsonl`` (a document is Chinese when
at least 5% of its characters are CJK ideographs; each language's documents in a seeded random
order) and ``all.jsonl`` (both languages cut into parts of at most 4,000 bytes, merged so that
every prefix is about half of each). The analyses read these files, never the corpus (mostly
training text).

    python -m training.tokens.heldout write --data data/tokens --out data/heldout
    python -m training.tokens.heldout sample --data data/tokens --corpus data/corpus

``sample`` writes the small sample shipped with the package (`lens_positions.samples`): the first
documents of each language (in the seeded order) up to ``--bytes`` bytes each, with each
document's corpus id when ``--corpus`` is given (for the licence note), and ``LICENSE.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lens_positions.atomic import atomic_open, write_text_atomic
from lens_positions.samples import SAMPLE_DIR, ZH_CJK_FRACTION, chinese_fraction, is_cjk
from training.tokens.byte_tokens import decode_documents, load_tokens


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def split_parts(text: str, max_bytes: int = 4000) -> list[str]:
    """Cut a document into consecutive parts of at most ``max_bytes`` UTF-8 bytes, at line ends
    where possible (a longer line is cut between characters). Joined, the parts give the text."""
    parts: list[str] = []
    current, size = [], 0
    for line in text.splitlines(keepends=True):
        b = len(line.encode("utf-8"))
        if size + b > max_bytes and current:
            parts.append("".join(current))
            current, size = [], 0
        while b > max_bytes:  # one line longer than a part: cut it between characters
            cut, n = 0, 0
            for ch in line:
                w = len(ch.encode("utf-8"))
                if n + w > max_bytes:
                    break
                n += w
                cut += 1
            parts.append(line[:cut])
            line = line[cut:]
            b = len(line.encode("utf-8"))
        if line:
            current.append(line)
            size += b
    if current:
        parts.append("".join(current))
    return parts


def heldout_texts(
    data_dir: str | Path = "data/tokens",
    out_dir: str | Path = "data/heldout",
    seed: int = 0,
    part_bytes: int = 4000,
) -> dict[str, Path]:
    """Write the validation documents of ``data_dir/val.bin`` as JSON lines, split by language.

    A document is Chinese (``zh``) when at least 5% of its characters are CJK ideographs, else
    English (``en``). Each language's whole documents are shuffled with ``seed`` (so that the first
    N documents sample every source, not the first source of the corpus) and written to
    ``zh.jsonl`` and ``en.jsonl``.

    ``all.jsonl`` mixes both languages for the analyses that read a bounded amount of text: every
    document cut at line ends into parts of at most ``part_bytes`` bytes (`split_parts`), each
    language's parts shuffled, then merged so that the language with fewer bytes so far comes next
    (every prefix holds about as many bytes of each language, from many documents).
    Rows: ``{"text", "source" (zh/en), "val_index" (the document's index in val.bin)}`` plus
    ``"part"`` in ``all.jsonl``. Returns the paths by name (``zh``, ``en``, ``all``).
    """
    docs = decode_documents(np.asarray(load_tokens(data_dir, "val")))
    by_lang: dict[str, list[dict]] = {"zh": [], "en": []}
    for i, text in enumerate(docs):
        if not text:
            continue
        lang = "zh" if chinese_fraction(text) >= ZH_CJK_FRACTION else "en"
        by_lang[lang].append({"text": text, "source": lang, "val_index": i})
    rng = random.Random(seed)
    parts: dict[str, list[dict]] = {}
    for lang, rows in by_lang.items():
        rng.shuffle(rows)
        parts[lang] = [
            {**row, "text": part, "part": k}
            for row in rows
            for k, part in enumerate(split_parts(row["text"], part_bytes))
        ]
        rng.shuffle(parts[lang])
    mixed: list[dict] = []
    taken = {"zh": 0, "en": 0}
    sizes = {"zh": 0, "en": 0}
    while any(taken[lang] < len(parts[lang]) for lang in parts):
        open_ = [lang for lang in ("zh", "en") if taken[lang] < len(parts[lang])]
        lang = min(open_, key=lambda x: sizes[x])
        row = parts[lang][taken[lang]]
        mixed.append(row)
        taken[lang] += 1
        sizes[lang] += len(row["text"].encode("utf-8"))
    out = Path(out_dir)
    paths = {"zh": out / "zh.jsonl", "en": out / "en.jsonl", "all": out / "all.jsonl"}
    _write_jsonl(paths["zh"], by_lang["zh"])
    _write_jsonl(paths["en"], by_lang["en"])
    _write_jsonl(paths["all"], mixed)
    return paths


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines file."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def excerpt_files(paths: dict[str, Path], out_dir: Path, n_docs: int, n_chars: int) -> dict[str, Path]:
    """Copies of the held-out files with the first ``n_docs`` documents per language cut to
    ``n_chars`` characters (the ``--quick`` texts)."""
    rows = {lang: read_rows(paths[lang])[:n_docs] for lang in ("zh", "en")}
    for lang in rows:
        rows[lang] = [{**r, "text": r["text"][:n_chars]} for r in rows[lang]]
    mixed = [r for pair in zip(rows["zh"], rows["en"], strict=False) for r in pair]
    out = {"zh": out_dir / "zh.jsonl", "en": out_dir / "en.jsonl", "all": out_dir / "all.jsonl"}
    _write_jsonl(out["zh"], rows["zh"])
    _write_jsonl(out["en"], rows["en"])
    _write_jsonl(out["all"], mixed)
    return out


def docs_for_bytes(path: Path, target_bytes: int) -> tuple[int, int]:
    """The fewest leading documents of a JSON-lines file holding >= ``target_bytes`` UTF-8 bytes
    (all of them if the file holds less), and the bytes they hold."""
    n = total = 0
    for row in read_rows(path):
        n += 1
        total += len(row["text"].encode("utf-8"))
        if total >= target_bytes:
            break
    return max(n, 1), total


def text_stats(paths: dict[str, Path]) -> pd.DataFrame:
    """Documents, characters, bytes and CJK-CJK gaps of each held-out file."""
    rows = []
    for lang in ("zh", "en"):
        docs = [r["text"] for r in read_rows(paths[lang])]
        gaps = sum(
            is_cjk(a) and is_cjk(b) for d in docs for a, b in zip(d, d[1:], strict=False)
        )
        rows.append({
            "file": str(paths[lang]), "documents": len(docs), "characters": sum(map(len, docs)),
            "bytes": sum(len(d.encode("utf-8")) for d in docs), "CJK-CJK gaps": gaps,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- sample
#: Licences of the corpus sources, by the first part of a document's corpus id (from the Debian
#: packages' copyright files).
LICENCES: dict[str, str] = {
    "debian-handbook": "The Debian Administrator's Handbook (Raphaël Hertzog, Roland Mas), "
    "GPL-2.0-or-later or CC-BY-SA-3.0 (package debian-handbook)",
    "debian-reference": "Debian Reference (Osamu Aoki), GPL-2.0-or-later "
    "(packages debian-reference-en, debian-reference-zh-cn)",
    "libreoffice-help": "LibreOffice help, MPL-2.0, some parts Apache-2.0 "
    "(packages libreoffice-help-en-us, libreoffice-help-zh-cn)",
}


def corpus_ids(corpus_dir: str | Path) -> dict[str, str]:
    """Text -> corpus id of every document of ``corpus_dir/{en,zh}.jsonl``."""
    ids: dict[str, str] = {}
    for lang in ("en", "zh"):
        path = Path(corpus_dir) / f"{lang}.jsonl"
        if path.is_file():
            for row in read_rows(path):
                ids.setdefault(row["text"], str(row.get("id", "")))
    return ids


def write_sample(
    data_dir: str | Path,
    out_dir: str | Path = SAMPLE_DIR,
    target_bytes: int = 150_000,
    corpus_dir: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """The shipped sample: per language, the first whole documents of `heldout_texts`'s seeded
    order holding at least ``target_bytes`` UTF-8 bytes (the last one may pass it).

    Rows ``{"text", "source", "val_index"}`` plus ``"id"`` (the corpus id) when ``corpus_dir``
    is given; ``LICENSE.md`` lists the sources' licences and how the sample was made.
    """
    import tempfile

    out = Path(out_dir)
    ids = corpus_ids(corpus_dir) if corpus_dir is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        full = heldout_texts(data_dir, tmp, seed=seed)
        rows = {lang: read_rows(full[lang]) for lang in ("zh", "en")}
    paths: dict[str, Path] = {}
    origins: dict[str, int] = {}
    for lang, docs in rows.items():
        kept, size = [], 0
        for row in docs:
            if size >= target_bytes:
                break
            if ids:
                row = {**row, "id": ids.get(row["text"], "")}
                origin = row["id"].split("/")[0] or "unknown"
                origins[origin] = origins.get(origin, 0) + 1
            kept.append(row)
            size += len(row["text"].encode("utf-8"))
        paths[lang] = out / f"{lang}.jsonl"
        _write_jsonl(paths[lang], kept)
    lines = [
        "# Held-out sample",
        "",
        "Validation documents of the shipped models' token folder (never trained on), written by",
        f"`python -m training.tokens.heldout sample` (seed {seed}, about {target_bytes:,} bytes per "
        "language): `zh.jsonl` and `en.jsonl`, one JSON object per line (`text`, `source`, "
        "`val_index` = the document's index in `val.bin`, `id` = its corpus id).",
        "",
        "The texts come from Debian documentation packages and keep their licences:",
        "",
    ]
    lines += [f"- `{k}/...` ({origins.get(k, 0)} documents): {v}" for k, v in LICENCES.items()]
    if origins.get("unknown"):
        lines += ["", f"{origins['unknown']} documents could not be matched to a corpus id."]
    paths["licence"] = write_text_atomic(out / "LICENSE.md", "\n".join(lines) + "\n")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tokens.heldout", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="all validation documents as zh/en/all.jsonl")
    write.add_argument("--data", default="data/tokens", help="token folder with val.bin")
    write.add_argument("--out", default="data/heldout", help="output folder")
    sample = sub.add_parser("sample", help="the small sample shipped with the package")
    sample.add_argument("--data", default="data/tokens", help="token folder with val.bin")
    sample.add_argument("--corpus", default=None, help="corpus folder (en/zh.jsonl) for the ids")
    sample.add_argument("--out", default=str(SAMPLE_DIR), help=f"output folder (default {SAMPLE_DIR})")
    sample.add_argument("--bytes", type=int, default=150_000, help="bytes per language (default 150000)")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            paths = heldout_texts(args.data, args.out)
        else:
            paths = write_sample(args.data, args.out, args.bytes, args.corpus)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
