"""Byte tokenizer: UTF-8 bytes are tokens 0-255, the document separator is 256.

There is no BOS token: the separator ends every training document, so prepending it puts the first
byte of a text where every training document started. Multi-byte characters (all of Chinese) span
several tokens; `char_spans` maps bytes back to characters for per-character views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lens_positions.config import SEPARATOR_ID

SEPARATOR_STR = "<sep>"


def encode(text: str, prepend_separator: bool = True) -> list[int]:
    """Token ids of one text: its UTF-8 bytes, after the separator unless told otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    ids = list(text.encode("utf-8"))
    return ([SEPARATOR_ID] if prepend_separator else []) + ids


def decode(tokens: torch.Tensor | list[int], separator: str = "\n") -> str:
    """Text of a 1-D token sequence; separators become ``separator``, broken UTF-8 becomes U+FFFD."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    if ids and isinstance(ids[0], list):
        raise ValueError("decode takes one sequence; use to_string on a batch")
    parts: list[str] = []
    buf = bytearray()
    for t in ids:
        if t == SEPARATOR_ID:
            parts.append(buf.decode("utf-8", errors="replace") + separator)
            buf = bytearray()
        elif 0 <= t < 256:
            buf.append(t)
        else:
            raise ValueError(f"token id {t} is not a byte (0-255) or the separator ({SEPARATOR_ID})")
    parts.append(buf.decode("utf-8", errors="replace"))
    return "".join(parts)


@dataclass(frozen=True)
class CharSpan:
    """One character of a token sequence: its text and the token range [start, end) it covers."""

    text: str
    start: int
    end: int


def _utf8_length(lead: int) -> int:
    """Byte length a UTF-8 lead byte announces, or 0 if it cannot start a character."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def char_spans(tokens: torch.Tensor | list[int]) -> list[CharSpan]:
    """Group a 1-D token sequence into characters.

    Every token belongs to exactly one span. A byte that is not part of a valid character becomes a
    span of its own with text like ``"\\x96"``; the separator is ``"<sep>"``.
    """
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    spans: list[CharSpan] = []
    i = 0
    while i < len(ids):
        t = ids[i]
        if t == SEPARATOR_ID:
            spans.append(CharSpan(SEPARATOR_STR, i, i + 1))
            i += 1
            continue
        n = _utf8_length(t)
        chunk = ids[i : i + n] if n else []
        if n and len(chunk) == n and all(0x80 <= b <= 0xBF for b in chunk[1:]):
            try:
                spans.append(CharSpan(bytes(chunk).decode("utf-8"), i, i + n))
                i += n
                continue
            except UnicodeDecodeError:
                pass
        spans.append(CharSpan(f"\\x{t:02x}", i, i + 1))
        i += 1
    return spans


def byte_to_char_index(tokens: torch.Tensor | list[int]) -> list[int]:
    """For each token, the index of the character (span from `char_spans`) it belongs to."""
    index: list[int] = []
    for k, span in enumerate(char_spans(tokens)):
        index.extend([k] * (span.end - span.start))
    return index


def str_tokens(tokens: torch.Tensor | list[int]) -> list[str]:
    """One label per token: a character on its first byte, ``"\\xNN"`` on later bytes of it."""
    labels: list[str] = []
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    for span in char_spans(ids):
        labels.append(span.text)
        labels.extend(f"\\x{b:02x}" for b in ids[span.start + 1 : span.end])
    return labels
