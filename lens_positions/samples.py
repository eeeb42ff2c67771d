"""The held-out text sample shipped with the package (``lens_positions/assets/heldout``).

A few hundred KB of the shipped models' validation documents (never trained on), one JSON-lines
file per language (``en.jsonl``, ``zh.jsonl``; rows ``{"text", "source", "val_index"}``), so that
every analysis runs on real held-out text with no arguments. Written by
``python -m training.tokens.heldout sample`` from the token folder the models were trained on; the
licences of the texts are in ``LICENSE.md`` beside them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "assets" / "heldout"
LANGUAGES: tuple[str, ...] = ("zh", "en")
#: A document is Chinese when at least this share of its characters are CJK ideographs.
ZH_CJK_FRACTION = 0.05


def is_cjk(ch: str) -> bool:
    """A CJK Unified Ideograph (U+4E00-U+9FFF), the characters the word-boundary protocol scores."""
    return 0x4E00 <= ord(ch) <= 0x9FFF


def chinese_fraction(text: str) -> float:
    """Share of the characters that are CJK Unified Ideographs."""
    return sum(map(is_cjk, text)) / len(text) if text else 0.0


def content_key(text: str) -> int:
    """64-bit hash of a document's text: its identity for the training pipeline's hash split
    (blake2b of the UTF-8 text, 8-byte digest, as a big-endian integer)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def in_held_out(text: str, fraction: float) -> bool:
    """Whether a document is in the hash split's validation set: ``content_key / 2**64 <
    fraction`` (the rule written in a token folder's ``meta.json``)."""
    return content_key(text) / 2**64 < fraction


def sample_file(language: str) -> Path:
    """The shipped sample of one language (``zh`` or ``en``); a clear error when it is missing."""
    if language not in LANGUAGES:
        raise ValueError(f"no held-out sample for {language!r}; languages: {', '.join(LANGUAGES)}")
    path = SAMPLE_DIR / f"{language}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the shipped held-out sample is missing (write it with "
            "`python -m training.tokens.heldout sample --data TOKEN_DIR`) or give --text-file"
        )
    return path


def sample_files() -> list[Path]:
    """Both languages' samples, Chinese first."""
    return [sample_file(lang) for lang in LANGUAGES]


__all__ = [
    "LANGUAGES", "SAMPLE_DIR", "ZH_CJK_FRACTION", "chinese_fraction", "content_key", "in_held_out",
    "is_cjk", "sample_file",
    "sample_files",
]  # fmt: skip
