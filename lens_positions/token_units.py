"""Tokens as the unit of the report and the spaced-text views, for pretrained rotary models.

The byte models read one token per UTF-8 byte, and their views group bytes into characters. A
pretrained rotary bridge (`lens_positions.rotary_models.load_rotary_model`) reads its own BPE
tokens after a BOS token, and its views show tokens instead: a **unit** is one token, except where
the tokenizer splits a character over several tokens (a Chinese character in byte-level BPE is
often two or three tokens), where the unit is the smallest run of tokens that decodes to whole
characters. That is exactly how a byte model's character spans several bytes, so one structure
(`lens_positions.tokenizer.CharSpan`: text, token range) serves both.

Facts that every token-level consumer shares live here (``analyses._tokens`` reuses them):

- `bos_id`, `encode` (which kind a model is: `lens_positions.subject.subject_of`);
- `token_units`: the unit spans of a token sequence, checked to give back the text exactly;
- `token_chunks`: a text cut into windows of at most ``window`` tokens (between units), each
  after a BOS;
- `unit_glyph`, `unit_em`: what the spaced views draw for a unit and how wide it is;
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from lens_positions.glyphs import glyph, glyph_em
from lens_positions.subject import REPORT_WINDOW_TOKENS, tokenizer_start_id
from lens_positions.tokenizer import SEPARATOR_STR, CharSpan

#: Tokens per chunk of the report on a pretrained model (`lens_positions.subject`).
DEFAULT_WINDOW = REPORT_WINDOW_TOKENS
#: Most tokens one character can take (UTF-8 has at most 4 bytes, BPE at least one byte a token).
_MAX_SPLIT = 4


def bos_id(model: Any) -> int:
    """The token that starts every window (BOS, or EOS for tokenizers without one); the same id
    ``model.to_tokens`` prepends."""
    return tokenizer_start_id(model.tokenizer)


def encode(model: Any, text: str) -> list[int]:
    """The model tokenizer's ids of ``text``, without special tokens."""
    return list(model.tokenizer(text, add_special_tokens=False)["input_ids"])


def _decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    return lambda ids: tokenizer.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)


def _grouped(ids: Sequence[int], decode: Callable[[Sequence[int]], str]) -> list[CharSpan]:
    """Units by decoding each candidate group alone: a group that ends in a partial character
    (decoded as U+FFFD) takes the next token too, up to `_MAX_SPLIT` tokens."""
    spans, start = [], 0
    for k in range(len(ids)):
        piece = decode(ids[start : k + 1])
        if piece.endswith("\ufffd") and k + 1 < len(ids) and k + 1 - start < _MAX_SPLIT:
            continue
        spans.append(CharSpan(piece, start, k + 1))
        start = k + 1
    return spans


def _by_prefix(ids: Sequence[int], decode: Callable[[Sequence[int]], str]) -> list[CharSpan] | None:
    """Units as differences of decoded prefixes (for tokenizers whose tokens decode differently
    alone, e.g. SentencePiece's dropped leading space); None when prefixes do not extend."""
    spans, start, done = [], 0, ""
    for k in range(len(ids)):
        text = decode(ids[: k + 1])
        if text.endswith("\ufffd") and k + 1 < len(ids) and k + 1 - start < _MAX_SPLIT:
            continue
        if not text.startswith(done):
            return None
        spans.append(CharSpan(text[len(done) :], start, k + 1))
        start, done = k + 1, text
    return spans


def token_units(tokenizer: Any, ids: Sequence[int], text: str | None = None) -> list[CharSpan]:
    """The units of token ids [pos] (no special tokens): one span per token, or per run of
    tokens that together decode to whole characters. Their texts joined give ``text`` (by
    default the decoded ids); a tokenizer where neither way achieves that gets one span per
    token (with a warning)."""
    decode = _decoder(tokenizer)
    expected = decode(ids) if text is None else text
    spans = _grouped(ids, decode)
    if "".join(s.text for s in spans) != expected:
        spans = _by_prefix(ids, decode) or []
    if "".join(s.text for s in spans) != expected:
        warnings.warn("the tokens' decoded texts do not add up to the text: each token is shown alone", stacklevel=2)
        spans = [CharSpan(decode([t]), i, i + 1) for i, t in enumerate(ids)]
    return spans


def token_chunks(
    model: Any, text: str, window: int = DEFAULT_WINDOW
) -> tuple[list[list[int]], list[CharSpan]]:
    """``text`` as chunks [BOS, up to ``window`` tokens] cut between units, and the unit spans
    over the chunks' tokens concatenated (each chunk's BOS is a span of its own, text
    ``SEPARATOR_STR``, like a byte model's separator).

    window: capped at the model's context minus the BOS.
    """
    if not text:
        raise ValueError("empty text: there is nothing to tokenize")
    window = min(window, int(model.cfg.n_ctx) - 1)
    if window < _MAX_SPLIT:
        raise ValueError(f"a window of {window} tokens leaves no room for a split character")
    ids = encode(model, text)
    units = token_units(model.tokenizer, ids, text)
    bos = bos_id(model)
    chunks: list[list[int]] = []
    spans: list[CharSpan] = []
    done = 0  # tokens in the chunks before the current one
    for u in units:
        n = u.end - u.start
        if not chunks or len(chunks[-1]) - 1 + n > window:
            done += len(chunks[-1]) if chunks else 0
            chunks.append([bos])
            spans.append(CharSpan(SEPARATOR_STR, done, done + 1))
        at = done + len(chunks[-1])
        chunks[-1].extend(ids[u.start : u.end])
        spans.append(CharSpan(u.text, at, at + n))
    return chunks, spans


def unit_glyph(text: str, unit: str) -> str:
    """What the spaced views draw: `lens_positions.glyphs.glyph` of a character; for a token its
    text with spaces as ``·``, newlines ``↵``, tabs ``⇥`` and invisible characters ``‹ZWJ›``."""
    if unit != "token":
        return glyph(text)
    parts = []
    for ch in text:
        shown = glyph(ch)
        parts.append(shown if len(shown) == 1 else f"‹{shown}›")
    return "".join(parts)


def unit_em(text: str, unit: str) -> float:
    """Approximate drawn width of `unit_glyph` in em (the sum of its characters' widths)."""
    if unit != "token":
        return glyph_em(text)
    return max(0.3, sum(glyph_em(ch) for ch in text))


def is_blank(text: str, unit: str) -> bool:
    """A unit drawn as a grey stand-in: a stand-in glyph (characters) or only whitespace (tokens)."""
    if unit != "token":
        return glyph(text) != text
    return not text.strip()
