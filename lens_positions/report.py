"""The self-contained HTML report of ``lens-positions report``.

One offline page: the text drawn at its learned positions per layer (one chunk at a time), the
whole text coloured by relative increment (hover for bytes, δ, position and surprisal), the δ
table, and every head's attention pattern. The page holds the numbers once, as JSON read by
``assets/report.js``, which draws the views; nothing is fetched.

Size: δ and positions are rounded (3 and 2 decimals) and grow linearly with the text. Attention
is what grows fastest (a context's worth of query-key pairs per head per chunk, so still linear in
the number of chunks): weights are rounded to 1/255, those below `ATTENTION_FLOOR` are left out,
and each chunk's layer (all heads, lower triangles) is zlib-compressed and base64-encoded; the page
unpacks one only when it is shown. A page of text (1.2 kB, three chunks) is about 2 MB. On
SmolLM2 (30 layers x 9 heads) attention is about 2.5 MB per 512-token chunk: the same page
(430 tokens) is 3.0 MB, 5 kB of text (4 chunks) 12 MB; ``--no-attention`` leaves it out.

Pretrained rotary models (`lens_positions.token_units`) get the same page with the token as the
unit instead of the character (``unit``): spaced text by token, the text coloured token by token,
attention between tokens; with many layers the spaced view shows a selectable subset of rows.

JSON fields: ``unit`` ``"character"`` or ``"token"``; ``chars`` every unit of the token sequence
(``"<sep>"`` for the separator / BOS that starts each chunk) and ``cstart`` its first token;
``glyphs`` what the spaced view draws where it differs from the text (stand-ins, ``·`` for spaces
in tokens), by index; ``bytes`` the token ids; ``delta`` [rows][tokens] δ (head mean); ``pos``,
``inc``, ``rel`` [rows][chars] position of the last token, increment and relative increment;
``bits`` [tokens] surprisal; ``chunks`` token/unit/text-token ranges; ``spaced`` per chunk the
glyph layout of `lens_positions.plots.spaced_layout`; ``rowSets`` the row subsets the spaced view
offers (label, row indices); ``att`` [chunks][layers] packed attention.
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
from lens_positions.tokenizer import CharSpan

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
#chars.tok .c,#att-text.tok .a{box-shadow:inset -1px 0 0 #fff}
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


#: Above this many rows, the spaced view offers subsets (the most varied layers first).
MAX_SPACED_ROWS = 10


def row_sets(result: TextIncrements) -> list[dict[str, Any]]:
    """The row subsets the spaced view offers: all rows when they are few; otherwise the
    `MAX_SPACED_ROWS` - 2 layers whose δ vary most (std / mean over the text), every k-th
    layer, and all layers."""
    n = len(result.rows)
    everything = {"label": f"all {n} layers" if n > 1 else "all", "rows": list(range(n))}
    if n <= MAX_SPACED_ROWS:
        return [everything]
    k = MAX_SPACED_ROWS - 2
    spread = [s.std / s.mean_delta if s.mean_delta > 0 else 0.0 for s in result.layers]
    varied = sorted(sorted(range(n), key=lambda r: -spread[r])[:k])
    step = math.ceil(n / k)
    return [
        {"label": f"the {k} layers whose δ vary most", "rows": varied},
        {"label": f"layers 0, {step}, {2 * step}, …", "rows": list(range(0, n, step))},
        everything,
    ]


def page_data(model: HookedIncrementTransformer, result: TextIncrements, attention: list[list[str]] | None) -> dict[str, Any]:
    """Everything the page's script draws (fields in the module docstring)."""
    from lens_positions.glyphs import STANDIN_SCALE
    from lens_positions.plots import spaced_layout, spaced_text_from_spans
    from lens_positions.token_units import unit_glyph

    unit = result.unit
    flat = result.deltas.mean(-1) if result.deltas.ndim == 3 else result.deltas
    rows = [layer for layer, _ in result.rows]
    labels = [label for _, label in result.rows]
    pos_flat = result.positions.mean(-1) if result.positions.ndim == 3 else result.positions
    last_byte = [s.end - 1 for s in result.chars]
    chunks, spaced = [], []
    starts = result.chunk_starts + [len(result.tokens)]
    sep_chars = sorted(result.starts) + [len(result.chars)]
    ids = result.tokens.tolist()
    text_bytes = 0
    for k, chunk_text in enumerate(result.chunk_texts):
        t0, t1 = starts[k], starts[k + 1]
        n_bytes = t1 - t0 - 1
        chunks.append({"t0": t0, "t1": t1, "c0": sep_chars[k], "c1": sep_chars[k + 1],
                       "b0": text_bytes, "b1": text_bytes + n_bytes - 1})
        text_bytes += n_bytes
        spans = [CharSpan(s.text, s.start - t0 - 1, s.end - t0 - 1) for s in result.chars[sep_chars[k] + 1 : sep_chars[k + 1]]]
        unit_bytes = [
            bytes(ids[t0 + 1 + s.start : t0 + 1 + s.end]) if unit == "character" else s.text.encode("utf-8")
            for s in spans
        ]
        data = spaced_text_from_spans(
            chunk_text, spans, unit_bytes, flat[rows, t0 + 1 : t1].numpy(), labels, result.head_note, unit,
        )
        lay = spaced_layout(data, font_px=16.0 if unit == "token" else 20.0)
        spaced.append({
            "x": {key: _rounded(v, 1) for key, v in lay.x.items()},
            "l": {key: _rounded(v, 1) for key, v in lay.fit.items()},
            "w": {key: round(v) for key, v in lay.width.items()},
            "h": round(lay.height), "rowPx": lay.row_px, "labelPx": lay.label_px, "fontPx": lay.font_px,
        })
    starts_set = set(sep_chars)
    return {
        "unit": unit,
        "nLayers": model.cfg.n_layers,
        "nHeads": model.cfg.n_heads,
        "rows": labels,
        "headNote": result.head_note,
        "standinScale": STANDIN_SCALE,
        "chars": [s.text for s in result.chars],
        "glyphs": {
            i: unit_glyph(s.text, unit) for i, s in enumerate(result.chars)
            if i not in starts_set and unit_glyph(s.text, unit) != s.text
        },
        "cstart": [s.start for s in result.chars],
        "bytes": result.tokens.tolist(),
        "delta": _rounded(flat[rows], 3),
        "pos": _rounded(pos_flat[rows][:, last_byte], 2),
        "inc": _rounded(result.char_increments[rows], 3),
        "rel": _rounded(result.relative[rows], 2),
        "bits": _rounded(result.nats / math.log(2), 2),
        "chunks": chunks,
        "spaced": spaced,
        "rowSets": row_sets(result),
        "att": attention,
    }


def delta_table(result: TextIncrements) -> str:
    """Per reported layer: mean, spread, strongest boundaries and most compressed spans."""
    head = ("<tr><th>layer</th><th>mean δ</th><th>std</th><th>min</th><th>max</th>"
            "<th>strongest boundaries (above the mean)</th><th>most compressed spans</th></tr>")
    body = []
    for s in result.layers:
        bounds = "<br>".join(
            html.escape(f"{context_snippet(result.chars, i, 6, result.unit)} ×{r:.2f}") for i, r in s.boundaries[:3]
        )
        spans = "<br>".join(
            html.escape(f"«{span_text(result.chars, a, b, result.unit)}» ×{m:.2f}") for a, b, m in s.compressed
        )
        name = s.label if s.label.startswith("L") else "all layers"
        body.append(
            f"<tr><td>{name}</td><td>{s.mean_delta:.3f}</td><td>{s.std:.3f}</td><td>{s.min:.3f}</td>"
            f"<td>{s.max:.3f}</td><td class='text'>{bounds or '—'}</td><td class='text'>{spans or '—'}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def variant_label(model: HookedIncrementTransformer) -> str:
    """The model's variant as the report names it (``per-layer``; a pretrained rotary model:
    ``pretrained rotary, per-layer increments``)."""
    from lens_positions.subject import subject_of

    if subject_of(model).unit == "token":
        if model.increments == "none":
            return "pretrained rotary, no learned increments"
        return f"pretrained rotary, {model.increments.replace('_', '-')} increments"
    return model.cfg.variant_name


#: The page's words where the unit matters: (character views, token views).
_WORDS = {
    "character": {
        "about": "δ is each byte's learned increment. A character's <b>increment</b> is the sum "
        "of its bytes' δ; its <b>relative increment</b> divides that by its byte count times the "
        "layer's mean δ per byte, so ×1.00 is average spacing in any script, above 1 a boundary, "
        "below {below} packed close.",
        "chunks": " The text was split into {n} chunks of at most {size} bytes; each starts after a "
        "separator at position 0.",
        "spaced": "Each character sits at its learned cumulative position, one row per layer whose δ "
        "differ. Glyphs packed closer than they are wide are squeezed. Hover for bytes, δ and position.",
        "view": "Per-character increments",
        "view_note": "Red: further apart than average (a boundary); blue: packed closer. Hover for "
        "bytes, δ, position and surprisal (bits the model needed for the character).",
        "att": "bytes of the chunk, the separator first",
        "att_hover": "character below to colour the text by the attention its last byte pays to each character",
    },
    "token": {
        "about": "δ is each token's learned increment and its <b>relative increment</b> δ divided by "
        "the layer's mean δ, so ×1.00 is average spacing, above 1 a boundary, below {below} packed "
        "close. A character the tokenizer splits over several tokens is one unit: its tokens' δ "
        "summed, divided by their count times the mean.",
        "chunks": " The text was split into {n} chunks of at most {size} tokens; each starts after a "
        "BOS at position 0.",
        "spaced": "Each token sits at its learned cumulative position (the running sum of δ), one row "
        "per layer whose δ differ; · marks a space, ↵ a newline. Tokens packed closer than they are "
        "wide are squeezed. Hover for the token id, δ and position.",
        "view": "Per-token increments",
        "view_note": "Each token coloured by its relative increment. Red: further apart than average "
        "(a boundary); blue: packed closer. Hover for the token id, δ, position and surprisal (bits "
        "the model needed for the token).",
        "att": "tokens of the chunk, the BOS first",
        "att_hover": "token below to colour the text by the attention it pays to each token",
    },
}


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
    words = _WORDS[result.unit]
    text_class = "text tok" if result.unit == "token" else "text"
    size = result.window if result.unit == "token" else model.cfg.n_ctx
    chunk_note = words["chunks"].format(n=result.n_chunks, size=size) if result.n_chunks > 1 else ""
    rows_choice = ' <select id="spaced-rows"></select>' if len(row_sets(result)) > 1 else ""
    sections = [
        f"<h1>lens-positions report — {html.escape(model_name)} ({html.escape(variant_label(model))})</h1>",
        facts,
        f'<p class="note">{words["about"].format(below=COMPRESSED_BELOW)}{chunk_note}</p>',
        "<h2>Spaced text</h2>",
        f'<p class="note">{words["spaced"]}</p>',
        f'<p><select id="spaced-chunk"></select>{rows_choice} <label><input type="radio" name="scale" value="r" checked>'
        ' scale per row</label> <label><input type="radio" name="scale" value="s"> one scale</label></p>',
        '<div id="spaced"></div>',
        f"<h2>{words['view']}</h2>",
        f'<p class="note">{words["view_note"]}</p>',
        '<p><select id="chars-row"></select></p>',
        f'<div id="chars" class="{text_class}"></div>',
        "<h2>δ per layer</h2>",
        delta_table(result),
    ]
    if attention is not None:
        sections += [
            "<h2>Attention patterns</h2>",
            f'<p class="note">Rows are queries, columns keys ({words["att"]}); '
            f"colour ∝ √weight. Weights are stored rounded to 1/255 with those below {ATTENTION_FLOOR} "
            f"left out. Hover (or click to hold) a {words['att_hover']}.</p>",
            '<p><select id="att-chunk"></select> <select id="att-layer"></select> '
            '<select id="att-head"></select> <span id="att-status" class="note"></span></p>',
            '<div class="att" id="attention"><canvas id="att-canvas" width="10" height="10"></canvas>'
            f'<div id="att-text" class="{text_class}"></div></div>',
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
