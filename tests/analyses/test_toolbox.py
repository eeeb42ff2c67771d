"""Helpers of the word-index / patching / attribution / learned-axis analyses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from analyses._toolbox import (
    byte_windows,
    head_axis,
    head_mean,
    in_held_out,
    markdown_table,
    pad_batch,
    read_texts,
)
from analyses._wordlist import WORDS
from lens_positions import SEPARATOR_ID


def test_byte_windows_have_one_length_and_start_with_the_separator():
    windows = byte_windows(["abcdefgh", "人工智能", "xy"], 4, max_windows=10, per_doc=2)
    assert windows == [[SEPARATOR_ID, *b"abcd"], [SEPARATOR_ID, *b"efgh"], [SEPARATOR_ID, *"人工".encode()[:4]],
                       [SEPARATOR_ID, *"人工智能".encode()[4:8]]]
    assert len(byte_windows(["abcdefgh"] * 5, 4, max_windows=3)) == 3


def test_read_texts_and_the_held_out_split(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [f"document number {i}" for i in range(40)]
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n\n")
    assert read_texts(path) == docs and read_texts(path, max_docs=3) == docs[:3]
    held = read_texts(path, held_out=0.5)
    assert held == [d for d in docs if in_held_out(d, 0.5)] and 0 < len(held) < 40
    assert read_texts(path, held_out=0.0) == [] and read_texts(path, held_out=1.0) == docs
    plain = tmp_path / "plain.txt"
    plain.write_text("one document")
    assert read_texts(plain) == ["one document"]


def test_small_tensor_helpers():
    tokens, lengths = pad_batch([[1, 2, 3], [4]])
    assert tokens.tolist() == [[1, 2, 3], [4, SEPARATOR_ID, SEPARATOR_ID]] and lengths.tolist() == [3, 1]
    x = torch.rand(2, 5, 3)
    assert head_axis(x[..., 0]).shape == (2, 5, 1) and head_axis(x) is x
    torch.testing.assert_close(head_mean(x), x.mean(-1))


def test_markdown_table_and_word_list():
    table = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "c": ["x|y", "z"]}))
    assert table.splitlines()[0] == "| a |     b | c    |" and "—" in table and "x\\|y" in table
    assert len(WORDS) > 300 and all(w.isalpha() and w.islower() for w in WORDS) and len(set(WORDS)) == len(WORDS)
