"""Stand-ins for invisible characters and glyph squeezing in the spaced-text views."""

from __future__ import annotations

import numpy as np

from lens_positions.glyphs import fit_widths, glyph, neighbour_room


def test_invisible_characters_get_named_stand_ins_and_broken_bytes_the_replacement_mark():
    assert glyph("\u200d") == "ZWJ" and glyph("\ufeff") == "BOM" and glyph("\u0085") == "U+0085"
    assert glyph(" ") == "·" and glyph("\n") == "↵" and glyph("\t") == "⇥"
    assert glyph("\\x96") == "\ufffd"  # char_spans' text for a byte that is not valid UTF-8
    assert glyph("中") == "中" and glyph("😀") == "😀"


def test_squeezed_glyphs_never_overlap_and_keep_their_width_where_there_is_room():
    x = np.array([0.0, 10.0, 12.0, 13.0, 40.0])
    natural = np.full(5, 8.0)
    w = fit_widths(x, natural, floor=0.0)
    assert np.all(w[:-1] / 2 + w[1:] / 2 <= np.diff(x) + 1e-9)  # neighbours at most touch
    assert w[0] == 8.0 and w[-1] == 8.0  # room enough at the ends
    np.testing.assert_allclose(neighbour_room(x), [10.0, 2.0, 1.0, 1.0, 27.0])
    assert np.all(fit_widths(x, natural, floor=0.3) >= 0.3 * natural)
