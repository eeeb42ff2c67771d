"""The spaced-text page: a self-contained interactive HTML view of `SpacedText` rows.

Inline SVG and a little JavaScript, no external resources: a hover box shows each unit's bytes,
their δ and its position, and a button switches between the two scalings of
`lens_positions.spaced_figure`. The page's style and script are files in ``assets/``
(``spaced_text.css``, ``spaced_text.js``; ``%(...)s`` marks what is filled in).
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lens_positions.atomic import atomic_path, write_text_atomic
from lens_positions.glyphs import CSS_FONTS, glyph, neighbour_room
from lens_positions.spaced_data import Scale, SpacedText
from lens_positions.spaced_figure import drawn_glyph, plot_spaced_text, row_unit_em
from lens_positions.token_units import unit_em

ASSETS = Path(__file__).with_name("assets")


@functools.cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _tooltip(data: SpacedText, row: int, index: int, sl: slice) -> str:
    ch = data.chars[index]
    if data.unit == "token":
        parts = [f"{d:.3f}" for d in data.byte_deltas[row, sl]]
        delta = " + ".join(parts) + (f" = {data.char_increments[row, index]:.3f}" if len(parts) > 1 else "")
        ids = " ".join(str(t) for t in data.unit_tokens[index]) if data.unit_tokens else ""
        return (
            f"{data.rows[row]}  {json.dumps(ch, ensure_ascii=False)}\n"
            f"token id  {ids}\n"
            f"delta     {delta}\n"
            f"position  {data.positions[row, index]:.3f}"
        )
    code = f"U+{ord(ch):04X}" if len(ch) == 1 else "invalid UTF-8"
    byte_hex = " ".join(f"{b:02X}" for b in data.char_bytes[index])
    parts = [f"{d:.3f}" for d in data.byte_deltas[row, sl]]
    delta = " + ".join(parts) + (
        f" = {data.char_increments[row, index]:.3f}" if len(parts) > 1 else ""
    )
    shown = ch if glyph(ch) == ch else repr(ch)
    label = data.rows[row] + (f" ({data.head_note})" if data.head_note else "")
    return (
        f"{label}  '{shown}'  {code}\n"
        f"bytes     {byte_hex}\n"
        f"delta     {delta}\n"
        f"position  {data.positions[row, index]:.3f}"
    )


@dataclass
class SpacedLayout:
    """Pixel layout of a `SpacedText` for both scalings, keyed ``"r"`` (per row) and ``"s"`` (shared).

    x: glyph centres [rows, chars]; fit: the room each glyph has between its neighbours where
    that may be less than its width, 0 elsewhere [rows, chars] (the page's script squeezes glyphs
    wider than their room); width: the drawing's width. Rows are ``row_px`` apart after a ``label_px`` margin for the row labels.
    """

    x: dict[str, np.ndarray]
    fit: dict[str, np.ndarray]
    width: dict[str, float]
    height: float
    row_px: float
    label_px: float
    font_px: float


def spaced_layout(data: SpacedText, font_px: float = 20.0, label_px: float = 150.0) -> SpacedLayout:
    """Where `spaced_text_html` (and the report's spaced view) draw each glyph."""
    row_px, pad_px = 1.9 * font_px, 12.0
    unit_px = row_unit_em(data) * font_px
    natural = np.array([unit_em(ch, data.unit) for ch in data.chars]) * font_px
    # A token is centred on its position like a character, but is wider: the first one starts
    # half its width after the labels' margin rather than under the label.
    start = label_px + (natural[0] / 2 if data.unit == "token" else 0.0)
    xs = {s[0]: start + data.scaled_positions(s) * unit_px for s in ("row", "shared")}
    # Estimated widths are only a guide (an "i" is narrower than an "m"): the room of every glyph
    # that might not fit is sent, and the page's script squeezes those its measured width exceeds.
    fits = {}
    for key, x in xs.items():
        room = np.stack([neighbour_room(row) for row in x])
        fits[key] = np.where(room < 1.6 * natural, room, 0.0)
    return SpacedLayout(
        x=xs,
        fit=fits,
        width={key: float(x.max()) + 2 * unit_px + pad_px for key, x in xs.items()},
        height=len(data.rows) * row_px + pad_px,
        row_px=row_px,
        label_px=label_px,
        font_px=font_px,
    )


def spaced_text_html(
    texts: SpacedText | Sequence[SpacedText],
    title: str = "Learned positions",
    scale: Scale = "row",
    font_px: float = 20.0,
) -> str:
    """A self-contained HTML page (inline SVG + JavaScript, no external resources).

    Hovering a character shows its bytes, their δ, its increment and position; a switch chooses
    per-row or shared scaling (``scale`` is the initial choice).
    """
    texts = [texts] if isinstance(texts, SpacedText) else list(texts)
    panels = []
    for k, data in enumerate(texts):
        lay = spaced_layout(data, font_px)
        xs, fits, widths, label_px, row_px = lay.x, lay.fit, lay.width, lay.label_px, lay.row_px
        height = lay.height
        slices = data.byte_slices()
        parts = [
            f'<svg class="spaced" id="panel-{k}" height="{height:.0f}" width="{widths[scale[0]]:.0f}" '
            f'data-wr="{widths["r"]:.0f}" data-ws="{widths["s"]:.0f}" role="img">'
        ]
        for r, label in enumerate(data.rows):
            y = (r + 0.7) * row_px
            name = label + (f" ({data.head_note})" if data.head_note else "")
            parts.append(
                f'<text class="lab" x="{label_px - 14:.0f}" y="{y:.1f}" text-anchor="end">{html.escape(name)}</text>'
            )
            x2 = {key: float(x[r, -1]) for key, x in xs.items()}
            parts.append(
                f'<line class="base" x1="{label_px:.1f}" x2="{x2[scale[0]]:.1f}" y1="{y + 0.3 * font_px:.1f}" '
                f'y2="{y + 0.3 * font_px:.1f}" data-x2r="{x2["r"]:.1f}" data-x2s="{x2["s"]:.1f}" stroke="#e2e2e2"/>'
            )
            for i, ch in enumerate(data.chars):
                shown, grey, factor = drawn_glyph(ch, data.unit)
                cls = "ch ws" if grey else "ch"
                size = font_px * factor
                tip = html.escape(_tooltip(data, r, i, slices[i]), quote=True)
                squeeze = "".join(
                    f' data-l{key}="{fits[key][r, i]:.1f}"' for key in xs if fits[key][r, i] > 0
                )
                parts.append(
                    f'<text class="{cls}" x="{xs[scale[0]][r, i]:.1f}" y="{y:.1f}" '
                    f'data-xr="{xs["r"][r, i]:.1f}" data-xs="{xs["s"][r, i]:.1f}"{squeeze} text-anchor="middle" '
                    f'font-size="{size:.0f}" data-tip="{tip}">{html.escape(shown)}</text>'
                )
        parts.append("</svg>")
        panels.append("\n".join(parts))
    checked = {"row": "", "shared": ""}
    checked[scale] = " checked"
    body = "\n".join(panels)
    # The texts as data for scripts reading the page; "</" is escaped so no text can end the tag.
    raw = json.dumps(
        {"texts": [d.text for d in texts], "rows": [d.rows for d in texts]}, ensure_ascii=False
    )
    raw = raw.replace("</", "<\\/")
    about = (
        "Each character sits at its learned cumulative position (a character's increment is the sum "
        "of its bytes' δ). Hover a character for its bytes, δ and position."
        if texts[0].unit != "token" else
        "Each token sits at its learned cumulative position (the running sum of the tokens' δ; a "
        "character the tokenizer splits is drawn once, with its tokens' δ summed). Hover a token for "
        "its ids, δ and position."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_asset("spaced_text.css") % {"fonts": CSS_FONTS}}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{about}</p>
<p><label><input type="radio" name="scale" value="r"{checked["row"]}> scale per row</label>
<label><input type="radio" name="scale" value="s"{checked["shared"]}> one scale</label>
<span class="note" id="scale-note"></span></p>
{body}
<div id="tip"></div>
<script type="application/json" id="spaced-text-data">{raw}</script>
<script>{_asset("spaced_text.js") % {"initial": scale[0]}}</script>
</body></html>
"""


def save_spaced_text(
    texts: SpacedText | Sequence[SpacedText],
    out_dir: str | Path,
    stem: str = "spaced_text",
    scales: Sequence[Scale] = ("row", "shared"),
    title: str | None = None,
    show_bytes: bool = False,
    dpi: int = 150,
) -> list[Path]:
    """Write ``{stem}_{scale}.png`` and ``.svg`` for each scale, and ``{stem}.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for scale in scales:
        fig = plot_spaced_text(texts, scale=scale, title=title, show_bytes=show_bytes)
        for ext in ("png", "svg"):
            path = out / f"{stem}_{scale}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
            paths.append(path)
    html = spaced_text_html(texts, title=title or "Learned positions", scale=scales[0] if scales else "row")
    paths.append(write_text_atomic(out / f"{stem}.html", html))
    return paths
