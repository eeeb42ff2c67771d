"""Spaced-text plots: text drawn with every character at its learned cumulative position.

A character's increment is the sum of its bytes' δ (a Chinese character is three bytes), and its
position is the running sum of character increments, i.e. the learned position of its last byte
(counted from the separator that precedes the text). Per-layer models get one row per layer;
models whose δ is the same in every layer (none, shared, frozen) get one row.

Two scalings (``scale``):

- ``"row"``: each row divided by its own mean character increment, so every row has the same mean
  spacing and only the *relative* gaps show (the post's per-layer figure);
- ``"shared"``: every row of a panel divided by one number (the mean over all its rows), so rows
  with smaller increments are visibly shorter (the post's "same scale" figure).

Outputs: a matplotlib `Figure` (save as PNG/SVG) and a self-contained interactive HTML page
(inline SVG and a little JavaScript, no external resources) whose hover box shows each character's
bytes, their δ and its position, with a button to switch scalings.

>>> data = spaced_text_data(model, "New York is big.")      # doctest: +SKIP
>>> fig = plot_spaced_text([data], scale="row")               # doctest: +SKIP
>>> html = spaced_text_html([data])                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from jaxtyping import Float

from lens_positions.atomic import atomic_path, write_text_atomic
from lens_positions.glyphs import (
    CSS_FONTS,
    STANDIN_SCALE,
    fit_widths,
    font_covers,
    glyph,
    is_wide,
    neighbour_room,
)
from lens_positions.token_units import is_blank, unit_em, unit_glyph
from lens_positions.tokenizer import CharSpan, char_spans, encode

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lens_positions.model import HookedIncrementTransformer

Scale = Literal["row", "shared"]

#: Default example sentences: an English sentence about a person with commas and a hyphenated
#: word, and a short Chinese definition ("Photosynthesis is the process by which plants use
#: sunlight to make nutrients.").
DEFAULT_SENTENCES: tuple[str, ...] = (
    "Ada Lovelace, the daughter of Lord Byron, wrote a step-by-step method for Babbage's engine.",
    "光合作用是植物利用阳光制造养分的过程。",
)

#: Families tried first, in order (checked against matplotlib's font list).
CJK_FAMILIES: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Heiti SC",
    "Arial Unicode MS",
)
#: File-name fragments of CJK fonts, for fonts installed after matplotlib built its font cache.
_CJK_FILE_HINTS = (
    "notosanscjk",
    "notoserifcjk",
    "sourcehan",
    "wqy",
    "droidsansfallback",
    "uming",
    "ukai",
    "simhei",
    "msyh",
    "pingfang",
)

# ------------------------------------------------------------------------------------------ rows
def increments_of(model: HookedIncrementTransformer) -> tuple[str, bool]:
    """(increments variant, per-head) of a byte model or a pretrained rotary bridge (whose
    TransformerLens config knows neither: its graft names the variant, and it has no per-head rates)."""
    graft = getattr(model, "increment_graft", None)
    if graft is not None:
        return graft.increments, False
    return model.cfg.increments, bool(model.cfg.per_head)


def delta_rows(model: HookedIncrementTransformer) -> list[tuple[int, str]]:
    """The layers whose δ differ, as ``(layer index, label)``.

    Per-layer models: every layer, labelled ``L0``, ``L1``, ... Other variants compute one δ that
    every layer uses, so one row, labelled ``shared`` (shared or frozen table) or ``none``.
    """
    increments = increments_of(model)[0]
    if increments == "per_layer":
        return [(layer, f"L{layer}") for layer in range(model.cfg.n_layers)]
    return [(0, "shared" if increments == "shared" else "none")]


# ------------------------------------------------------------------------------------------ fonts
@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """Name of a font family with CJK glyphs that matplotlib can use, or None.

    Looks through matplotlib's font list for known CJK families, then through the system's font
    files for known CJK file names (registering them: matplotlib's cache may predate them).
    """
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in names:
            return family
    known_files = {f.fname for f in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in known_files and any(h in Path(path).name.lower() for h in _CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
    names = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in names:
            return family
    return None


def _font_families(texts: Sequence[SpacedText]) -> list[str]:
    """Font list for matplotlib: a CJK family first when any text needs one, then DejaVu Sans."""
    needs_cjk = any(is_wide(ch) for t in texts for unit in t.chars for ch in unit)
    if not needs_cjk:
        return ["DejaVu Sans"]
    family = find_cjk_font()
    if family is None:
        warnings.warn(
            "no CJK font found (install fonts-noto-cjk or fonts-wqy-microhei): Chinese characters "
            "will be drawn as empty boxes",
            stacklevel=3,
        )
        return ["DejaVu Sans"]
    return [family, "DejaVu Sans"]


# ------------------------------------------------------------------------------------------ data
@dataclass
class SpacedText:
    """Per-unit learned positions of one text, one row per reported layer.

    The unit is a character (byte models) or a token (pretrained rotary models, ``unit="token"``:
    one token, or the few tokens of a character the tokenizer splits; `lens_positions.token_units`).
    Read "byte" below as "token" for those.

    chars: the text's units (the separator / BOS the model saw first is not included).
    char_bytes: each unit's UTF-8 bytes.
    rows: row labels (``L0``... or ``shared``/``none``), with ``head_note`` saying how per-head
        increments were reduced (``""``, ``"head mean"`` or ``"head h"``).
    byte_deltas: δ of every byte [n_rows, n_bytes] (the separator's δ dropped).
    char_increments: sum of each character's bytes' δ [n_rows, n_chars].
    positions: running sums of ``char_increments`` [n_rows, n_chars], the learned position of each
        character's last byte relative to the separator.
    """

    text: str
    chars: list[str]
    char_bytes: list[bytes]
    rows: list[str]
    head_note: str
    byte_deltas: Float[np.ndarray, "rows bytes"]
    char_increments: Float[np.ndarray, "rows chars"]
    positions: Float[np.ndarray, "rows chars"]
    unit: str = "character"
    unit_tokens: list[list[int]] = field(default_factory=list)  # each unit's token ids (tokens only)

    def byte_slices(self) -> list[slice]:
        """For each unit, the slice of ``byte_deltas`` columns that are its bytes (tokens)."""
        sizes = [len(t) for t in self.unit_tokens] if self.unit_tokens else [len(b) for b in self.char_bytes]
        out, i = [], 0
        for n in sizes:
            out.append(slice(i, i + n))
            i += n
        return out

    def units(self, scale: Scale) -> Float[np.ndarray, "rows 1"]:
        """The number each row is divided by: its own mean character increment (``"row"``) or the
        mean over all rows (``"shared"``)."""
        if scale == "row":
            unit = self.char_increments.mean(axis=1, keepdims=True)
        elif scale == "shared":
            unit = np.full((len(self.rows), 1), self.char_increments.mean())
        else:
            raise ValueError(f"unknown scale {scale!r}: use 'row' or 'shared'")
        return np.where(unit > 0, unit, 1.0)

    def scaled_positions(self, scale: Scale) -> Float[np.ndarray, "rows chars"]:
        """Positions divided by `units`, shifted so that the first character sits at 0 (the gap
        from the separator to the first character says nothing about the text)."""
        return (self.positions - self.positions[:, :1]) / self.units(scale)

    def scaled_byte_positions(self, scale: Scale) -> Float[np.ndarray, "rows bytes"]:
        """Every byte's own position on the same scale as `scaled_positions` (a character's
        last byte sits exactly at the character)."""
        byte_pos = np.cumsum(self.byte_deltas, axis=1)
        return (byte_pos - self.positions[:, :1]) / self.units(scale)


@torch.no_grad()
def spaced_text_data(
    model: HookedIncrementTransformer,
    text: str,
    head: int | None = None,
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]]
    | Callable[[torch.Tensor], Sequence[Any]]
    | None = None,
) -> SpacedText:
    """Run ``text`` (after the separator) and collect every reported layer's δ per character.

    head: with per-head rates, the head to show; None averages δ over heads (the running sum of
        the mean is the mean of the heads' positions).
    fwd_hooks: hooks applied while running (a list, or a function of the tokens [1, pos] that
        returns one), e.g. to draw an edited δ.
    """
    if not text:
        raise ValueError("empty text: nothing to draw")
    ids = encode(text, prepend_separator=True)
    if len(ids) > model.cfg.n_ctx:
        raise ValueError(
            f"text is {len(ids)} tokens with the separator; the context is {model.cfg.n_ctx}"
        )
    tokens = torch.tensor([ids], dtype=torch.long, device=model.W_E.device)
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    user = list(fwd_hooks(tokens) if callable(fwd_hooks) else (fwd_hooks or []))
    with model.hooks(fwd_hooks=user):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    deltas = torch.stack([cache[n][0] for n in names]).float().cpu()  # [rows, pos(, heads)]
    head_note = ""
    if model.cfg.per_head:
        if head is None:
            deltas, head_note = deltas.mean(-1), "head mean"
        else:
            if not 0 <= head < model.cfg.n_heads:
                raise ValueError(f"head {head} out of range (0-{model.cfg.n_heads - 1})")
            deltas, head_note = deltas[..., head], f"head {head}"
    elif head is not None:
        raise ValueError("head is only meaningful for per-head models")
    return spaced_text_from_deltas(text, deltas.numpy(), [label for _, label in rows], head_note)


def spaced_text_from_deltas(
    text: str,
    deltas: Float[np.ndarray, "rows pos"],
    rows: Sequence[str],
    head_note: str = "",
) -> SpacedText:
    """`SpacedText` of a text from δ already computed for the separator and the text's bytes
    (``deltas[:, 0]`` is the separator's and is dropped), e.g. by one cached pass of the report."""
    ids = encode(text, prepend_separator=True)
    if deltas.shape[1] != len(ids):
        raise ValueError(f"deltas cover {deltas.shape[1]} tokens; the text with its separator is {len(ids)}")
    spans = char_spans(ids[1:])
    return spaced_text_from_spans(
        text, spans, [bytes(ids[1 + s.start : 1 + s.end]) for s in spans], deltas[:, 1:], rows, head_note
    )


def spaced_text_from_spans(
    text: str,
    spans: Sequence[CharSpan],
    unit_bytes: Sequence[bytes],
    deltas: Float[np.ndarray, "rows tokens"],
    rows: Sequence[str],
    head_note: str = "",
    unit: str = "character",
    ids: Sequence[int] | None = None,
) -> SpacedText:
    """`SpacedText` from the δ of a text's tokens (separator / BOS excluded) and its unit spans
    over them; ``ids`` (the tokens) are kept per unit for the token tooltips."""
    byte_deltas = np.asarray(deltas, dtype=np.float64)
    char_inc = np.stack([byte_deltas[:, s.start : s.end].sum(axis=1) for s in spans], axis=1)
    return SpacedText(
        text=text,
        chars=[s.text for s in spans],
        char_bytes=list(unit_bytes),
        rows=list(rows),
        head_note=head_note,
        byte_deltas=byte_deltas,
        char_increments=char_inc,
        positions=np.cumsum(char_inc, axis=1),
        unit=unit,
        unit_tokens=[list(ids[s.start : s.end]) for s in spans] if ids is not None else [],
    )


# ------------------------------------------------------------------------------------------ layout
def _unit_em(data: SpacedText) -> float:
    """Width in em of one scaled position unit: a little more than the text's mean glyph width,
    so that at mean spacing neighbouring glyphs just clear each other.

    Tokens vary far more in width (" a" vs " documentation") and in how far apart they are (a
    character split over three tokens is three positions wide): the unit is what 90% of them need
    to clear their neighbours at their mean spacing, so only the widest few are squeezed.
    """
    widths = np.array([unit_em(ch, data.unit) for ch in data.chars])
    if data.unit != "token":
        return 1.2 * float(widths.mean())
    inc = data.char_increments.mean(axis=0)  # [units] mean over rows
    spacing = np.where(inc > 0, inc, 1e-6) / max(float(inc.mean()), 1e-6)  # in scaled units
    return 1.05 * float(np.percentile(widths / spacing, 90))


def _drawn(ch: str, unit: str) -> tuple[str, bool, float]:
    """(what to draw, grey stand-in?, font size factor) for a unit of a spaced view."""
    shown = unit_glyph(ch, unit)
    small = unit != "token" and len(shown) > 1  # a character's stand-in name (ZWJ, U+0085)
    return shown, is_blank(ch, unit), STANDIN_SCALE if small else 1.0


def _scale_note(scale: Scale) -> str:
    return (
        "each row scaled by its own mean increment" if scale == "row" else "all rows on one scale"
    )


def plot_spaced_text(
    texts: SpacedText | Sequence[SpacedText],
    scale: Scale = "row",
    fontsize: float = 14.0,
    title: str | None = None,
    show_bytes: bool = False,
    max_width_in: float = 60.0,
) -> Figure:
    """Draw each text as a panel with one row per layer, characters at their learned positions.

    show_bytes: mark every byte's own position with a small tick under the row (shows how a
        character's increment is split over its bytes).
    Returns a matplotlib Figure sized so that glyphs at mean spacing do not overlap.
    """
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    texts = [texts] if isinstance(texts, SpacedText) else list(texts)
    if not texts:
        raise ValueError("no texts to draw")
    families = _font_families(texts)
    drawable = font_covers(families)
    em_in = fontsize / 72.0
    row_in, gap_in, label_in = 1.9 * em_in, 0.45, 1.1
    spans = []
    for data in texts:
        x = data.scaled_positions(scale)
        spans.append((x, _unit_em(data) * em_in))
    width_in = max((x.max() + 1.5) * unit for x, unit in spans) + label_in + 0.3
    if width_in > max_width_in:
        # Too long to draw at full size: shrink the spacing (glyphs keep their size and may touch).
        warnings.warn(
            f"spaced-text figure would be {width_in:.1f} in wide; spacing shrunk to fit "
            f"{max_width_in:.0f} in (draw shorter texts for legible glyphs)",
            stacklevel=2,
        )
        factor = (max_width_in - label_in - 0.3) / (width_in - label_in - 0.3)
        spans = [(x, unit * factor) for x, unit in spans]
        width_in = max_width_in
    heights = [len(d.rows) * row_in + gap_in for d in texts]
    height_in = sum(heights) + 0.5
    fig = Figure(figsize=(width_in, height_in))
    top = 1.0 - 0.5 / height_in  # room for the header
    for data, (x, unit_in), h_in in zip(texts, spans, heights, strict=True):
        ax_h = (h_in - gap_in) / height_in
        ax = fig.add_axes(
            (label_in / width_in, top - ax_h, (width_in - label_in - 0.3) / width_in, ax_h)
        )
        top -= h_in / height_in
        ax_w_units = (width_in - label_in - 0.3) / unit_in
        ax.set_xlim(-0.75, -0.75 + ax_w_units)
        ax.set_ylim(-len(data.rows) + 0.5, 0.5)
        ax.axis("off")
        label_tf = blended_transform_factory(ax.transAxes, ax.transData)
        byte_x = data.scaled_byte_positions(scale) if show_bytes else None
        for r, label in enumerate(data.rows):
            y = -r
            ax.plot([x[r, 0], x[r, -1]], [y - 0.28, y - 0.28], color="0.88", lw=0.8, zorder=0)
            # The header names the head reduction once, rather than every row label.
            ax.text(
                -0.01,
                y,
                label,
                transform=label_tf,
                ha="right",
                va="center",
                fontsize=fontsize * 0.7,
                color="0.35",
            )
            # Where the model packs characters closer than a glyph is wide, the glyph is drawn
            # smaller (matplotlib cannot squeeze it sideways as the HTML view does) so none overlap.
            natural = np.array([unit_em(ch, data.unit) for ch in data.chars]) * em_in
            shrink = fit_widths(x[r] * unit_in, natural, floor=0.45) / natural
            for ch, xc, k in zip(data.chars, x[r], shrink, strict=True):
                shown, grey, size = _drawn(ch, data.unit)
                if data.unit == "token":
                    shown = "".join(c if drawable(c) else f"U+{ord(c):04X}" for c in shown)
                elif not drawable(shown):
                    shown = f"U+{ord(ch):04X}"
                    grey, size = True, STANDIN_SCALE
                ax.text(
                    xc,
                    y,
                    shown,
                    ha="center",
                    va="center",
                    fontsize=fontsize * k * size,
                    family=families,
                    color="0.6" if grey else "black",
                )
            if byte_x is not None:
                ax.plot(
                    byte_x[r], np.full(byte_x.shape[1], y - 0.28), "|", color="0.55", ms=3, mew=0.6
                )
    notes = list(dict.fromkeys(d.head_note for d in texts if d.head_note))
    header = " — ".join([t for t in [title, *notes, _scale_note(scale)] if t])
    fig.text(0.01, 1 - 0.04 / height_in, header, fontsize=fontsize * 0.7, color="0.3", va="top")
    return fig


# ------------------------------------------------------------------------------------------ HTML
_HTML_STYLE = """
body { font-family: %(fonts)s; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } .note { color: #666; font-size: 0.9em; }
svg { display: block; margin: 0.6em 0 1.4em 0; overflow: visible; }
svg text.ch { cursor: default; font-family: %(fonts)s; }
svg text.ch.ws { fill: #999; } svg text.ch:hover { fill: #c0392b; }
svg text.lab { fill: #666; font-size: 12px; }
#tip { position: fixed; pointer-events: none; background: #fffbe6; border: 1px solid #c9b458;
       padding: 4px 7px; font: 12px/1.4 monospace; white-space: pre; display: none; z-index: 9; }
"""

_HTML_SCRIPT = """
(function () {
  var tip = document.getElementById('tip');
  document.querySelectorAll('text.ch').forEach(function (el) {
    el.addEventListener('mousemove', function (ev) {
      tip.textContent = el.getAttribute('data-tip');
      tip.style.display = 'block';
      tip.style.left = (ev.clientX + 14) + 'px';
      tip.style.top = (ev.clientY + 14) + 'px';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
  // Glyphs wider than the room between their neighbours are squeezed to it (to 0.3 at most);
  // all are measured before any is changed, so the browser lays the drawing out once.
  function squeeze(els, roomOf) {
    var natural = Array.prototype.map.call(els, function (el) {
      if (el._w === undefined) { el._w = el.getComputedTextLength(); }
      return el._w;
    });
    Array.prototype.forEach.call(els, function (el, i) {
      var room = +(roomOf(el) || 0);
      if (room && room < natural[i]) {
        el.setAttribute('textLength', Math.max(room, 0.3 * natural[i]).toFixed(1));
        el.setAttribute('lengthAdjust', 'spacingAndGlyphs');
      } else {
        el.removeAttribute('textLength');
      }
    });
  }
  function setScale(s) {
    var glyphs = document.querySelectorAll('text.ch');
    glyphs.forEach(function (el) { el.setAttribute('x', el.getAttribute('data-x' + s)); });
    squeeze(glyphs, function (el) { return el.getAttribute('data-l' + s); });
    document.querySelectorAll('line.base').forEach(function (el) {
      el.setAttribute('x2', el.getAttribute('data-x2' + s));
    });
    document.querySelectorAll('svg.spaced').forEach(function (el) {
      el.setAttribute('width', el.getAttribute('data-w' + s));
    });
    document.getElementById('scale-note').textContent = s === 'r'
      ? 'each row scaled by its own mean increment' : 'all rows of a panel on one scale';
  }
  document.querySelectorAll('input[name=scale]').forEach(function (el) {
    el.addEventListener('change', function () { setScale(el.value); });
  });
  setScale('%(initial)s');
})();
"""


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
    unit_px = _unit_em(data) * font_px
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
                shown, grey, factor = _drawn(ch, data.unit)
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
<style>{_HTML_STYLE % {"fonts": CSS_FONTS}}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{about}</p>
<p><label><input type="radio" name="scale" value="r"{checked["row"]}> scale per row</label>
<label><input type="radio" name="scale" value="s"{checked["shared"]}> one scale</label>
<span class="note" id="scale-note"></span></p>
{body}
<div id="tip"></div>
<script type="application/json" id="spaced-text-data">{raw}</script>
<script>{_HTML_SCRIPT % {"initial": scale[0]}}</script>
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
