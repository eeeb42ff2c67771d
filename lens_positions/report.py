"""The self-contained HTML report of ``lens-positions report``.

One page, no network: the spaced-text view per layer (`lens_positions.plots`), a per-character
δ view (colour = increment relative to the layer mean; hover for bytes, δ and positions), the δ
table, and attention patterns rendered by circuitsvis with its JavaScript inlined. Sub-pages that
carry their own scripts are embedded as ``<iframe srcdoc>`` so their styles and scripts stay apart.
"""

from __future__ import annotations

import html
from pathlib import Path

import torch

from lens_positions.atomic import write_text_atomic
from lens_positions.model import HookedIncrementTransformer
from lens_positions.summary import TextIncrements, context_snippet

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
.row{margin:4px 0;line-height:2.1;font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei",monospace}
.row .lab{display:inline-block;width:70px;color:#666;font-size:12px}
.c{padding:2px 1px;border-radius:3px;cursor:default;white-space:pre}
iframe{width:100%;border:1px solid #ddd}
.note{color:#666;font-size:13px}
"""


def _colour(rel: float) -> str:
    """Blue for compressed (relative increment < 1), red for stretched (> 1), white at the mean."""
    x = max(-1.0, min(1.0, (rel - 1.0)))
    if x >= 0:
        return f"rgb(255,{int(255 - 150 * x)},{int(255 - 150 * x)})"
    return f"rgb({int(255 + 150 * x)},{int(255 + 150 * x)},255)"


def delta_view(result: TextIncrements) -> str:
    """Per-character δ rows, one per layer, coloured by relative increment, hover for detail."""
    rows = []
    flat_d = result.deltas.mean(-1) if result.deltas.ndim == 3 else result.deltas
    flat_p = result.positions.mean(-1) if result.positions.ndim == 3 else result.positions
    for layer in range(flat_d.shape[0]):
        cells = [f'<span class="lab">L{layer}</span>']
        for k, span in enumerate(result.chars):
            if span.text == "<sep>":
                continue
            byte_ids = result.tokens[span.start : span.end].tolist()
            deltas = " ".join(f"{float(d):.3f}" for d in flat_d[layer, span.start : span.end])
            tip = (
                f"{span.text!r} bytes {' '.join(f'{b:02x}' for b in byte_ids)}\nδ {deltas}\n"
                f"relative increment {float(result.char_increments[layer, k]):.2f}\n"
                f"position {float(flat_p[layer, span.end - 1]):.2f}"
            )
            shown = "⏎" if span.text == "\n" else span.text
            cells.append(
                f'<span class="c" style="background:{_colour(float(result.char_increments[layer, k]))}" '
                f'title="{html.escape(tip, quote=True)}">{html.escape(shown)}</span>'
            )
        rows.append('<div class="row">' + "".join(cells) + "</div>")
    return "\n".join(rows)


def delta_table(result: TextIncrements) -> str:
    d = result.deltas.mean(-1) if result.deltas.ndim == 3 else result.deltas
    head = "<tr><th>layer</th><th>mean δ</th><th>std</th><th>min</th><th>max</th><th>strongest boundaries</th><th>most compressed spans</th></tr>"
    body = []
    for s in result.layers:
        row = d[s.layer]
        bounds = "<br>".join(html.escape(f"{context_snippet(result.chars, i, 6)} ×{r:.2f}") for i, r in s.boundaries[:3])
        spans = "<br>".join(
            html.escape("«" + "".join(c.text for c in result.chars[a:b]) + f"» ×{m:.2f}") for a, b, m in s.compressed
        ) or "—"
        body.append(
            f"<tr><td>L{s.layer}</td><td>{s.mean_delta:.3f}</td><td>{float(row.std()):.3f}</td>"
            f"<td>{float(row.min()):.3f}</td><td>{float(row.max()):.3f}</td><td>{bounds}</td><td>{spans}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _iframe(page: str, height: int) -> str:
    return f'<iframe height="{height}" srcdoc="{html.escape(page, quote=True)}"></iframe>'


def attention_page(model: HookedIncrementTransformer, tokens: torch.Tensor) -> str:
    """circuitsvis attention patterns of every layer and head, JavaScript inlined (offline)."""
    import circuitsvis

    _, cache = model.run_with_cache(tokens[None], names_filter=lambda n: n.endswith("hook_pattern"), return_type=None)
    patterns = torch.cat([cache["pattern", layer][0] for layer in range(model.cfg.n_layers)]).cpu()
    names = [f"L{layer}H{h}" for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    vis = circuitsvis.attention.attention_heads(
        attention=patterns, tokens=model.to_str_tokens(tokens), attention_head_names=names
    )
    return "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + vis.local_src + "</body></html>"


def build_report(
    model: HookedIncrementTransformer, result: TextIncrements, model_name: str, attention: bool = True
) -> str:
    """The whole report page as a string."""
    from lens_positions.plots import spaced_text_data, spaced_text_html

    first_chunk = model.to_token_chunks(result.text)[0][0]
    first_text = model.to_string(first_chunk[1:])
    note = "" if result.n_chunks == 1 else (
        f'<p class="note">The text was split into {result.n_chunks} chunks of at most '
        f"{model.cfg.n_ctx} bytes; the spaced-text and attention views show the first chunk.</p>"
    )
    spaced = spaced_text_html(spaced_text_data(model, first_text), title="Learned positions per layer")
    sections = [
        f"<h1>lens-positions report — {html.escape(model_name)} ({html.escape(model.cfg.variant_name)})</h1>",
        f'<p class="note">{result.n_text_chars} characters, {result.n_text_bytes} bytes. '
        "δ is each byte's learned increment; a character's increment is the sum of its bytes' δ, "
        "shown relative to the layer's mean (×1.00 = average spacing).</p>",
        note,
        "<h2>Spaced text</h2>",
        _iframe(spaced, 80 + 45 * model.cfg.n_layers + 60),
        "<h2>Per-character increments</h2>",
        '<p class="note">Red: further apart than average (a boundary); blue: packed closer. Hover for bytes, δ and position.</p>',
        delta_view(result),
        "<h2>δ per layer</h2>",
        delta_table(result),
    ]
    if attention:
        sections += [
            "<h2>Attention patterns</h2>",
            _iframe(attention_page(model, first_chunk), 900),
        ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lens-positions report</title>"
        f"<style>{_STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>"
    )


def write_report(page: str, path: str | Path) -> Path:
    """Write the page atomically: a reader never sees half a report, an old one stays on failure."""
    return write_text_atomic(path, page)
