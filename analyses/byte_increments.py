"""δ per byte category (§3.1 of the learned-increments post), in context over real text and from byte identity alone.

Categories: a-z; A-Z; digits; Chinese lead bytes 0xE4-0xE9; UTF-8 continuation bytes 0x80-0xBF;
space; sentence punctuation ``. ! ?``; other punctuation ``, ; : -``; newline; the separator.

Two sources of δ:

- ``context``: the model runs over real text (character-aligned windows, separator first); each
  byte's δ is averaged over its occurrences, per reported layer (every layer of a per-layer model;
  one ``shared`` row otherwise). A category's ``min``/``max`` are over the per-byte means of the
  category's bytes that occur; ``mean`` is over all occurrences of the category (frequent bytes
  weigh more); ``byte_mean`` is the unweighted mean of the per-byte means. The separator's δ is
  measured where the analysis puts it, at the start of every window.
- ``identity``: δ of every byte from its identity alone (`model.byte_deltas()`): the shared or
  frozen table, or a per-layer model's layer 0 (whose input is the embedding). Here ``min``,
  ``max`` and ``mean`` are over all bytes of the category (``mean == byte_mean``), as published.

Per-head models: ``head = "mean"`` rows use δ averaged over heads; ``per_head=True`` adds one row
per head. The published numbers (§3.1) appear in the ``reference`` column of the shared model's
and a per-layer model's L0 rows (non-per-head models).

A pretrained rotary model (``--model smollm2-135m-per-layer``) has BPE tokens: ``run`` hands it over
to `analyses.token_increments` (δ per token category) over the same documents.

Command::

    python -m analyses.byte_increments [--model bilingual-shared] [--text-file FILE ...] \\
        [--max-docs 200] --out out/byte_increments
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from analyses import _common, token_increments
from analyses._common import (
    HookSpec,
    Result,
    char_windows,
    delta_rows,
    head_axis,
    run_batches,
    window_limit,
)
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer
from lens_positions.subject import subject_of

#: Byte categories of §3.1, in the order of the published table.
BYTE_CATEGORIES: dict[str, list[int]] = {
    "a-z": list(range(ord("a"), ord("z") + 1)),
    "A-Z": list(range(ord("A"), ord("Z") + 1)),
    "digits": list(range(ord("0"), ord("9") + 1)),
    "CJK lead 0xE4-0xE9": list(range(0xE4, 0xEA)),
    "continuation 0x80-0xBF": list(range(0x80, 0xC0)),
    "space": [ord(" ")],
    ". ! ?": [ord("."), ord("!"), ord("?")],
    ", ; : -": [ord(","), ord(";"), ord(":"), ord("-")],
    "newline": [ord("\n")],
    "separator": [SEPARATOR_ID],
}

#: Published values (§3.1), as "min-max (mean)" or a single value.
PUBLISHED: dict[str, dict[str, str]] = {
    "shared": {
        "a-z": "0.68-0.96 (0.79)",
        "continuation 0x80-0xBF": "0.73-0.86 (0.80)",
        "CJK lead 0xE4-0xE9": "0.84-0.98 (0.92)",
        "space": "1.05",
        "A-Z": "1.01-1.29 (1.10)",
        ". ! ?": "1.10-1.29 (1.18)",
        "newline": "2.12",
        "separator": "2.90",
    },
    "L0": {
        "a-z": "1.21-2.53 (1.64)",
        "continuation 0x80-0xBF": "1.57-2.08 (1.79)",
        "CJK lead 0xE4-0xE9": "2.04-2.72 (2.43)",
        "A-Z": "2.87-9.98 (9.52)",
        ". ! ?": "9.80-9.98 (9.90)",
        "separator": "9.82",
        "space": "9.99",
        "newline": "9.99",
    },
}


@dataclass
class ByteDeltaStats:
    """Sums of δ per reported layer, byte and head over real text.

    sums: [n_rows, d_vocab, n_heads_out] (n_heads_out = 1 unless per-head rates).
    counts: occurrences of each token id [d_vocab].
    rows: row labels (``L0``..., or ``shared``/``none``).
    """

    rows: list[str]
    sums: Float[np.ndarray, "rows vocab heads"]
    counts: Int[np.ndarray, " vocab"]

    def means(self) -> Float[np.ndarray, "rows vocab heads"]:
        """Mean δ of every byte over its occurrences (NaN for bytes never seen)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / np.where(self.counts > 0, self.counts, np.nan)[None, :, None]


def collect_context_deltas(
    model: HookedIncrementTransformer,
    texts: Sequence[str],
    max_tokens: int | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> ByteDeltaStats:
    """Run every text (in windows of at most ``max_tokens``, default min(n_ctx, 512), separator
    first) and sum each byte's δ per reported layer and head."""
    limit = window_limit(model, max_tokens)
    rows = delta_rows(model)
    windows = [w for d, text in enumerate(texts) for w in char_windows(text, limit, d)]
    token_lists = [w.tokens for w in windows]
    n_out = model.cfg.n_delta_outputs
    vocab = model.cfg.d_vocab
    sums = np.zeros((len(rows), vocab, n_out))
    counts = np.zeros(vocab, dtype=np.int64)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    for idx, lengths, captured in run_batches(
        model, token_lists, names, batch_size, fwd_hooks, progress=progress, desc="byte δ"
    ):
        for row, i in enumerate(idx):
            n = int(lengths[row])
            ids = np.asarray(token_lists[i])
            counts += np.bincount(ids, minlength=vocab)
            for r, name in enumerate(names):
                d = head_axis(captured[name][row, :n], n_out).numpy()  # [pos, heads]
                np.add.at(sums[r], ids, d)
    return ByteDeltaStats([label for _, label in rows], sums, counts)


def identity_deltas(
    model: HookedIncrementTransformer,
) -> tuple[str, Float[np.ndarray, "vocab heads"]]:
    """δ of every token id from its identity alone, with its row label.

    Shared/frozen models: the table every layer uses (``shared``); per-layer models: layer 0
    (``L0``), whose increment MLP reads the embedding; ``none``: all ones.
    """
    table = model.byte_deltas().detach().float().cpu()
    return delta_rows(model)[0][1], head_axis(table, model.cfg.n_delta_outputs).numpy().astype(
        np.float64
    )


def _category_rows(
    per_byte: Float[np.ndarray, " vocab"],
    counts: Int[np.ndarray, " vocab"] | None,
    sums: Float[np.ndarray, " vocab"] | None,
) -> list[dict]:
    out = []
    for name, ids in BYTE_CATEGORIES.items():
        ids = [i for i in ids if i < len(per_byte)]
        seen = ids if counts is None else [i for i in ids if counts[i] > 0]
        vals = per_byte[seen]
        rec = {"category": name, "bytes": len(seen)}
        if len(seen) == 0:
            rec.update(min=np.nan, max=np.nan, mean=np.nan, byte_mean=np.nan, occurrences=0)
        else:
            rec.update(min=float(vals.min()), max=float(vals.max()), byte_mean=float(vals.mean()))
            if counts is None:
                rec.update(mean=float(vals.mean()), occurrences=np.nan)
            else:
                n = int(counts[seen].sum())
                rec.update(mean=float(sums[seen].sum() / n), occurrences=n)
        out.append(rec)
    return out


def byte_increment_table(
    model: HookedIncrementTransformer,
    texts: Sequence[str] | None = None,
    identity: bool = True,
    per_head: bool = False,
    max_tokens: int | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The per-category δ table.

    texts: real text for the ``context`` rows (None: identity rows only).
    identity: add the ``identity`` rows (`model.byte_deltas()`; the hooks do not apply to them).
    per_head: for per-head models, one row per head besides the head mean.
    Returns columns: source, layer, head, category, bytes, min, max, mean, byte_mean, occurrences,
    reference.
    """
    records: list[dict] = []
    n_out = model.cfg.n_delta_outputs
    heads: list[str | int] = ["mean"] + (list(range(n_out)) if per_head and n_out > 1 else [])

    def add(
        source: str,
        label: str,
        means: np.ndarray,
        counts: np.ndarray | None,
        sums: np.ndarray | None,
    ) -> None:
        # means/sums: [vocab, heads]
        for h in heads:
            m = means.mean(-1) if h == "mean" else means[:, h]
            s = None if sums is None else (sums.mean(-1) if h == "mean" else sums[:, h])
            for rec in _category_rows(m, counts, s):
                ref = PUBLISHED.get(label, {}).get(rec["category"]) if n_out == 1 else None
                records.append(
                    {"source": source, "layer": label, "head": str(h), **rec, "reference": ref}
                )

    if texts is not None:
        stats = collect_context_deltas(model, texts, max_tokens, batch_size, fwd_hooks, progress)
        means = stats.means()
        for r, label in enumerate(stats.rows):
            add("context", label, means[r], stats.counts, stats.sums[r])
    if identity:
        label, table = identity_deltas(model)
        add("identity", label, table, None, None)
    cols = [
        "source",
        "layer",
        "head",
        "category",
        "bytes",
        "min",
        "max",
        "mean",
        "byte_mean",
        "occurrences",
        "reference",
    ]
    return pd.DataFrame(records, columns=cols)


def plot_byte_increments(table: pd.DataFrame, title: str = ""):
    """Bar chart: mean δ per category, one group of bars per row label, min-max as error bars;
    one panel per source (context, identity). Head-mean rows only. Returns a Figure."""
    from matplotlib.figure import Figure

    table = table[table["head"] == "mean"]
    sources = list(dict.fromkeys(table["source"]))
    cats = list(BYTE_CATEGORIES)
    fig = Figure(figsize=(12, 3.6 * len(sources)))
    axes = fig.subplots(len(sources), 1, squeeze=False)[:, 0]
    for ax, source in zip(axes, sources, strict=True):
        sub = table[table["source"] == source]
        labels = list(dict.fromkeys(sub["layer"]))
        width = 0.8 / len(labels)
        for k, label in enumerate(labels):
            rows = sub[sub["layer"] == label].set_index("category").reindex(cats)
            x = np.arange(len(cats)) + (k - (len(labels) - 1) / 2) * width
            mean = rows["mean"].to_numpy(float)
            err = np.vstack(
                [mean - rows["min"].to_numpy(float), rows["max"].to_numpy(float) - mean]
            )
            ax.bar(
                x,
                mean,
                width,
                label=label,
                yerr=np.clip(np.nan_to_num(err), 0, None),  # float error can put the mean past a bound
                capsize=1.5,
                error_kw={"lw": 0.6},
            )
        ax.set_xticks(np.arange(len(cats)), cats, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("δ")
        ax.set_title(f"{title} — {source}" if title else source, fontsize=10)
        ax.legend(fontsize=7, ncols=min(len(labels), 8))
        ax.axhline(1.0, color="0.6", lw=0.6, ls="--")
    fig.tight_layout()
    return fig


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
    source: str | None = None
    max_docs: int | None = None
    max_tokens: int | None = None
    no_identity: bool = False
    per_head: bool = False
    batch_size: int = 8
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.byte_increments", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/byte_increments")
    parser.add_argument(
        "--text-file", nargs="*", default=None,
        help="plain-text or .jsonl files for the in-context rows (default: the shipped held-out "
        "sample; none: identity rows only)",
    )  # fmt: skip
    parser.add_argument("--source", default=None, help='keep only .jsonl rows with this "source"')
    parser.add_argument("--max-docs", type=int, default=None, help="documents to read at most")
    parser.add_argument(
        "--max-tokens", type=int, default=None,
        help="window size (default min(n_ctx, 512); a pretrained rotary model: tokens after BOS, default 256)",
    )
    parser.add_argument("--no-identity", action="store_true", help="skip the byte-identity rows")
    parser.add_argument(
        "--per-head", action="store_true", help="per-head models: one row per head too"
    )
    return parser


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """`byte_increment_table` over the files' documents; table byte_increments and its figure.

    A pretrained rotary bridge (unit "token", `lens_positions.subject`) has BPE tokens, not bytes: it
    is handed over to `analyses.token_increments` (δ per token category) over the same documents
    (``--max-tokens``: tokens per window after BOS, default 256); identity rows, which need a
    byte vocabulary, and ``--per-head`` (bridges have one δ per layer) have no counterpart there.
    """
    p = params
    files = _common.default_text_files() if p.text_file is None else p.text_file
    if subject_of(model).unit == "token":
        if p.per_head or not files:
            raise _common.InputError(
                "a pretrained rotary model has BPE tokens and one δ per layer: byte-identity rows "
                "and --per-head do not apply; for δ per token category give text files or run "
                "`python -m analyses.token_increments`"
            )
        texts = _common.read_texts(files, p.source, p.max_docs)
        return token_increments.hand_over(model, "byte_increments", texts, ", ".join(map(str, files)),
                                          p.max_tokens, p.batch_size,
                                          "Not run: the byte-identity rows (a byte vocabulary). ")  # fmt: skip
    texts = _common.read_texts(files, p.source, p.max_docs) if files else None
    if texts is not None and not texts:
        raise _common.InputError("the text files hold no documents")
    table = byte_increment_table(
        model, texts, identity=not p.no_identity, per_head=p.per_head, max_tokens=p.max_tokens,
        batch_size=p.batch_size, progress=p.progress,
    )  # fmt: skip
    if table.empty:
        raise _common.InputError("nothing to report: give --text-file or drop --no-identity")
    variant = subject_of(model).label
    lines = [
        f"# δ per byte category — {variant}"
        + (" (head = mean: δ averaged over heads)" if model.cfg.per_head else "") + "\n"
    ]
    for source, sub in table.groupby("source", sort=False):
        shown = sub.drop(columns=["source"] if model.cfg.per_head else ["source", "head"])
        lines += [f"## {source}\n", _common.markdown_table(shown, {"occurrences": ".0f"}) + "\n"]
    return Result(
        "\n".join(lines),
        tables={"byte_increments": table},
        figures={"byte_increments": plot_byte_increments(table, variant)},
        facts={"variant": variant, "n_layers": model.cfg.n_layers,
               "documents": len(texts or []), "bytes": sum(len(t.encode("utf-8")) for t in texts or []),
               "window_tokens": window_limit(model, p.max_tokens)},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("byte_increments", argv)


if __name__ == "__main__":
    main()
