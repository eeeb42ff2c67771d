"""The self-contained HTML report of ``lens-positions report``.

One offline page: the text drawn at its learned positions per layer (one chunk at a time), the
whole text coloured by relative increment (hover for bytes, δ, position and surprisal), the δ
table, and every head's attention pattern. The page holds the numbers once, as JSON read by
``assets/report.js``, which draws the views; nothing is fetched.

Size: δ and positions are rounded (3 and 2 decimals) and grow linearly with the text. Attention
is what grows fastest (a context's worth of query-key pairs per head per chunk, so still linear in
the number of chunks): weights are rounded to 1/255, those below `ATTENTION_FLOOR` are left out,
and each chunk's layer (all heads, lower triangles) is zlib-compressed and base64-encoded; the page
unpacks one only when it is shown. A page of text (1.2 kB, three chunks) is about 2 MB.

JSON fields: ``chars`` every character of the token sequence (``"<sep>"`` for the separator that
starts each chunk) and ``cstart`` its first token; ``glyphs`` the stand-in drawn for invisible
characters (by index); ``bytes`` the token ids; ``delta`` [rows][tokens] δ (head mean); ``pos``,
``inc``, ``rel`` [rows][chars] position of the last byte, increment and relative increment;
``bits`` [tokens] surprisal; ``chunks`` token/char/byte ranges; ``spaced`` per chunk the glyph
layout of `lens_positions.plots.spaced_layout`; ``att`` [chunks][layers] packed attention.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lens_positions.atomic import write_text_atomic
from lens_positions.summary import (
    COMPRESSED_BELOW,
    TextIncrements,
    context_snippet,
    header_lines,
    span_text,
)

if TYPE_CHECKING:
    from lens_positions.model import HookedIncrementTransformer

ASSETS = Path(__file__).parent / "assets"
#: Attention weights below this are stored as 0 (they are invisible in the views anyway).
ATTENTION_FLOOR = 0.01

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.note{color:#666;font-size:13px;max-width:1100px} .warn{color:#a33;font-weight:600}
.text{font-family:%(fonts)s}
#chars{font-size:17px;line-height:2.0;white-space:pre-wrap;overflow-wrap:anywhere;max-width:1100px}
#chars .c{padding:2px 0;border-radius:2px;cursor:default}
.ws{color:#999;font-size:0.6em} .cut{color:#999;padding:0 3px}
#spaced{overflow-x:auto;border:1px solid #eee;padding:4px 0}
svg text.ch{cursor:default;font-family:%(fonts)s} svg text.ch.ws{fill:#999}
svg text.ch:hover{fill:#c0392b} svg text.lab{fill:#666;font-size:12px}
#att-text{font-size:16px;line-height:1.9;white-space:pre-wrap;overflow-wrap:anywhere;max-width:760px;cursor:pointer}
#att-text .a{padding:1px 0}
.att{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
canvas{border:1px solid #ccc;image-rendering:pixelated}
#tip{position:fixed;pointer-events:none;background:#fffbe6;border:1px solid #c9b458;padding:4px 7px;
  font:12px/1.4 monospace;white-space:pre;display:none;z-index:9}
label,select{font-size:13px}
"""


class AttentionPacker:
    """Collects each chunk's attention compactly, as `compute_increments`'s ``on_pattern``.

    ``blobs[chunk][layer]``: the lower triangles of every head (head-major, query rows 0..T-1,
    keys 0..query) as bytes round(255 × weight), weights below `ATTENTION_FLOOR` set to 0, zlib'd
    and base64-encoded.
    """

    def __init__(self) -> None:
        self.blobs: list[list[str]] = []

    def __call__(self, index: int, patterns: Tensor) -> None:
        """patterns: [n_layers, n_heads, query, key] of chunk ``index``."""
        n_pos = patterns.shape[-1]
        rows, cols = torch.tril_indices(n_pos, n_pos)
        tri = patterns[..., rows, cols]  # [n_layers, n_heads, n_pos (n_pos + 1) / 2]
        q = torch.where(tri < ATTENTION_FLOOR, 0.0, tri * 255).round().clamp(0, 255).to(torch.uint8)
        while len(self.blobs) <= index:
            self.blobs.append([])
        self.blobs[index] = [
            base64.b64encode(zlib.compress(layer.contiguous().numpy().tobytes(), 6)).decode("ascii")
            for layer in q
        ]


def unpack_attention(blob: str, n_heads: int, n_pos: int) -> Tensor:
    """Inverse of `AttentionPacker` for one layer: [n_heads, query, key] weights (0 above the diagonal)."""
    raw = np.frombuffer(zlib.decompress(base64.b64decode(blob)), dtype=np.uint8)
    rows, cols = torch.tril_indices(n_pos, n_pos)
    out = torch.zeros(n_heads, n_pos, n_pos)
    out[:, rows, cols] = torch.from_numpy(raw.astype(np.float32).reshape(n_heads, -1) / 255)
    return out


def _rounded(x: Tensor | np.ndarray, digits: int) -> list[Any]:
    """Nested lists of floats with ``digits`` decimals (NaN as null) for compact JSON."""
    arr = np.asarray(x, dtype=np.float64)
    out = np.round(arr, digits).tolist()
    if np.isnan(arr).any():
        def fix(v: Any) -> Any:
            return [fix(u) for u in v] if isinstance(v, list) else (None if math.isnan(v) else v)

        out = fix(out)
    return out


def page_data(model: HookedIncrementTransformer, result: TextIncrements, attention: list[list[str]] | None) -> dict[str, Any]:
    """Everything the page's script draws (fields in the module docstring)."""
    from lens_positions.glyphs import STANDIN_SCALE, glyph
    from lens_positions.plots import spaced_layout, spaced_text_from_deltas

    flat = result.deltas.mean(-1) if result.deltas.ndim == 3 else result.deltas
    rows = [layer for layer, _ in result.rows]
    labels = [label for _, label in result.rows]
    pos_flat = result.positions.mean(-1) if result.positions.ndim == 3 else result.positions
    last_byte = [s.end - 1 for s in result.chars]
    chunks, spaced = [], []
    starts = result.chunk_starts + [len(result.tokens)]
    sep_chars = [i for i, s in enumerate(result.chars) if s.text == "<sep>"] + [len(result.chars)]
    text_bytes = 0
    for k, chunk_text in enumerate(result.chunk_texts):
        t0, t1 = starts[k], starts[k + 1]
        n_bytes = t1 - t0 - 1
        chunks.append({"t0": t0, "t1": t1, "c0": sep_chars[k], "c1": sep_chars[k + 1],
                       "b0": text_bytes, "b1": text_bytes + n_bytes - 1})
        text_bytes += n_bytes
        data = spaced_text_from_deltas(chunk_text, flat[rows, t0:t1].numpy(), labels, result.head_note)
        lay = spaced_layout(data)
        spaced.append({
            "x": {key: _rounded(v, 1) for key, v in lay.x.items()},
            "l": {key: _rounded(v, 1) for key, v in lay.fit.items()},
            "w": {key: round(v) for key, v in lay.width.items()},
            "h": round(lay.height), "rowPx": lay.row_px, "labelPx": lay.label_px, "fontPx": lay.font_px,
        })
    return {
        "nLayers": model.cfg.n_layers,
        "nHeads": model.cfg.n_heads,
        "rows": labels,
        "headNote": result.head_note,
        "standinScale": STANDIN_SCALE,
        "chars": [s.text for s in result.chars],
        "glyphs": {i: glyph(s.text) for i, s in enumerate(result.chars) if s.text != "<sep>" and glyph(s.text) != s.text},
        "cstart": [s.start for s in result.chars],
        "bytes": result.tokens.tolist(),
        "delta": _rounded(flat[rows], 3),
        "pos": _rounded(pos_flat[rows][:, last_byte], 2),
        "inc": _rounded(result.char_increments[rows], 3),
        "rel": _rounded(result.relative[rows], 2),
        "bits": _rounded(result.nats / math.log(2), 2),
        "chunks": chunks,
        "spaced": spaced,
        "att": attention,
    }


def delta_table(result: TextIncrements) -> str:
    """Per reported layer: mean, spread, strongest boundaries and most compressed spans."""
    head = ("<tr><th>layer</th><th>mean δ</th><th>std</th><th>min</th><th>max</th>"
            "<th>strongest boundaries (above the mean)</th><th>most compressed spans</th></tr>")
    body = []
    for s in result.layers:
        bounds = "<br>".join(html.escape(f"{context_snippet(result.chars, i, 6)} ×{r:.2f}") for i, r in s.boundaries[:3])
        spans = "<br>".join(html.escape(f"«{span_text(result.chars, a, b)}» ×{m:.2f}") for a, b, m in s.compressed)
        name = s.label if s.label.startswith("L") else "all layers"
        body.append(
            f"<tr><td>{name}</td><td>{s.mean_delta:.3f}</td><td>{s.std:.3f}</td><td>{s.min:.3f}</td>"
            f"<td>{s.max:.3f}</td><td class='text'>{bounds or '—'}</td><td class='text'>{spans or '—'}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def build_report(
    model: HookedIncrementTransformer,
    result: TextIncrements,
    model_name: str,
    attention: list[list[str]] | None = None,
) -> str:
    """The whole report page as a string; ``attention`` from an `AttentionPacker` (None: left out)."""
    from lens_positions.glyphs import CSS_FONTS

    data = json.dumps(page_data(model, result, attention), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # no text can end the script element
    lines = header_lines(result)
    facts = "".join(
        f'<p class="{"warn" if line.startswith("warning") else "note"}">{html.escape(line)}</p>' for line in lines
    )
    chunk_note = (
        f" The text was split into {result.n_chunks} chunks of at most {model.cfg.n_ctx} bytes; each"
        " starts after a separator at position 0." if result.n_chunks > 1 else ""
    )
    sections = [
        f"<h1>lens-positions report — {html.escape(model_name)} ({html.escape(model.cfg.variant_name)})</h1>",
        facts,
        '<p class="note">δ is each byte\'s learned increment. A character\'s <b>increment</b> is the sum '
        "of its bytes' δ; its <b>relative increment</b> divides that by its byte count times the "
        "layer's mean δ per byte, so ×1.00 is average spacing in any script, above 1 a boundary, "
        f"below {COMPRESSED_BELOW} packed close.{chunk_note}</p>",
        "<h2>Spaced text</h2>",
        '<p class="note">Each character sits at its learned cumulative position, one row per layer '
        "whose δ differ. Glyphs packed closer than they are wide are squeezed. Hover for bytes, δ and "
        "position.</p>",
        '<p><select id="spaced-chunk"></select> <label><input type="radio" name="scale" value="r" checked>'
        ' scale per row</label> <label><input type="radio" name="scale" value="s"> one scale</label></p>',
        '<div id="spaced"></div>',
        "<h2>Per-character increments</h2>",
        '<p class="note">Red: further apart than average (a boundary); blue: packed closer. Hover for '
        "bytes, δ, position and surprisal (bits the model needed for the character).</p>",
        '<p><select id="chars-row"></select></p>',
        '<div id="chars" class="text"></div>',
        "<h2>δ per layer</h2>",
        delta_table(result),
    ]
    if attention is not None:
        sections += [
            "<h2>Attention patterns</h2>",
            f'<p class="note">Rows are queries, columns keys (bytes of the chunk, the separator first); '
            f"colour ∝ √weight. Weights are stored rounded to 1/255 with those below {ATTENTION_FLOOR} "
            "left out. Hover (or click to hold) a character below to colour the text by the attention "
            "its last byte pays to each character.</p>",
            '<p><select id="att-chunk"></select> <select id="att-layer"></select> '
            '<select id="att-head"></select> <span id="att-status" class="note"></span></p>',
            '<div class="att" id="attention"><canvas id="att-canvas" width="10" height="10"></canvas>'
            '<div id="att-text" class="text"></div></div>',
        ]
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lens-positions report</title>"
        f"<style>{_STYLE % {'fonts': CSS_FONTS}}</style></head><body>" + "\n".join(sections)
        + '<div id="tip"></div>'
        + f'<script type="application/json" id="report-data">{data}</script>'
        + f"<script>{script}</script></body></html>"
    )


def write_report(page: str, path: str | Path) -> Path:
    """Write the page atomically: a reader never sees half a report, an old one stays on failure."""
    return write_text_atomic(path, page)
