"""Spaced-text plots: text drawn with every character at its learned cumulative position.

One import for the three parts: the data (`lens_positions.spaced_data`), the figure
(`lens_positions.spaced_figure`) and the interactive page (`lens_positions.spaced_html`).

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

from lens_positions.spaced_data import (
    DEFAULT_SENTENCES,
    Scale,
    SpacedText,
    delta_rows,
    increments_of,
    spaced_text_data,
    spaced_text_from_deltas,
    spaced_text_from_spans,
    token_spaced_text_data,
)
from lens_positions.spaced_figure import CJK_FAMILIES, find_cjk_font, plot_spaced_text
from lens_positions.spaced_html import (
    SpacedLayout,
    save_spaced_text,
    spaced_layout,
    spaced_text_html,
)

__all__ = [
    "CJK_FAMILIES", "DEFAULT_SENTENCES", "Scale", "SpacedLayout", "SpacedText", "delta_rows",
    "find_cjk_font", "increments_of", "plot_spaced_text", "save_spaced_text", "spaced_layout",
    "spaced_text_data", "spaced_text_from_deltas", "spaced_text_from_spans", "spaced_text_html",
    "token_spaced_text_data",
]  # fmt: skip
