"""All headline analyses on the shipped models, over held-out text, in one report.

    python -m analyses.results --out results [--quick] [--threads 2]

Writes ``OUT/RESULTS.md``: Markdown tables next to the published numbers (REFERENCE.md §2-§4),
each with the exact command of the analysis module that reproduces it, and every module's own
output (its printed report as ``*.md``, CSV tables and figures) under ``OUT/<analysis>/``.

Held-out text: the validation documents of the training split (``data/tokens/val.bin``: whole
documents the models never trained on), written by `heldout_texts` as JSON lines into
``data/heldout/{zh,en,all}.jsonl`` (a document is Chinese when at least 5% of its characters are
CJK ideographs; each language's documents in a seeded random order; ``all.jsonl`` holds both
languages cut into parts of at most 4,000 bytes, merged so that every prefix is about half of
each). Every analysis reads these files, never ``data/corpus`` (mostly training text).

Each section runs the module's own ``main(argv)`` in-process, so the command printed next to a
table reproduces it exactly (the module's printed report goes to ``report.md`` beside its
outputs). A section that fails is reported as skipped, with its error, and the others still run.
``RESULTS.md`` is rewritten after every section, so a running report can be read. ``--reuse``
keeps the outputs of modules whose command has not changed (re-rendering the report is then
quick); ``--only`` runs some sections.

Bounds (documents, gaps, resamples, windows) are listed in the report; ``--quick`` uses tiny ones
(a couple of minutes on 2 CPU threads) and, so that no long document can slip in, reads short
excerpts of the first held-out documents (``OUT/heldout_quick/``) instead of the full files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import random
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyses._common import is_cjk, markdown_table
from lens_positions.atomic import atomic_open, write_json_atomic, write_text_atomic

#: Variants in report order, and the shipped model of each.
VARIANTS: tuple[str, ...] = ("none", "shared", "per-layer", "per-layer-per-head")
SHIPPED: dict[str, str] = {v: f"bilingual-{v}" for v in VARIANTS}

#: §2: validation loss (nats/byte), bilingual Wikipedia, 50k steps.
PUBLISHED_LOSS: dict[str, float] = {
    "none": 1.0753,
    "shared": 1.0747,
    "shared-per-head": 1.0740,
    "per-layer": 1.0722,
    "per-layer-per-head": 1.0701,
}
PUBLISHED_HEAD_RATES = "r −0.35, Spearman −0.48 (48 layer-heads)"
LN2 = math.log(2)
ZH_CJK_FRACTION = 0.05


# ---------------------------------------------------------------------------------------- bounds
@dataclass(frozen=True)
class Bounds:
    """How much of the held-out text each analysis reads (the cost knobs).

    *_bytes bounds are turned into ``--max-docs``: the fewest documents of ``all.jsonl`` (in its
    order) holding at least that many UTF-8 bytes.
    """

    byte_bytes: int = 60_000  # byte-increment tables (shared and per-layer models)
    max_gaps: int = 20_000  # Chinese gaps (and English letters) per model
    n_boot: int = 200  # bootstrap resamples of the AUCs
    head_bytes: int = 36_000  # head rates (per-layer-per-head model)
    entity_pairs: int | None = None  # pairs per condition (None: the module's full lists)
    probe_train: int = 800  # word-index probe prompts (7 examples each)
    probe_test: int = 300
    patch_windows: int = 16  # 255-byte windows for the position interventions
    patch_entities: int = 40  # entities x carriers for entity patching
    patch_carriers: int = 3
    attr_windows: int = 16  # 255-byte windows for δ attribution
    axis_windows: int = 32  # 255-byte windows for the learned-axis look-back
    window_bytes: int = 255  # bytes per window of the three analyses above
    quick_docs: int = 0  # >0: read excerpts of this many documents per language (--quick)
    quick_chars: int = 0  # ... of at most this many characters


FULL = Bounds()
QUICK = Bounds(
    byte_bytes=1_500, max_gaps=150, n_boot=20, head_bytes=600, entity_pairs=6, probe_train=30,
    probe_test=15, patch_windows=2, patch_entities=3, patch_carriers=1, attr_windows=2,
    axis_windows=2, window_bytes=128, quick_docs=3, quick_chars=500,
)  # fmt: skip


# ---------------------------------------------------------------------------------------- text
def chinese_fraction(text: str) -> float:
    """Share of the characters that are CJK Unified Ideographs (U+4E00-U+9FFF)."""
    return sum(map(is_cjk, text)) / len(text) if text else 0.0


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
    from training.corpus import decode_documents, load_tokens

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


def _read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def excerpt_files(paths: dict[str, Path], out_dir: Path, n_docs: int, n_chars: int) -> dict[str, Path]:
    """Copies of the held-out files with the first ``n_docs`` documents per language cut to
    ``n_chars`` characters (the ``--quick`` texts)."""
    rows = {lang: _read_rows(paths[lang])[:n_docs] for lang in ("zh", "en")}
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
    for row in _read_rows(path):
        n += 1
        total += len(row["text"].encode("utf-8"))
        if total >= target_bytes:
            break
    return max(n, 1), total


def text_stats(paths: dict[str, Path]) -> pd.DataFrame:
    """Documents, characters, bytes and CJK-CJK gaps of each held-out file."""
    rows = []
    for lang in ("zh", "en"):
        docs = [r["text"] for r in _read_rows(paths[lang])]
        gaps = sum(
            is_cjk(a) and is_cjk(b) for d in docs for a, b in zip(d, d[1:], strict=False)
        )
        rows.append({
            "file": str(paths[lang]), "documents": len(docs), "characters": sum(map(len, docs)),
            "bytes": sum(len(d.encode("utf-8")) for d in docs), "CJK-CJK gaps": gaps,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- runs
def log(message: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def command(module: str, argv: Sequence[str]) -> str:
    """The shell command that runs ``analyses.<module>`` with these arguments."""
    return f"python -m analyses.{module} " + shlex.join(list(argv))


def run_module(
    module: str,
    argv: Sequence[str],
    out: Path,
    outputs: Sequence[str] = (),
    reuse: bool = False,
) -> None:
    """Run ``analyses.<module>.main(argv)`` in-process; its printed report goes to
    ``out/report.md`` and the command to ``out/command.txt``.

    reuse: skip the run when every file of ``outputs`` is already in ``out`` and ``command.txt``
    is missing or holds this same command (delete the folder to recompute).
    ``SystemExit`` (argparse errors) becomes a RuntimeError.
    """
    cmd = command(module, argv)
    stamp = out / "command.txt"
    if reuse and outputs and all((out / name).is_file() for name in outputs):
        if not stamp.is_file() or stamp.read_text(encoding="utf-8").strip() == cmd:
            log(f"  reusing {out} ({cmd})")
            return
    mod = importlib.import_module(f"analyses.{module}")
    out.mkdir(parents=True, exist_ok=True)
    log(f"  {cmd}")
    with atomic_open(out / "report.md") as f, contextlib.redirect_stdout(f):
        try:
            mod.main(list(argv))
        except SystemExit as e:
            raise RuntimeError(f"analyses.{module} exited with status {e.code}") from e
    write_text_atomic(stamp, cmd + "\n")


def read_csv(path: Path) -> pd.DataFrame:
    """A module's CSV table; ``head`` columns ("mean", 0, 1, ...) read as strings."""
    return pd.read_csv(path, dtype={"head": str})


def code_block(lines: str | Sequence[str]) -> str:
    lines = [lines] if isinstance(lines, str) else list(lines)
    return "```bash\n" + "\n".join(lines) + "\n```"


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (for links inside RESULTS.md)."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def image(path: Path, base: Path, alt: str) -> str:
    return f"![{alt}]({rel(path, base)})" if path.is_file() else f"({alt}: not written)"


def _f(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(float(value), fmt)


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _range(lo: float, hi: float, mean: float | None = None) -> str:
    if math.isnan(lo):
        return "—"
    if abs(hi - lo) < 5e-3:
        return _f(lo)
    return f"{lo:.2f}–{hi:.2f}" + (f" ({mean:.2f})" if mean is not None else "")


# ---------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """What every section needs."""

    out: Path
    models: dict[str, str]
    texts: dict[str, Path]
    bounds: Bounds
    threads: int
    quick: bool
    reuse: bool = False
    observations: list[str] = field(default_factory=list)

    def common(self) -> list[str]:
        return ["--threads", str(self.threads), "--no-progress"]

    def windows(self, n: int) -> list[str]:
        """``--max-windows`` (and ``--window-bytes`` unless the modules' default 255)."""
        extra = [] if self.bounds.window_bytes == 255 else ["--window-bytes", str(self.bounds.window_bytes)]
        return ["--max-windows", str(n), *extra]

    def has(self, variant: str) -> bool:
        return variant in self.models


@dataclass
class Section:
    key: str
    title: str
    body: str = "_not run yet_"
    seconds: float = 0.0
    status: str = "pending"  # pending, ok, skipped


# ---------------------------------------------------------------------------------------- 1. loss
def _card(model: str) -> dict | None:
    from lens_positions.checkpoints import resolve

    path = resolve(model) / "card.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _metrics(model: str) -> list[dict]:
    from lens_positions.checkpoints import resolve

    path = resolve(model) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def section_loss(ctx: Context) -> str:
    rows = []
    for variant, model in ctx.models.items():
        card = _card(model) or {}
        measured = card.get("shipped") or card.get("final") or {}
        source = "shipped" if "shipped" in card else ("final" if "final" in card else "—")
        trains = [r for r in _metrics(model) if r.get("kind") == "train"]
        val = measured.get("val_loss", float("nan"))
        rows.append({
            "variant": variant, "model": model, "steps": card.get("steps", float("nan")),
            "val_loss": val, "bits_per_byte": measured.get("val_bpb", val / LN2),
            "source": source, "val_tokens": measured.get("val_tokens", float("nan")),
            "last_train_loss": trains[-1]["loss"] if trains else float("nan"),
            "published": PUBLISHED_LOSS.get(variant, float("nan")),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    ref = df.loc[df.variant == "none", "val_loss"]
    ref_loss = float(ref.iloc[0]) if len(ref) else float("nan")
    df["Δ_vs_none"] = df.val_loss - ref_loss
    df["Δ_bpb_vs_none"] = df["Δ_vs_none"] / LN2
    df["published_Δ"] = df.published - PUBLISHED_LOSS["none"]
    df = df[["variant", "model", "steps", "val_tokens", "val_loss", "bits_per_byte", "Δ_vs_none",
             "Δ_bpb_vs_none", "published", "published_Δ", "last_train_loss", "source"]]  # fmt: skip
    table = markdown_table(df, {
        "val_loss": ".4f", "bits_per_byte": ".4f", "Δ_vs_none": "+.4f", "Δ_bpb_vs_none": "+.4f",
        "published": ".4f", "published_Δ": "+.4f", "last_train_loss": ".3f", "steps": ".0f",
        "val_tokens": lambda v: f"{int(v):,}",
    })  # fmt: skip
    parts = [
        "Validation loss (nats/byte) and bits per byte of each shipped model, from its `card.json`: "
        "`shipped` = re-measured on exactly the shipped bf16 weights (float32 on CPU, all "
        "validation windows) by `training.ship`, else `final` = the training run's own final "
        "evaluation. `published` = the post's values (§2: bilingual Wikipedia, 50k steps x 64 x 512 "
        "bytes ≈ 1.6B bytes), `published_Δ` their difference from RoPE; `last_train_loss` = the "
        "last logged training loss (250-step record).",
        "",
        table,
        "",
        "Not comparable in absolute terms: ours are 6,000 steps (≈ 197M bytes) on a ~10 MB "
        "offline Debian/LibreOffice bilingual corpus, i.e. ~20 epochs, so the models are far "
        "into over-fitting (training loss well below validation loss) and the validation set is "
        "small (188 documents, ~424k bytes). The published differences between variants were "
        "0.001-0.005 nats; compare our differences on that scale, as single runs (one seed).",
    ]
    if len(df) > 1 and df.val_loss.notna().all():
        best = df.sort_values("val_loss").iloc[0]
        worst = df.sort_values("val_loss").iloc[-1]
        ctx.observations.append(
            f"Loss: {best.variant} is best ({best.val_loss:.4f}) and {worst.variant} worst "
            f"({worst.val_loss:.4f}), a spread of {worst.val_loss - best.val_loss:.4f} nats/byte "
            f"(published spread 0.0052)."
        )
        gap = (df.val_loss - df.last_train_loss).mean()
        if gap > 0.1:
            ctx.observations.append(
                f"Over-fitting: validation loss exceeds the last training loss by {gap:.2f} "
                "nats/byte on average (≈ 20 epochs over the small corpus)."
            )
    # δ overview from the training run's final evaluation
    drows = []
    for variant, model in ctx.models.items():
        finals = [r for r in _metrics(model) if r.get("kind") == "final" and r.get("delta")]
        if not finals:
            continue
        from lens_positions.checkpoints import resolve

        cfg = json.loads((resolve(model) / "config.json").read_text(encoding="utf-8"))
        max_delta = cfg.get("max_delta", float("nan")) if cfg.get("increments") == "per_layer" else float("nan")
        for d in finals[-1]["delta"]:
            heads = d.get("head_mean")
            drows.append({
                "variant": variant, "layer": f"L{d['layer']}", "mean": d["mean"], "std": d["std"],
                "min": d["min"], "max": d["max"],
                "head_means": _range(min(heads), max(heads)) if heads else "—",
                "max_delta": max_delta,
            })  # fmt: skip
            if not math.isnan(max_delta) and d["max"] >= 0.99 * max_delta:
                ctx.observations.append(
                    f"{variant} L{d['layer']}: some tokens sit at the δ bound "
                    f"(max {d['max']:.2f} of max_delta {max_delta:g})."
                )
            if not math.isnan(max_delta) and d["mean"] >= 0.9 * max_delta:
                ctx.observations.append(
                    f"{variant} L{d['layer']}: mean δ {d['mean']:.2f} is near max_delta "
                    f"{max_delta:g} (saturated layer)."
                )
    if drows:
        ddf = pd.DataFrame(drows)
        if variant_rows := [v for v in ("none", "shared") if v in set(ddf.variant)]:
            # one row for models whose δ is the same in every layer
            keep = ~ddf.variant.isin(variant_rows) | (ddf.layer == "L0")
            ddf = ddf[keep].copy()
            ddf.loc[ddf.variant.isin(variant_rows), "layer"] = "all"
        parts += [
            "",
            "### δ per layer (validation windows, from the training run's final evaluation in "
            "`metrics.jsonl`)",
            "",
            markdown_table(ddf, {"max_delta": ".0f"}),
            "",
            "`head_means`: range of the per-head mean δ (per-head model). `max_delta` = the bound "
            "of the per-layer increment MLPs.",
        ]
    parts += [
        "",
        "Reproduce: the cards are written by `training.ship`; the training-run numbers and "
        "loss curves come from",
        "",
        code_block(command("loss_comparison", [
            "--runs", *[_model_dir(m) for m in ctx.models.values()],
            "--out", str(ctx.out / "loss_comparison"),
        ])),  # fmt: skip
    ]
    try:
        run_module("loss_comparison", [
            "--runs", *[_model_dir(m) for m in ctx.models.values()],
            "--out", str(ctx.out / "loss_comparison"),
        ], ctx.out / "loss_comparison")  # fmt: skip
        parts += ["", image(ctx.out / "loss_comparison" / "loss_curves.png", ctx.out, "loss curves")]
    except Exception as e:  # the curves are a bonus: the table above does not need them
        parts += ["", f"(loss curves not drawn: {e})"]
    return "\n".join(parts)


def _model_dir(model: str) -> str:
    """A model's folder, relative to the working directory when it is inside it."""
    from lens_positions.checkpoints import resolve

    path = resolve(model)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------- 2. bytes
def section_bytes(ctx: Context) -> str:
    from analyses.byte_increments import BYTE_CATEGORIES, PUBLISHED

    n_docs, n_bytes = docs_for_bytes(ctx.texts["all"], ctx.bounds.byte_bytes)
    tables: dict[str, pd.DataFrame] = {}
    commands = []
    for variant in ("shared", "per-layer"):
        if not ctx.has(variant):
            continue
        argv = ["--model", ctx.models[variant], "--text-file", str(ctx.texts["all"]),
                "--max-docs", str(n_docs), *ctx.common(), "--out", str(ctx.out / "byte_increments" / variant)]  # fmt: skip
        out = ctx.out / "byte_increments" / variant
        run_module("byte_increments", argv, out, ["byte_increments.csv"], ctx.reuse)
        tables[variant] = read_csv(out / "byte_increments.csv")
        commands.append(command("byte_increments", argv))
    if not tables:
        return "_No shared or per-layer model given._"
    cats = list(BYTE_CATEGORIES)

    def cell(t: pd.DataFrame, source: str, layer: str, cat: str, with_range: bool) -> str:
        r = t[(t.source == source) & (t.layer == layer) & (t["head"] == "mean") & (t.category == cat)]
        if not len(r):
            return "—"
        r = r.iloc[0]
        return _range(r["min"], r["max"], r["mean"]) if with_range else _f(r["mean"])

    ident = []
    for cat in cats:
        row = {"category": cat}
        if "shared" in tables:
            row["shared (ours)"] = cell(tables["shared"], "identity", "shared", cat, True)
            row["shared (published)"] = PUBLISHED["shared"].get(cat, "—")
        if "per-layer" in tables:
            row["per-layer L0 (ours)"] = cell(tables["per-layer"], "identity", "L0", cat, True)
            row["per-layer L0 (published)"] = PUBLISHED["L0"].get(cat, "—")
        ident.append(row)
    context_rows = []
    for cat in cats:
        row: dict[str, Any] = {"category": cat}
        if "shared" in tables:
            row["shared"] = cell(tables["shared"], "context", "shared", cat, False)
        if "per-layer" in tables:
            t = tables["per-layer"]
            for layer in dict.fromkeys(t[t.source == "context"].layer):
                row[f"per-layer {layer}"] = cell(t, "context", layer, cat, False)
        any_t = next(iter(tables.values()))
        occ = any_t[(any_t.source == "context") & (any_t.category == cat) & (any_t["head"] == "mean")]
        row["occurrences"] = int(occ.occurrences.iloc[0]) if len(occ) and not pd.isna(occ.occurrences.iloc[0]) else 0
        context_rows.append(row)
    parts = [
        "**From byte identity** (the published protocol, §3.1): δ of every byte of the category "
        "computed from the byte alone (`model.byte_deltas()`: the shared table, or the per-layer "
        "model's L0, whose increment MLP reads the embedding); `min–max (mean)` over the "
        "category's bytes.",
        "",
        markdown_table(pd.DataFrame(ident)),
        "",
        f"**In context** over held-out text (the first {n_docs} rows, i.e. document parts, of `{ctx.texts['all']}`, "
        f"{n_bytes:,} bytes, both languages; windows of ≤ 512 bytes, separator first): mean δ "
        "over every occurrence of the category's bytes, per layer of the per-layer model. The "
        "`separator` row is the separator at the start of every window.",
        "",
        markdown_table(pd.DataFrame(context_rows)),
        "",
        "Reproduce (figures `byte_increments.png` and full tables with min/max per layer under "
        f"`{rel(ctx.out / 'byte_increments', ctx.out)}/`):",
        "",
        code_block(commands),
    ]
    if "per-layer" in tables:
        t = tables["per-layer"]
        ctx_t = t[(t.source == "context") & (t["head"] == "mean") & (t.category != "separator")]
        items = []
        for layer, sub in ctx_t.groupby("layer", sort=False):
            top = sub.sort_values("mean", ascending=False).iloc[0]
            low = sub.sort_values("mean").iloc[0]
            items.append(f"{layer} {top.category} {top['mean']:.2f} / {low.category} {low['mean']:.2f}")
        ctx.observations.append(
            "Per-layer model in context, largest / smallest mean δ by byte category: "
            + "; ".join(items) + "."
        )
        ident = t[(t.source == "identity") & (t["head"] == "mean")].set_index("category")
        if "space" in ident.index and not math.isnan(ident.loc["space", "mean"]):
            ctx.observations.append(
                f"Per-layer L0 from byte identity does not saturate: space {ident.loc['space', 'mean']:.2f}, "
                f"`. ! ?` {ident.loc['. ! ?', 'mean']:.2f}, A-Z {ident.loc['A-Z', 'mean']:.2f} "
                "(published ≈ 9.5-10, at the bound)."
            )
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- 3. words
def section_boundaries(ctx: Context) -> str:
    from analyses.word_boundaries import PUBLISHED_ZH_PER_LAYER, PUBLISHED_ZH_SHARED

    published = {**PUBLISHED_ZH_PER_LAYER, **PUBLISHED_ZH_SHARED}
    b = ctx.bounds
    zh_rows, en_rows, head_rows, commands, counts = [], [], [], [], []
    for variant in ("per-layer", "per-layer-per-head", "shared"):
        if not ctx.has(variant):
            continue
        out = ctx.out / "word_boundaries" / variant
        argv = ["--model", ctx.models[variant], "--text-file", str(ctx.texts["zh"]),
                "--en-file", str(ctx.texts["en"]), "--max-gaps", str(b.max_gaps),
                "--n-boot", str(b.n_boot), "--seed", "0", *ctx.common(), "--out", str(out)]  # fmt: skip
        run_module("word_boundaries", argv, out, ["word_boundaries.csv"], ctx.reuse)
        table = read_csv(out / "word_boundaries.csv")
        commands.append(command("word_boundaries", argv))
        for task, sub in table.groupby("task", sort=False):
            first = sub.iloc[0]
            counts.append({
                "variant": variant, "task": "Chinese gaps vs jieba" if task == "zh" else "English word starts",
                "scored": int(first.n_gaps), "boundaries": int(first.n_boundaries),
                "base_rate": float(first.base_rate),
            })  # fmt: skip
            mean_rows = sub[sub["head"] == "mean"]
            for r in mean_rows.itertuples():
                row = {
                    "variant": variant, "layer": r.layer, "AUC": r.auc,
                    "95% CI": f"{r.ci_low:.3f}–{r.ci_high:.3f}" if not math.isnan(r.ci_low) else "—",
                    "mean δ boundary": r.mean_boundary, "mean δ within": r.mean_within,
                }  # fmt: skip
                row["ci_low"], row["ci_high"] = r.ci_low, r.ci_high
                if task == "zh":
                    ref = published.get(r.layer) if variant in ("per-layer", "shared") else None
                    row["published"] = ref if ref is not None else float("nan")
                    zh_rows.append(row)
                else:
                    en_rows.append(row)
            per_head = sub[sub["head"] != "mean"]
            if len(per_head):
                for layer, h in per_head.groupby("layer", sort=False):
                    best = h.loc[(h.auc - 0.5).abs().idxmax()]
                    head_rows.append({
                        "task": task, "layer": layer, "lowest head AUC": h.auc.min(),
                        "highest head AUC": h.auc.max(), "most extreme head": f"H{best['head']}",
                    })  # fmt: skip
    _auc_observations(ctx, pd.DataFrame(zh_rows), "Chinese")
    _auc_observations(ctx, pd.DataFrame(en_rows), "English")
    zh_rows = [{k: v for k, v in r.items() if k not in ("ci_low", "ci_high")} for r in zh_rows]
    en_rows = [{k: v for k, v in r.items() if k not in ("ci_low", "ci_high")} for r in en_rows]
    parts = [
        "Protocol (§3.3): held-out Chinese documents segmented by jieba (precise mode); every gap "
        "between two adjacent CJK characters in a ≤ 512-byte window is scored by δ at the second "
        "character's lead byte; label = jieba boundary. ROC-AUC per layer with a 95% bootstrap "
        f"interval ({b.n_boot} resamples of the gaps). Below 0.5: the layer *compresses* "
        "boundaries. Documents are taken in file order until ≥ "
        f"{b.max_gaps:,} gaps (the published run used ~40,000). Per-head model: δ averaged over "
        "heads.",
        "",
        markdown_table(pd.DataFrame(counts), {"base_rate": ".3f"}),
        "",
        "#### Chinese word boundaries",
        "",
        markdown_table(pd.DataFrame(zh_rows), {"published": ".2f", "AUC": ".3f"}) if zh_rows else "_none_",
        "",
        "#### English word starts (our protocol: a letter after a space/punctuation vs a letter "
        "after a letter; δ at the letter)",
        "",
        markdown_table(pd.DataFrame(en_rows), {"AUC": ".3f"}) if en_rows else "_none_",
        "",
        "The shared model's δ depends on the byte alone, so its row is the byte-identity "
        "baseline: lead bytes (Chinese) and letters (English) are not distributed alike at "
        "boundaries and inside words, so it need not sit at exactly 0.5. Context-dependent "
        "layers should be judged against it.",
    ]
    if head_rows:
        parts += [
            "",
            "#### Per-layer-per-head model: spread of the single heads' AUCs",
            "",
            markdown_table(pd.DataFrame(head_rows), {"lowest head AUC": ".3f", "highest head AUC": ".3f"}),
        ]
    parts += [
        "",
        "Reproduce (AUC figures `word_boundaries.png` and per-head rows under "
        f"`{rel(ctx.out / 'word_boundaries', ctx.out)}/`):",
        "",
        code_block(commands),
    ]
    return "\n".join(parts)


def _auc_observations(ctx: Context, df: pd.DataFrame, language: str) -> None:
    """Observations on one language's AUC rows (variant, layer, AUC, ci_low, ci_high)."""
    if df.empty:
        return
    base = df[df.variant == "shared"]
    base_ci = (float(base.ci_low.iloc[0]), float(base.ci_high.iloc[0])) if len(base) else None
    if base_ci is not None and not math.isnan(base_ci[0]) and (base_ci[0] > 0.5 or base_ci[1] < 0.5):
        ctx.observations.append(
            f"{language} boundaries, shared model: AUC {float(base.AUC.iloc[0]):.3f} (CI "
            f"{base_ci[0]:.3f}–{base_ci[1]:.3f}), not chance although its δ sees only byte identity: "
            "the bytes that open a word are not distributed like those inside one. This is the "
            "baseline the context-dependent layers must beat."
        )
    for variant, sub in df[df.variant != "shared"].groupby("variant", sort=False):
        sub = sub.dropna(subset=["ci_low"])
        if sub.empty:
            continue
        aucs = ", ".join(f"{r.layer} {r.AUC:.2f}" for r in sub.itertuples())
        below = [r.layer for r in sub.itertuples() if r.ci_high < 0.5]
        above = [r.layer for r in sub.itertuples() if base_ci is not None and r.ci_low > base_ci[1]]
        text = f"{language} boundaries, {variant}: AUC {aucs}"
        if base_ci is not None:
            text += f"; CI above the byte-identity (shared) CI: {', '.join(above) or 'none'}"
        if below:
            text += f"; below 0.5 (boundaries compressed): {', '.join(below)}"
        ctx.observations.append(text + ".")


# ---------------------------------------------------------------------------------------- 4. entities
def _write_pairs(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    return write_text_atomic(path, "".join(f"{a}\t{b}\n" for a, b in pairs))


def section_entities(ctx: Context) -> str:
    from analyses.entities import CARRIERS, default_conditions

    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "entities" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--seed", "0"]
    n = ctx.bounds.entity_pairs
    if n is not None:  # the module reads trimmed lists from files named after the conditions
        files = [
            str(_write_pairs(ctx.out / "entities" / "pairs" / f"{cond}.txt", pairs[:n]))
            for cond, pairs in default_conditions(0).items()
        ]
        argv += ["--pairs", *files]
    argv += [*ctx.common(), "--out", str(out)]
    run_module("entities", argv, out, ["entities.csv"], ctx.reuse)
    summary = read_csv(out / "entities.csv")
    s = summary[summary["head"] == "mean"]
    rows = []
    for layer in dict.fromkeys(s.layer):
        for cond in dict.fromkeys(s.condition):
            r = s[(s.layer == layer) & (s.condition == cond)].iloc[0]
            rows.append({
                "layer": layer, "condition": cond, "pairs": int(r.n), "mean real": r.mean_real,
                "mean reversed": r.mean_reversed, "reversed − real": r.mean_diff,
                "% real smaller": r.pct_real_smaller, "Wilcoxon p": _p(r.wilcoxon_p),
                "published (entities)": r.reference if isinstance(r.reference, str) else "—",
            })  # fmt: skip
    df = pd.DataFrame(rows)
    ent = s[s.condition == "entities"]
    if len(ent) and not (ent.wilcoxon_p < 0.01).any():
        ctx.observations.append(
            "Entities: no layer of the per-layer model gives real-order entities a smaller δ at "
            f"p < 0.01 (smallest p {ent.wilcoxon_p.min():.2g}); the post found it in L2-L5."
        )
    for cond in ("nonce", "bigrams"):
        sig = s[(s.condition == cond) & (s.wilcoxon_p < 0.01)]
        for r in sig.itertuples():
            ctx.observations.append(
                f"Entities control `{cond}`, {r.layer}: reversed − real {r.mean_diff:+.3f} "
                f"(p {_p(r.wilcoxon_p)}), an order effect without any entity."
            )
    for r in ent.itertuples():
        if r.wilcoxon_p < 0.01:
            ctrl = s[(s.layer == r.layer) & (s.condition != "entities") & (s.wilcoxon_p < 0.01)]
            ctrl_note = (
                "; the control(s) " + ", ".join(
                    f"{c.condition} ({c.mean_diff:+.3f}, p {_p(c.wilcoxon_p)})" for c in ctrl.itertuples()
                ) + " differ too"
                if len(ctrl) else "; neither control differs at p < 0.01"
            )
            ctx.observations.append(
                f"Entities, per-layer {r.layer}: reversed − real δ {r.mean_diff:+.3f} "
                f"({r.pct_real_smaller:.0f}% real smaller, p {_p(r.wilcoxon_p)}){ctrl_note}."
            )
    parts = [
        "δ at the space inside a two-word pair, real order (\"New York\") against reversed "
        f"(\"York New\"), averaged over the {len(CARRIERS)} published carriers, per layer of the "
        "per-layer model. Conditions: `entities` (the module's named entities, no shared words), "
        "`nonce` (invented capitalised words: no order can be expected) and `bigrams` "
        "(length-matched common lower-case adjective + noun pairs). `reversed − real` > 0 and "
        "`% real smaller` > 50 mean the real order gets the smaller gap. Two-sided Wilcoxon "
        "signed-rank over pairs. The published column is the post's 6-layer per-layer model "
        "(its own 59 entities). δ is causal: at the space the model has not seen the second word, "
        "so this measures how strongly the first word (in its carrier) predicts a continuation.",
        "",
        markdown_table(df, {"% real smaller": ".0f", "pairs": ".0f"}),
        "",
        "Reproduce (figure `entities.png`, per-pair table `entity_pairs.csv`):",
        "",
        code_block(command("entities", argv)),
    ]
    fig = out / "entities.png"
    if fig.is_file():
        parts += ["", image(fig, ctx.out, "entities: reversed − real δ per layer")]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- 5. heads
def section_heads(ctx: Context) -> str:
    if not ctx.has("per-layer-per-head"):
        return "_No per-layer-per-head model given._"
    n_docs, n_bytes = docs_for_bytes(ctx.texts["all"], ctx.bounds.head_bytes)
    out = ctx.out / "head_rates" / "per-layer-per-head"
    argv = ["--model", ctx.models["per-layer-per-head"], "--text-file", str(ctx.texts["all"]),
            "--max-docs", str(n_docs), *ctx.common(), "--out", str(out)]  # fmt: skip
    run_module("head_rates", argv, out, ["head_rates.csv", "head_rate_correlations.csv"], ctx.reuse)
    corr = read_csv(out / "head_rate_correlations.csv")
    corr["published"] = [PUBLISHED_HEAD_RATES if s == "all" else "—" for s in corr.scope]
    corr = corr.drop(columns=["reference"], errors="ignore")
    heads = read_csv(out / "head_rates.csv")
    per_layer = heads.groupby("layer", sort=False).agg(
        mean_delta_min=("mean_delta", "min"), mean_delta_max=("mean_delta", "max"),
        lookback_bytes_min=("lookback_bytes", "min"), lookback_bytes_max=("lookback_bytes", "max"),
        lookback_learned_mean=("lookback_positions", "mean"),
    ).reset_index()  # fmt: skip
    c = corr[corr.scope == "all"].iloc[0]
    if not math.isnan(c.pearson_r):
        note = ""
        dev = (heads.mean_delta - heads.mean_delta.median()).abs()
        top = heads.loc[dev.idxmax()]
        mad = float((heads.mean_delta - heads.mean_delta.median()).abs().median())
        if len(heads) > 3 and dev.max() > 10 * max(mad, 1e-6):
            from scipy.stats import pearsonr

            rest = heads.drop(index=dev.idxmax())
            r_rest = float(pearsonr(rest.mean_delta, rest.lookback_bytes).statistic)
            note = (
                f"; one outlier head, {top.layer}H{top['head']} (mean δ "
                f"{top.mean_delta:.2f}, look-back {top.lookback_bytes:.0f} bytes): without it "
                f"r = {r_rest:.2f}"
            )
        ctx.observations.append(
            f"Head rates: mean δ vs look-back over {int(c.n)} layer-heads: Pearson r = "
            f"{c.pearson_r:.2f} (p {c.pearson_p:.2g}), Spearman {c.spearman_rho:.2f} "
            f"(p {c.spearman_p:.2g}); published −0.35 / −0.48{note}."
        )
    return "\n".join([
        f"Per-layer-per-head model over the first {n_docs} rows (document parts) of `{ctx.texts['all']}` "
        f"({n_bytes:,} bytes): every head's mean δ and mean attention look-back "
        "(Σ_k pattern·(q − k), bytes; query 0 left out), correlated over all layer-heads and "
        "within each layer (§3.5).",
        "",
        markdown_table(corr, {"pearson_p": ".2g", "spearman_p": ".2g", "n": ".0f"}),
        "",
        "Per layer, the range over its heads (`lookback_learned_mean` = look-back in learned "
        "position units, head mean):",
        "",
        markdown_table(per_layer),
        "",
        image(out / "head_rates.png", ctx.out, "head rates vs look-back"),
        "",
        "Reproduce (per-head table `head_rates.csv`):",
        "",
        code_block(command("head_rates", argv)),
    ])


# ---------------------------------------------------------------------------------------- 6. new
def section_probes(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    b = ctx.bounds
    out = ctx.out / "word_index_probes" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--n-train", str(b.probe_train),
            "--n-test", str(b.probe_test), "--seed", "0", *ctx.common(), "--out", str(out)]  # fmt: skip
    run_module("word_index_probes", argv, out, ["summary.csv"], ctx.reuse)
    summary = pd.read_csv(out / "summary.csv")
    cols = [c for c in ("stage", "resid test", "learned test", "abs test", "abs lookup test",
                        "resid balanced", "learned balanced", "abs lookup balanced",
                        "random letters resid", "shuffled labels resid", "chance test",
                        "chance balanced") if c in summary.columns]  # fmt: skip
    best = summary.loc[summary["resid test"].idxmax()]
    ctx.observations.append(
        f"Word-index probes (per-layer, 7 words): best residual probe at {best.stage} "
        f"({best['resid test']:.2f} test, {best.get('resid balanced', float('nan')):.2f} balanced for "
        f"absolute position; absolute position alone {best['abs test']:.2f}); the learned "
        f"position alone reaches at most {summary['learned test'].max():.2f} "
        f"({summary['learned balanced'].max():.2f} on the position-balanced set, where the best "
        f"position-only guess gets {summary['chance balanced'].iloc[0]:.2f})."
    )
    return "\n".join([
        "§4 adapted to bytes: a fixed prefix then 7 random lowercase words; at each word's last "
        "byte a logistic-regression probe predicts the word index from the residual stream "
        "entering each block (`embed` … `L4`, then the final stream `L5`), from the block's "
        "learned cumulative position alone (`learned`), and from the absolute byte position alone "
        "(`abs`, `abs lookup` = best position-only guess). `balanced` = test examples balanced for "
        "absolute position (position alone is then at chance). Controls: random letters instead "
        f"of words; shuffled training labels. {b.probe_train} train / {b.probe_test} test prompts "
        "(test words unseen in training). The post (GPT-2, 10 words) reported 74.9% at layer 3.",
        "",
        markdown_table(summary[cols]),
        "",
        image(out / "accuracy_by_layer.png", ctx.out, "word-index accuracy by layer"),
        "",
        "Reproduce (per-index F1 in the module's report and `f1.csv`):",
        "",
        code_block(command("word_index_probes", argv)),
    ])


def section_patching(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    b = ctx.bounds
    out = ctx.out / "position_patching" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(b.patch_windows), "--max-entities", str(b.patch_entities),
            "--carriers", str(b.patch_carriers), "--no-per-position", "--seed", "0",
            *ctx.common(), "--out", str(out)]  # fmt: skip
    run_module("position_patching", argv, out, ["interventions.csv", "entity_patching.csv"], ctx.reuse)
    inter = pd.read_csv(out / "interventions.csv")
    inter["layer"] = [f"L{x}" if str(x).isdigit() else str(x) for x in inter.layer]
    inter["cell"] = [f"{d:+.4f} ± {s:.4f}" for d, s in zip(inter.d_loss, inter.d_loss_se, strict=True)]
    pivot = inter.pivot(index="layer", columns="intervention", values="cell").reset_index()
    pivot.columns.name = None
    moved = inter.pivot(index="layer", columns="intervention", values="mean_abs_dpos")
    pivot["mean |Δpos| (integer)"] = pivot.layer.map(moved.get("integer", pd.Series(dtype=float)))
    parts = [
        f"Interventions on the per-layer model over held-out windows of {b.window_bytes} bytes "
        f"({int(inter.n_windows.iloc[0])} windows from `{ctx.texts['all']}`): change in next-byte "
        "loss (nats/byte, intervened − clean, ± s.e. over windows) when one layer's (or every "
        "layer's, `all`) positions are replaced: `integer` = integer RoPE positions, `mean_delta` "
        "= δ flattened to its window mean, `other_prompt` = another window's δ, `shuffled_delta` "
        "= the window's own δ permuted (control). Later layers recompute their δ (total effects).",
        "",
        markdown_table(pivot, {"mean |Δpos| (integer)": ".1f"}),
    ]
    all_int = inter[(inter.layer == "all") & (inter.intervention == "integer")]
    if len(all_int):
        ctx.observations.append(
            f"Position patching: integer positions in every layer of the per-layer model change the "
            f"loss by {float(all_int.d_loss.iloc[0]):+.3f} nats/byte."
        )
    worst = inter[inter.layer != "all"].sort_values("d_loss").iloc[-1]
    same = inter[(inter.layer == worst.layer) & (inter.intervention == "mean_delta")]
    scale = (
        f"; keeping that layer's mean δ but flattening it (`mean_delta`) costs only "
        f"{float(same.d_loss.iloc[0]):+.3f}, so the model mostly relies on the scale of the positions"
        if worst.intervention == "integer" and len(same) else ""
    )
    ctx.observations.append(
        f"Position patching: the single most costly layer intervention is {worst.intervention} at "
        f"{worst.layer} ({worst.d_loss:+.3f} nats/byte){scale}."
    )
    ent_path = out / "entity_patching.csv"
    if ent_path.is_file():
        ent = pd.read_csv(ent_path)
        cols = [c for c in ("activation", "layer", "n", "clean_minus_corrupt", "whole_layer",
                            "whole_layer_se", "control_unrelated", "toward_clean",
                            "prefix_max_abs") if c in ent.columns and ent[c].notna().any()]  # fmt: skip
        parts += [
            "",
            f"Entity patching ({b.patch_entities} entities × {b.patch_carriers} carriers, "
            "continuation \".\"): log-prob of the continuation in the reversed prompt (\"York "
            "New.\") when one layer's whole δ or position activation comes from the real-order "
            "prompt (`whole_layer`, patched − reversed), against the same patch from an unrelated "
            "real entity of equal length (`control_unrelated`); `toward_clean` = share of prompts "
            "moved toward the real-order value. Whole-layer δ and position patches are the same "
            "intervention (positions are the running sum of δ), hence identical rows.",
            "",
            markdown_table(ent[cols], {"prefix_max_abs": ".1e", "n": ".0f"}),
        ]
    parts += [
        "",
        image(out / "interventions.png", ctx.out, "position interventions"),
        "",
        "Reproduce:",
        "",
        code_block(command("position_patching", argv)),
    ]
    return "\n".join(parts)


def section_attribution(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "delta_attribution" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(ctx.bounds.attr_windows), "--seed", "0", *ctx.common(),
            "--out", str(out)]  # fmt: skip
    run_module("delta_attribution", argv, out, ["checks.csv", "parts.csv"], ctx.reuse)
    checks = pd.read_csv(out / "checks.csv")
    parts_df = pd.read_csv(out / "parts.csv")
    mean = parts_df.groupby(["layer", "part"], sort=False)[
        ["abs_zero_ablation", "zero_ablation", "abs_grad_x_input_frozen", "share"]
    ].mean().reset_index()
    tops = []
    for layer, g in mean.groupby("layer", sort=False):
        g = g.sort_values("abs_zero_ablation", ascending=False).head(3)
        tops.append({
            "layer": f"L{layer}" if str(layer).isdigit() else layer,
            "top parts by mean |zero-ablation effect| on the δ-logit": ", ".join(
                f"{r.part} {r.abs_zero_ablation:.2f} ({r.zero_ablation:+.2f})" for r in g.itertuples()
            ),
        })  # fmt: skip
    keep = [c for c in ("layer", "positions", "parts", "mean_abs_raw", "r_gxi_zero", "r_frozen_zero",
                        "r_centered_mean", "sign_agree", "gxi_over_random", "completeness_err")
            if c in checks.columns]  # fmt: skip
    return "\n".join([
        "Which upstream components set each layer's δ (per-layer model, "
        f"{int(checks.positions.iloc[0]) if 'positions' in checks else '?'} positions per layer "
        f"from {ctx.bounds.attr_windows} held-out windows of {ctx.bounds.window_bytes} bytes). The δ-logit (pre-sigmoid) of "
        "layer l is attributed to the embedding, every earlier head and MLP. Because the increment "
        "MLP's RMSNorm is scale-invariant, gradient × input sums to ≈ 0; the zero-ablation effect "
        "(recompute the increment MLP without the part: raw(x) − raw(x − c)) is the direct "
        "measure. `r_*` = correlations of linear attributions with the ablations; "
        "`gxi_over_random` = |g·c| over a random vector of the same norm.",
        "",
        markdown_table(checks[keep], {"completeness_err": ".1e"}),
        "",
        markdown_table(pd.DataFrame(tops)),
        "",
        "(mean |effect| and, in brackets, the signed mean; δ-logit units.)",
        "",
        image(out / "attribution.png", ctx.out, "δ attribution"),
        "",
        "Reproduce:",
        "",
        code_block(command("delta_attribution", argv)),
    ])


def section_axis(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    from lens_positions.checkpoints import resolve

    out = ctx.out / "learned_axis_attention" / "per-layer"
    cfg = json.loads((resolve(ctx.models["per-layer"]) / "config.json").read_text(encoding="utf-8"))
    # The HTML views hold every head's pattern: two layers (L1 and the last) and 80 bytes keep the
    # page at a few MB instead of ~10.
    views = ["--layers", "1", str(cfg["n_layers"] - 1), "--view-bytes", "80"] if cfg["n_layers"] > 2 else []
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(ctx.bounds.axis_windows), *views, *ctx.common(), "--out", str(out)]  # fmt: skip
    run_module("learned_axis_attention", argv, out, ["look_back.csv"], ctx.reuse)
    table = pd.read_csv(out / "look_back.csv")
    cols = ["lookback_learned", "lookback_bytes", "uniform_learned", "uniform_bytes", "mean_delta", "ratio"]
    layers = table.groupby("layer")[cols].mean().reset_index()
    layers["layer"] = [f"L{x}" for x in layers.layer]
    spread = table.groupby("layer").ratio.agg(["min", "max"]).reset_index(drop=True)
    layers["ratio range (heads)"] = [_range(a, b) for a, b in zip(spread["min"], spread["max"], strict=True)]
    return "\n".join([
        "Attention look-back of the per-layer model measured on the learned axis, over "
        f"{int(table.n_queries.iloc[0]):,} queries ({ctx.bounds.axis_windows} held-out windows of "
        f"{ctx.bounds.window_bytes} bytes): mean over heads of Σ_k pattern·(p_q − p_k) (`lookback_learned`) and "
        "Σ_k pattern·(q − k) (`lookback_bytes`), uniform causal attention as the position-blind "
        "baseline, and `ratio` = learned / (bytes × mean δ): above 1 when a head's keys lie across "
        "larger-than-average increments.",
        "",
        markdown_table(layers),
        "",
        "Interactive attention on the byte and learned axes (offline circuitsvis"
        + (f"; layers 1 and {cfg['n_layers'] - 1}, the first 80 bytes of the sample paragraph" if views else "")
        + "): "
        f"[{rel(out / 'attention.html', ctx.out)}]({rel(out / 'attention.html', ctx.out)}).",
        "",
        image(out / "look_back.png", ctx.out, "look-back per head"),
        "",
        "Reproduce:",
        "",
        code_block(command("learned_axis_attention", argv)),
    ])


# ---------------------------------------------------------------------------------------- 7. spaced
def section_spaced(ctx: Context) -> str:
    from analyses._common import load_model
    from analyses.spaced_text import gap_table, spaced_texts

    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "spaced_text" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], *ctx.common(), "--out", str(out)]
    run_module("spaced_text", argv, out, ["spaced_text_row.png", "spaced_text_shared.png"], ctx.reuse)
    gaps = gap_table(spaced_texts(load_model(ctx.models["per-layer"])), top=4)
    return "\n".join([
        "The two example sentences (§3.2) drawn at their learned positions, one row per layer of "
        "the per-layer model; each row scaled by its own mean increment (first figure) and all rows "
        "on one scale (second). Hover views in `spaced_text.html`.",
        "",
        image(out / "spaced_text_row.png", ctx.out, "spaced text, per-row scale"),
        "",
        image(out / "spaced_text_shared.png", ctx.out, "spaced text, shared scale"),
        "",
        markdown_table(gaps),
        "",
        "Reproduce:",
        "",
        code_block(command("spaced_text", argv)),
    ])


# ---------------------------------------------------------------------------------------- report
SECTIONS: tuple[tuple[str, str, Callable[[Context], str]], ...] = (
    ("loss", "1. Loss comparison", section_loss),
    ("bytes", "2. Per-byte increments (§3.1)", section_bytes),
    ("boundaries", "3. Word boundaries (§3.3)", section_boundaries),
    ("entities", "4. Multi-word entities (§3.4)", section_entities),
    ("heads", "5. Per-head rates vs attention range (§3.5)", section_heads),
    ("probes", "6.1 Word-index probes (§4)", section_probes),
    ("patching", "6.2 Position patching", section_patching),
    ("attribution", "6.3 δ attribution", section_attribution),
    ("axis", "6.4 Attention on the learned axis", section_axis),
    ("spaced", "7. Spaced text (§3.2)", section_spaced),
)


def render(
    ctx: Context,
    sections: Sequence[Section],
    header: dict[str, Any],
    stats: pd.DataFrame,
    finished: bool,
) -> str:
    b = ctx.bounds
    lines = [
        "# Results: learned position increments on the shipped bilingual models",
        "",
        f"Generated by `{header['command']}` ({'finished' if finished else 'RUNNING — partial report'}"
        f"; started {header['started']}, wall time {header['wall']:.0f} s on {ctx.threads} CPU "
        "thread(s)). Published numbers: REFERENCE.md §2-§4.",
        "",
        "Models: " + ", ".join(f"`{m}` ({v})" for v, m in ctx.models.items()) + " (256d, 8 heads, "
        "6 layers, 512 context, 6,000 steps; see section 1).",
        "",
        "## Held-out text and bounds",
        "",
        "Every analysis reads only held-out text: the validation documents of the training split "
        "(`data/tokens/val.bin`, whole documents never trained on), written by "
        "`analyses.results.heldout_texts` into JSON lines (Chinese = ≥ 5% CJK characters; each "
        "language shuffled with seed 0; `all.jsonl`, read by the analyses that take a bounded "
        "amount of mixed text, holds both languages' documents cut at line ends into parts of "
        "≤ 4,000 bytes, shuffled and merged so that every prefix is about half Chinese, half "
        "English by bytes)"
        + (" — `--quick`: short excerpts of the first documents" if ctx.quick else "") + ".",
        "",
        markdown_table(stats, {c: ",.0f" for c in ("documents", "characters", "bytes", "CJK-CJK gaps")}),
        "",
        "Bounds of this run"
        + (" (`--quick`)" if ctx.quick else "")
        + f": byte tables ≥ {b.byte_bytes:,} bytes of documents; word boundaries ≥ "
        f"{b.max_gaps:,} Chinese gaps and ≥ {b.max_gaps:,} English letters per model, "
        f"{b.n_boot} bootstrap resamples; head rates ≥ {b.head_bytes:,} bytes; entities "
        f"{'all pairs' if b.entity_pairs is None else f'{b.entity_pairs} pairs per condition'}; "
        f"word-index probes {b.probe_train} train / {b.probe_test} test prompts; position "
        f"patching {b.patch_windows} windows and {b.patch_entities} entities × {b.patch_carriers} "
        f"carriers (whole-layer patches only); δ attribution {b.attr_windows} windows; learned-axis "
        f"look-back {b.axis_windows} windows (windows: {b.window_bytes} bytes, ≤ 2 per part of `all.jsonl`).",
        "",
        "| section | status | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {s.title} | {s.status} | {s.seconds:.0f} |" for s in sections]
    for s in sections:
        level = "###" if s.title[:3] in ("6.1", "6.2", "6.3", "6.4") else "##"
        if s.key == "probes":
            lines += ["", "## 6. New analyses"]
        lines += ["", f"{level} {s.title}", "", s.body]
    lines += ["", "## Observations", ""]
    if ctx.observations:
        lines += [f"- {o}" for o in dict.fromkeys(ctx.observations)]
    else:
        lines += ["_none yet_"]
    return "\n".join(lines) + "\n"


def run_results(
    out: str | Path = "results",
    quick: bool = False,
    threads: int = 2,
    models: dict[str, str] | None = None,
    data_dir: str | Path = "data/tokens",
    heldout_dir: str | Path = "data/heldout",
    bounds: Bounds | None = None,
    only: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
    reuse: bool = False,
) -> Path:
    """Run every section and write ``out/RESULTS.md``; returns its path.

    models: variant -> shipped name or checkpoint folder (default: the four shipped models).
    bounds: overrides the ``quick``/full bounds. only: run just these section keys (the others are
    listed as not run). reuse: keep a module's outputs from an earlier run with the same command
    (see `run_module`) instead of recomputing them.
    """
    import matplotlib
    import torch
    from threadpoolctl import threadpool_limits

    matplotlib.use("Agg")
    torch.set_num_threads(max(1, threads))
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bounds = bounds or (QUICK if quick else FULL)
    models = dict(models or SHIPPED)
    log(f"held-out text from {data_dir} -> {heldout_dir}")
    texts = heldout_texts(data_dir, heldout_dir)
    if bounds.quick_docs > 0:
        texts = excerpt_files(texts, out / "heldout_quick", bounds.quick_docs, bounds.quick_chars)
    ctx = Context(out, models, texts, bounds, threads, quick, reuse)
    stats = text_stats(texts)
    header = {
        "command": "python -m analyses.results " + shlex.join(list(argv))
        if argv is not None else f"analyses.results.run_results(out={str(out)!r}, quick={quick})",
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall": 0.0,
    }
    sections = [Section(key, title) for key, title, _ in SECTIONS]
    fns = {key: fn for key, _, fn in SECTIONS}
    path = out / "RESULTS.md"

    def write(finished: bool) -> None:
        header["wall"] = time.time() - start
        write_text_atomic(path, render(ctx, sections, header, stats, finished))

    # The loss table runs last: it reads the cards, which `training.ship` may still be rewriting.
    order = sorted(sections, key=lambda s: s.key == "loss")
    with threadpool_limits(limits=max(1, threads)):
        for s in order:
            if only is not None and s.key not in only:
                s.status, s.body = "not run", "_not run (`--only`)_"
                continue
            log(f"section {s.title}")
            t0 = time.time()
            try:
                s.body = fns[s.key](ctx)
                s.status = "ok"
            except Exception as e:  # report and go on: one broken module must not sink the rest
                tb = traceback.format_exc()
                log(f"section {s.title} failed:\n{tb}")
                s.status = "skipped"
                s.body = (
                    f"**Skipped**: the analysis failed with `{type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}` (traceback in the run's log)."
                )
            s.seconds = time.time() - t0
            log(f"section {s.title}: {s.status} in {s.seconds:.0f} s")
            write(False)
    write(True)
    write_json_atomic(out / "results.json", {
        "command": header["command"], "wall_s": round(time.time() - start, 1), "quick": quick,
        "threads": threads, "models": models, "bounds": asdict(bounds),
        "texts": {k: str(v) for k, v in texts.items()},
        "sections": [{"key": s.key, "title": s.title, "status": s.status, "seconds": round(s.seconds, 1)} for s in sections],
        "observations": list(dict.fromkeys(ctx.observations)),
    })  # fmt: skip
    log(f"wrote {path} in {time.time() - start:.0f} s")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.results",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="results", help="output folder (default results)")
    parser.add_argument("--quick", action="store_true", help="tiny bounds: a couple of minutes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--data", default="data/tokens", help="token folder with val.bin")
    parser.add_argument("--heldout", default="data/heldout", help="where to write the held-out JSON lines")
    parser.add_argument(
        "--models-dir", default=None,
        help="take the models from DIR/bilingual-<variant> instead of the shipped ones",
    )  # fmt: skip
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep each module's outputs already under --out when its command is unchanged",
    )  # fmt: skip
    parser.add_argument("--only", nargs="+", default=None, choices=[k for k, _, _ in SECTIONS],
                        help="run only these sections")  # fmt: skip
    args = parser.parse_args(argv)
    models = None
    if args.models_dir:
        models = {v: str(Path(args.models_dir) / name) for v, name in SHIPPED.items()
                  if (Path(args.models_dir) / name).is_dir()}  # fmt: skip
        if not models:
            parser.error(f"{args.models_dir}: no bilingual-<variant> folders")
    run_results(
        args.out, args.quick, args.threads, models, args.data, args.heldout,
        only=args.only, argv=sys.argv[1:] if argv is None else argv, reuse=args.reuse,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "FULL", "QUICK", "SECTIONS", "Bounds", "chinese_fraction", "docs_for_bytes", "excerpt_files",
    "heldout_texts", "main", "run_results",
]  # fmt: skip
