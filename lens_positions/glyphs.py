"""How characters are drawn in the spaced-text views: stand-ins for invisible characters,
approximate glyph widths, and squeezing glyphs that the model packs closer than they are wide.

Shared by `lens_positions.plots` (matplotlib and the interactive page) and the report's page.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

#: CSS font stack of the HTML pages (the viewer's own fonts render them): CJK first, then colour
#: emoji fonts so that emoji are not drawn as empty boxes where one is installed.
CSS_FONTS = (
    '"Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "PingFang SC", '
    '"Microsoft YaHei", "Hiragino Sans GB", "DejaVu Sans", sans-serif, '
    '"Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"'
)


def is_wide(ch: str) -> bool:
    """East Asian wide/full-width characters take about one em; most others about 0.6 em."""
    return len(ch) == 1 and unicodedata.east_asian_width(ch) in ("W", "F")


#: Short names drawn for invisible format characters (a joiner drawn as "\ufffd" reads as broken UTF-8).
_FORMAT_NAMES = {
    "\u200b": "ZWSP",
    "\u200c": "ZWNJ",
    "\u200d": "ZWJ",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u2060": "WJ",
    "\ufeff": "BOM",
    "\u00ad": "SHY",
    "\u00a0": "NBSP",
}


def glyph(ch: str) -> str:
    """What to draw for a character: visible stand-ins for whitespace and invisible characters.

    Spaces, newlines and tabs get a symbol, format characters (zero-width joiner, byte-order mark,
    ...) a short name, other control characters their code point; "\ufffd" is kept for bytes that
    are not valid UTF-8 (``char_spans`` gives those a multi-letter text like ``"\\x96"``).
    """
    if ch == " ":
        return "·"
    if ch == "\n":
        return "↵"
    if ch == "\t":
        return "⇥"
    if len(ch) != 1:
        return "\ufffd"
    if ch in _FORMAT_NAMES:
        return _FORMAT_NAMES[ch]
    if unicodedata.category(ch).startswith("C") or unicodedata.category(ch) == "Zs":
        return f"U+{ord(ch):04X}"
    return ch



#: Font size of the stand-in names (ZWJ, U+0085, ...) relative to the text's.
STANDIN_SCALE = 0.45


def glyph_em(ch: str) -> float:
    """Approximate drawn width of ``glyph(ch)`` in em: about 1 for wide characters, 0.62 for
    others, stand-in names at `STANDIN_SCALE` size."""
    shown = glyph(ch)
    if len(shown) > 1:
        return STANDIN_SCALE * 0.62 * len(shown)
    return 1.0 if is_wide(ch) else 0.62


def neighbour_room(x: np.ndarray) -> np.ndarray:
    """For glyphs centred at ``x`` [chars] (increasing), the widest each may be [chars] so that no
    two overlap when each is at most that wide: its distance to the nearer neighbour."""
    room = np.full(len(x), np.inf)
    if len(x) > 1:
        gaps = np.diff(x)
        room[:-1] = gaps
        room[1:] = np.minimum(room[1:], gaps)
    return room


def fit_widths(x: np.ndarray, natural: np.ndarray, floor: float = 0.3) -> np.ndarray:
    """Widths [chars] at which glyphs centred at ``x`` [chars] do not overlap: each at most its
    natural width [chars] and its `neighbour_room`, never below ``floor`` of its natural width.

    Glyphs of characters the model packs closer than a glyph is wide are squeezed (HTML) or drawn
    smaller (matplotlib) rather than over each other, so tight spacing stays readable as tight.
    """
    return np.maximum(np.minimum(natural, neighbour_room(x)), floor * natural)


def font_covers(families: Sequence[str]) -> Callable[[str], bool]:
    """Whether one of ``families`` (as matplotlib resolves them) has a glyph for a character.

    matplotlib cannot draw colour emoji fonts, so emoji and other characters none of the fonts
    cover get a named stand-in instead of an empty box (and a warning per glyph).
    """
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    fonts = []
    for family in families:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            fonts.append(FT2Font(path))
        except (ValueError, RuntimeError, OSError):
            continue

    @functools.cache
    def has(ch: str) -> bool:
        return len(ch) != 1 or any(f.get_char_index(ord(ch)) for f in fonts)

    return has
