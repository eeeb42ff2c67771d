"""Spaced-text plots (REFERENCE §3.2): characters drawn at their learned cumulative positions.

A character's increment is the sum of its bytes' δ; one row per layer for per-layer models (one
row otherwise); rows scaled by their own mean increment (``--scale row``), all on one scale
(``--scale shared``), or both (default). Writes ``spaced_text_{row,shared}.{png,svg}`` and an
interactive ``spaced_text.html`` (hover: bytes, δ, position), and prints a table of each row's
mean increments and its largest gaps. Drawing lives in `lens_positions.plots`.

Per-head models: δ averaged over heads unless ``--head H``.

Command::

    python -m analyses.spaced_text --model per-layer --out out/spaced_text
    python -m analyses.spaced_text --model per-layer --text "New York is big." --scale row
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyses import _common
from analyses._common import HookSpec
from lens_positions import HookedIncrementTransformer
from lens_positions.plots import DEFAULT_SENTENCES, SpacedText, save_spaced_text, spaced_text_data


def spaced_texts(
    model: HookedIncrementTransformer,
    texts: Sequence[str] = DEFAULT_SENTENCES,
    head: int | None = None,
    fwd_hooks: HookSpec = None,
) -> list[SpacedText]:
    """`SpacedText` data of each text (see `lens_positions.plots.spaced_text_data`)."""
    return [spaced_text_data(model, t, head=head, fwd_hooks=fwd_hooks) for t in texts]


def gap_table(data: Sequence[SpacedText], top: int = 5) -> pd.DataFrame:
    """Per text and row: number of characters, mean δ per byte, mean character increment, and the
    ``top`` largest character increments as ``before→char`` pairs (the gap opens before ``char``)."""
    records = []
    for k, d in enumerate(data):
        for r, label in enumerate(d.rows):
            inc = d.char_increments[r]
            order = (
                np.argsort(-inc[1:], kind="stable")[:top] + 1
            )  # the first gap follows the separator
            gaps = ", ".join(
                f"{_show(d.chars[i - 1])}→{_show(d.chars[i])} {inc[i]:.2f}" for i in order
            )
            records.append(
                {
                    "text": k,
                    "layer": label,
                    "chars": len(d.chars),
                    "delta_per_byte": float(d.byte_deltas[r].mean()),
                    "char_increment": float(inc.mean()),
                    "largest_gaps": gaps,
                }
            )
    return pd.DataFrame(records)


def _show(ch: str) -> str:
    return {" ": "␣", "\n": "↵"}.get(ch, ch)


def main(argv: Sequence[str] | None = None) -> list[SpacedText]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _common.add_common_args(parser, "out/spaced_text")
    parser.add_argument(
        "--text",
        action="append",
        default=None,
        help="a text to draw (repeatable; default: the two example sentences)",
    )
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
        "--head",
        type=int,
        default=None,
        help="per-head models: draw this head (default: mean over heads)",
    )
    parser.add_argument(
        "--show-bytes", action="store_true", help="tick every byte's position under each row"
    )
    args = parser.parse_args(argv)
    model = _common.model_from_args(args)
    texts = list(args.text or [])
    if args.text_file:
        docs = _common.read_texts(args.text_file, max_docs=args.max_docs)
        texts += [d[: args.max_chars].strip() or d[: args.max_chars] for d in docs]
    texts = texts or list(DEFAULT_SENTENCES)
    data = spaced_texts(model, texts, head=args.head)
    scales = ("row", "shared") if args.scale == "both" else (args.scale,)
    title = model.cfg.variant_name
    paths = save_spaced_text(data, args.out, scales=scales, title=title, show_bytes=args.show_bytes)
    note = f" ({data[0].head_note})" if data[0].head_note else ""
    print(f"# Spaced text — {title}{note}\n")
    for k, t in enumerate(texts):
        print(f"- text {k}: {t}")
    print()
    print(_common.markdown_table(gap_table(data)) + "\n")
    print("wrote " + ", ".join(str(p) for p in paths))
    return data


if __name__ == "__main__":
    main()
