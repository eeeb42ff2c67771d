"""The spaced-text figure (matplotlib): text drawn with every unit at its learned position.

Two scalings (``scale``):

- ``"row"``: each row divided by its own mean character increment, so every row has the same mean
  spacing and only the *relative* gaps show (the post's per-layer figure);
- ``"shared"``: every row of a panel divided by one number (the mean over all its rows), so rows
  with smaller increments are visibly shorter (the post's "same scale" figure).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lens_positions.glyphs import (
    STANDIN_SCALE,
    fit_widths,
    font_covers,
    is_wide,
)
from lens_positions.spaced_data import Scale, SpacedText
from lens_positions.token_units import is_blank, unit_em, unit_glyph

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


# ------------------------------------------------------------------------------------------ layout
def row_unit_em(data: SpacedText) -> float:
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


def drawn_glyph(ch: str, unit: str) -> tuple[str, bool, float]:
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
        spans.append((x, row_unit_em(data) * em_in))
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
                shown, grey, size = drawn_glyph(ch, data.unit)
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
