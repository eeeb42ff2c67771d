from __future__ import annotations

import pytest
import torch

from lens_positions import SEPARATOR_ID
from lens_positions.tokenizer import byte_to_char_index, char_spans, decode, encode, str_tokens


def test_round_trip_and_separator():
    text = "Hé 人工智能!\n"
    ids = encode(text)
    assert ids[0] == SEPARATOR_ID and ids[1:] == list(text.encode("utf-8"))
    assert decode(ids[1:]) == text
    assert decode([104, 105, SEPARATOR_ID, 104]) == "hi\nh"
    with pytest.raises(ValueError, match="token id 999"):
        decode([999])


def test_char_spans_map_bytes_to_characters():
    ids = encode("a人b")
    spans = char_spans(ids)
    assert [(s.text, s.start, s.end) for s in spans] == [("<sep>", 0, 1), ("a", 1, 2), ("人", 2, 5), ("b", 5, 6)]
    assert byte_to_char_index(ids) == [0, 1, 2, 2, 2, 3]
    assert str_tokens(torch.tensor(ids)) == ["<sep>", "a", "人"] + [
        f"\\x{b:02x}" for b in "人".encode()[1:]
    ] + ["b"]


def test_broken_utf8_is_still_one_span_per_byte():
    ids = [0xE4, 0xBA, 65, 0xFF]  # truncated character, then A, then an invalid byte
    spans = char_spans(ids)
    assert [s.text for s in spans] == ["\\xe4", "\\xba", "A", "\\xff"]
    assert decode(ids) == "\ufffdA\ufffd"
