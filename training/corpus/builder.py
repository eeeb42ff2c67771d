"""Build the multi-source offline corpus (docs/offline.md): one JSON-lines file per source.

`build_sources(out, names, ...)` runs every source of `training.corpus.offline_sources` through the same
pipeline, in a fixed order (held-out sources first, then English, then Chinese, each as listed):

1. extract raw documents from the packages (HTML article text without code blocks, TeX without
   markup, catalogues, pickles, ...);
2. drop boilerplate lines (web furniture, navigation words, URLs alone; zh web text also lines
   with too few Han characters);
3. strip embedded licence paragraphs, and drop documents that are a licence text;
4. drop every line seen before in any source (exact-line dedup across the whole build; held-out
   sources go first so that none of their lines is left in a training source);
5. drop documents shorter than `min_bytes`, Chinese ones with a CJK share below
   `min_cjk_share` (untranslated pages), and, for a weight w < 1, all but a fraction w of the
   documents (chosen by a salted hash of the text, independent of the validation split's hash).

Output in OUT/: `<source>.jsonl` ({"id", "text", "source"}), and `manifest.json` with each
source's packages (version, licence), language, role (train / ood), weight, documents, bytes,
CJK characters and what each filter removed, plus the prepare_tokens specs for the training and
out-of-domain splits. The build writes into a temporary sibling folder and swaps it in only when
every source is done, so an interrupted build leaves the previous corpus as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lens_positions.atomic import write_json_atomic
from training.corpus.offline_sources import SOURCES, CorpusSource, Locator, MissingSourceError
from training.corpus.text_filters import (
    LineDeduplicator,
    cjk_count,
    drop_boilerplate_lines,
    strip_licences,
    tidy,
)

MANIFEST = "manifest.json"
#: Held out whole, never trained on: literary English and colloquial Chinese, genres that no
#: training source has (documentation, news, game text), so they measure what was learned of the
#: languages rather than of the training genres.
DEFAULT_OOD = ("en-austen", "zh-reviews")
#: Below 1: keep that fraction of the source's documents (see the module docstring). None by
#: default: every source is taken whole (weight 1). Weights above 1 would mean repeating text,
#: which is what made the shipped models memorise their corpus; and no source is so large or so
#: poor that it needs thinning (the largest, zh-inews and en-linux-doc, are ~25% each).
DEFAULT_WEIGHTS: dict[str, float] = {}


def missing_packages(names: list[str], loc: Locator) -> list[str]:
    """One line per package a requested source needs but that is absent, with its install hint."""
    lines = []
    for name in names:
        for package in SOURCES[name].packages:
            if not loc.is_present(package):
                lines.append(f"  {name}: {package.kind} {package.name} missing; "
                             f"install: {package.install_hint()}")
    return lines


def weight_keeps(text: str, weight: float) -> bool:
    """Deterministic keep decision for a weighted source (salted: not the validation hash)."""
    if weight >= 1.0:
        return True
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"mixweigh").digest()
    return int.from_bytes(digest, "big") < weight * 2.0**64


def _process(
    source: CorpusSource,
    loc: Locator,
    dedup: LineDeduplicator,
    out_file: Any,
    *,
    weight: float,
    min_bytes: int,
    min_cjk_share: float,
) -> dict[str, Any]:
    counts: Counter = Counter()
    stats = {"documents": 0, "bytes": 0, "cjk_chars": 0}
    for doc_id, raw in source.extract(loc):
        counts["raw_documents"] += 1
        counts["raw_bytes"] += len(raw.encode("utf-8"))
        text = drop_boilerplate_lines(tidy(raw), source.lang, counts,
                                      source.web)
        text = strip_licences(text, counts)
        text, keys = dedup.filter(text, counts)
        text = tidy(text)
        data = text.encode("utf-8")
        if len(data) < min_bytes:
            counts["short_documents"] += 1
            continue
        if source.lang == "zh" and cjk_count(text) < min_cjk_share * len("".join(text.split())):
            counts["untranslated_documents"] += 1
            continue
        if not weight_keeps(text, weight):
            counts["weighted_out_documents"] += 1
            counts["weighted_out_bytes"] += len(data)
            continue
        dedup.commit(keys)
        out_file.write(json.dumps({"id": f"{source.name}/{doc_id}", "text": text,
                                   "source": source.name}, ensure_ascii=False) + "\n")
        stats["documents"] += 1
        stats["bytes"] += len(data)
        stats["cjk_chars"] += cjk_count(text)
    return {**stats, "dropped": dict(counts)}


def build_sources(
    out_dir: str | os.PathLike,
    names: list[str],
    *,
    root: str | os.PathLike = "/",
    site: list[str] | None = None,
    ood: tuple[str, ...] = DEFAULT_OOD,
    weights: dict[str, float] | None = None,
    min_bytes: int = 200,
    min_cjk_share: float = 0.05,
    min_dedup_chars: int = 12,
    log: Any = print,
) -> dict[str, Any]:
    """Build OUT/<source>.jsonl for each name plus OUT/manifest.json; return the manifest.

    Raises MissingSourceError (naming the install commands) before writing anything when a
    package is absent, ValueError for unknown names/weights or a source that yields no text.
    """
    unknown = [n for n in [*names, *ood] if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {', '.join(SOURCES)}")
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    bad = {k: w for k, w in weights.items() if not 0 < w <= 1}
    if bad:
        raise ValueError(f"weights must be in (0, 1] (a fraction of documents kept): {bad}")
    loc = Locator(root, site)
    ood = tuple(n for n in ood if n in names)
    # English first: Chinese pages carry untranslated English lines, which dedup then removes
    # from the Chinese side instead of from the English original.
    rest = [n for n in names if n not in ood]
    order = [*ood, *sorted(rest, key=lambda n: SOURCES[n].lang != "en")]
    missing = missing_packages(order, loc)
    if missing:
        raise MissingSourceError("source packages not found:\n" + "\n".join(missing))

    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted build
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    tmp.mkdir()
    dedup = LineDeduplicator(min_dedup_chars)
    manifest: dict[str, Any] = {
        "format": "lens_positions.corpus/v2",
        "root": str(root),
        "settings": {"min_bytes": min_bytes, "min_cjk_share": min_cjk_share,
                     "min_dedup_chars": min_dedup_chars},
        "sources": {},
    }
    try:
        for name in order:
            source, t0 = SOURCES[name], time.monotonic()
            weight = 1.0 if name in ood else weights.get(name, 1.0)
            with (tmp / f"{name}.jsonl").open("w", encoding="utf-8") as f:
                stats = _process(source, loc, dedup, f, weight=weight, min_bytes=min_bytes,
                                 min_cjk_share=min_cjk_share)
            if stats["documents"] == 0:
                raise ValueError(f"source {name} yielded no text from {[p.name for p in source.packages]} "
                                 f"under {root} (dropped: {stats['dropped']})")
            manifest["sources"][name] = {
                "lang": source.lang,
                "role": "ood" if name in ood else "train",
                "weight": weight,
                "note": source.note,
                "file": f"{name}.jsonl",
                "packages": [{"kind": p.kind, "name": p.name, "version": loc.version(p),
                              "licence": loc.licence(p)} for p in source.packages],
                **stats,
            }
            log(f"{name}: {stats['documents']:,} documents, {stats['bytes']:,} bytes "
                f"({time.monotonic() - t0:.0f} s); dropped {stats['dropped']}")
        manifest["totals"] = _totals(manifest["sources"])
        manifest["train_spec"] = _spec(out, manifest["sources"], "train")
        manifest["ood_spec"] = _spec(out, manifest["sources"], "ood")
        write_json_atomic(tmp / MANIFEST, manifest)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _totals(sources: dict[str, Any]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for role in ("train", "ood"):
        for lang in ("en", "zh"):
            picked = [s for s in sources.values() if s["role"] == role and s["lang"] == lang]
            totals[f"{role}_{lang}_bytes"] = sum(s["bytes"] for s in picked)
        totals[f"{role}_bytes"] = totals[f"{role}_en_bytes"] + totals[f"{role}_zh_bytes"]
    return totals


def _spec(out: Path, sources: dict[str, Any], role: str) -> str:
    """prepare_tokens spec of one role's files (weights stay 1: the mix is set at build time)."""
    return ",".join(f"{n}@local:{out / s['file']}=1" for n, s in sources.items() if s["role"] == role)


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished `tmp` folder (the old corpus survives any earlier failure)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def format_manifest(manifest: dict[str, Any]) -> str:
    """Bytes per source and the totals, for people."""
    lines = [f"{'source':26} {'role':5} {'weight':>6} {'documents':>10} {'bytes':>12}  packages"]
    for name, s in manifest["sources"].items():
        pkgs = ", ".join(f"{p['name']} {p['version']}" for p in s["packages"])
        lines.append(f"{name:26} {s['role']:5} {s['weight']:6.2f} {s['documents']:10,} "
                     f"{s['bytes']:12,}  {pkgs}")
    t = manifest["totals"]
    lines.append(f"train: {t['train_bytes']:,} bytes (en {t['train_en_bytes']:,}, zh "
                 f"{t['train_zh_bytes']:,}); ood: {t['ood_bytes']:,} bytes (en "
                 f"{t['ood_en_bytes']:,}, zh {t['ood_zh_bytes']:,})")
    return "\n".join(lines)
