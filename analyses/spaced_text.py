"""Spaced-text plots (§3.2 of the learned-increments post): characters drawn at their learned cumulative positions.

A character's increment is the sum of its bytes' δ; one row per layer for per-layer models (one
row otherwise); rows scaled by their own mean increment (``--scale row``), all on one scale
(``--scale shared``), or both (default). Writes ``spaced_text_{row,shared}.{png,svg}`` and an
interactive ``spaced_text.html`` (hover: bytes, δ, position), and prints (and writes as
``spaced_text_gaps.csv``) a table of each row's mean increments and its largest gaps. Drawing lives in `lens_positions.plots`.

Per-head models: δ averaged over heads unless ``--head H``.

Pretrained rotary models (``--model smollm2-135m-per-layer``, ``smollm2-135m`` or a Hugging Face
folder) are drawn by token: each token at the running sum of its δ after the BOS (a character the
tokenizer splits over several tokens is one unit, its tokens' δ summed), spaces shown as ``·``.

Command::

    python -m analyses.spaced_text --out out/spaced_text
    python -m analyses.spaced_text --model bilingual-per-layer --text "New York is big." --scale row
    python -m analyses.spaced_text --model smollm2-135m-per-layer --out results/spaced_text/smollm2-135m-per-layer
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyses import _common
from analyses._common import HookSpec, InputError, Result
from lens_positions import HookedIncrementTransformer
from lens_positions.plots import (
    DEFAULT_SENTENCES,
    SpacedText,
    plot_spaced_text,
    spaced_text_data,
    spaced_text_html,
)
from lens_positions.spaced_data import token_spaced_text_data
from lens_positions.subject import subject_of


def spaced_texts(
    model: HookedIncrementTransformer,
    texts: Sequence[str] = DEFAULT_SENTENCES,
    head: int | None = None,
    fwd_hooks: HookSpec = None,
) -> list[SpacedText]:
    """`SpacedText` data of each text (see `lens_positions.plots.spaced_text_data`); by token for
    a pretrained rotary model (`lens_positions.spaced_data.token_spaced_text_data`)."""
    if subject_of(model).unit == "token":
        if head is not None:
            raise InputError("--head: pretrained rotary models have no per-head rates")
        return [token_spaced_text_data(model, t, fwd_hooks=fwd_hooks) for t in texts]
    return [spaced_text_data(model, t, head=head, fwd_hooks=fwd_hooks) for t in texts]


def gap_table(data: Sequence[SpacedText], top: int = 5) -> pd.DataFrame:
    """Per text and row: number of characters, mean δ per byte, mean character increment, and the
    ``top`` largest character increments as ``before→char`` pairs (the gap opens before ``char``).
    Token data (``unit="token"``): tokens and units (a character split over several tokens is one
    unit), mean δ per token, mean unit increment, gaps by unit."""
    records = []
    for k, d in enumerate(data):
        unit, per = ("unit", "token") if d.unit == "token" else ("char", "byte")
        for r, label in enumerate(d.rows):
            inc = d.char_increments[r]
            order = (
                np.argsort(-inc[1:], kind="stable")[:top] + 1
            )  # the first gap follows the separator
            gaps = ", ".join(
                f"{_show(d.chars[i - 1])}→{_show(d.chars[i])} {inc[i]:.2f}" for i in order
            )
            sizes = {"chars": len(d.chars)} if d.unit != "token" else {
                "tokens": d.byte_deltas.shape[1], "units": len(d.chars)
            }  # fmt: skip
            records.append(
                {
                    "text": k,
                    "layer": label,
                    **sizes,
                    f"delta_per_{per}": float(d.byte_deltas[r].mean()),
                    f"{unit}_increment": float(inc.mean()),
                    "largest_gaps": gaps,
                }
            )
    return pd.DataFrame(records)


def _show(ch: str) -> str:
    """A unit in the gap table: spaces as ␣, newlines as ↵ (a token's each character so)."""
    return "".join({" ": "␣", "\n": "↵"}.get(c, c) for c in ch)


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text: list[str] | None = None
    text_file: list[str] = field(default_factory=list)
    max_docs: int = 4
    max_chars: int = 120
    scale: str = "both"
    head: int | None = None
    show_bytes: bool = False
    top: int = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.spaced_text", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/spaced_text")
    parser.add_argument(
        "--text", action="append", default=None,
        help="a text to draw (repeatable; default: the two example sentences)",
    )  # fmt: skip
    parser.add_argument(
        "--text-file", nargs="*", default=[], help="draw the start of each document of these files"
    )
    parser.add_argument(
        "--max-docs", type=int, default=4, help="documents taken from --text-file (default 4)"
    )
    parser.add_argument(
        "--max-chars", type=int, default=120, help="characters drawn per document (default 120)"
    )
    parser.add_argument("--scale", choices=["row", "shared", "both"], default="both")
    parser.add_argument(
        "--head", type=int, default=None,
        help="per-head models: draw this head (default: mean over heads)",
    )  # fmt: skip
    parser.add_argument(
        "--show-bytes", action="store_true", help="tick every byte's position under each row"
    )
    parser.add_argument("--top", type=int, default=5, help="largest gaps listed per row (default 5)")
    return parser


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """The texts at their learned positions: figures spaced_text_{row,shared}, the hover page
    spaced_text.html and the table spaced_text_gaps (`gap_table`)."""
    p = params
    texts = list(p.text or [])
    if p.text_file:
        docs = _common.read_texts(p.text_file, max_docs=p.max_docs)
        texts += [d[: p.max_chars].strip() or d[: p.max_chars] for d in docs]
    texts = texts or list(DEFAULT_SENTENCES)
    data = spaced_texts(model, texts, head=p.head)
    scales = ("row", "shared") if p.scale == "both" else (p.scale,)
    if subject_of(model).unit == "token":
        title = f"{subject_of(model).name}, {model.increments.replace('_', '-')} increments, by token"
    else:
        title = subject_of(model).label
    note = f" ({data[0].head_note})" if data[0].head_note else ""
    gaps = gap_table(data, top=p.top)
    lines = [f"# Spaced text — {title}{note}\n", *(f"- text {k}: {t}" for k, t in enumerate(texts))]
    lines += ["", _common.markdown_table(gaps)]
    return Result(
        "\n".join(lines),
        tables={"spaced_text_gaps": gaps},
        figures={
            f"spaced_text_{scale}": plot_spaced_text(data, scale=scale, title=title, show_bytes=p.show_bytes)
            for scale in scales
        },
        pages={"spaced_text.html": spaced_text_html(data, title=title, scale=scales[0])},
        facts={"variant": title, "n_layers": model.cfg.n_layers, "texts": texts},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("spaced_text", argv)


if __name__ == "__main__":
    main()
