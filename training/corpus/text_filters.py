"""Filters for extracted running text: boilerplate lines, licence texts, cross-source line dedup.

Documents here are plain strings whose paragraphs are separated by blank lines. The filters work
on lines and paragraphs, never inside them, so what is kept is verbatim extracted text:

- `drop_boilerplate_lines`: lines that are web/page furniture rather than prose (URLs alone,
  "click here", QR-code and share prompts, editor credits, forum counters; per language);
- `strip_licences`: lines (paragraphs) that belong to an embedded licence (GPL, LGPL, GFDL, Apache, MPL,
  Artistic, BSD/MIT permission notices) and whole documents that are a licence text;
- `LineDeduplicator`: drops every line already seen in any earlier document of the build
  (exact match after stripping), so a text shipped by two packages, or by a zh-TW version that
  converts to the zh-CN one, is trained on once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from training.corpus.html_text import cjk_count

__all__ = ["LineDeduplicator", "cjk_count", "drop_boilerplate_lines", "ideograph_count",
           "is_boilerplate_line", "paragraphs", "strip_licences", "tidy"]

_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def ideograph_count(text: str) -> int:
    """Number of Han ideographs (no punctuation or full-width Latin)."""
    return len(_IDEOGRAPH.findall(text))


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


# ------------------------------------------------------------------------- boilerplate lines
_URL_ONLY = re.compile(r"^\W*(https?://|www\.)\S+\W*$", re.IGNORECASE)
_ZH_BOILERPLATE = re.compile(
    "|".join(
        [
            r"点击",
            r"二维码",
            r"扫一扫",
            r"扫码",
            r"责任编辑",
            r"编辑：",
            r"原标题",
            r"来源：",
            r"本文来源",
            r"转载",
            r"版权所有",
            r"免责声明",
            r"关注我们",
            r"微信公众",
            r"公众号",
            r"阅读全文",
            r"阅读原文",
            r"返回搜狐",
            r"打赏",
            r"点赞",
            r"举报",
            r"分享到",
            r"楼主",
            r"发表于",
            r"回复",
            r"https?://",
            r"www\.",
        ]
    )
)
_EN_BOILERPLATE = re.compile(
    r"^(previous|next|up|home|table of contents|contents|index|search|navigation|"
    r"show source|edit on github|back to top|print|skip to (main )?content)\s*[:|»«]?\s*$"
    r"|click here|all rights reserved|https?://\S+$",
    re.IGNORECASE,
)


# Furniture lines are short; a long line that mentions "转载" or "click here" is prose with a
# passing mention (in web news whole articles are single lines), so patterns only judge these.
MAX_FURNITURE_CHARS = 80


#: Web text (zh): lines with fewer Han characters are furniture (counters such as "0", "人 点赞").
WEB_MIN_IDEOGRAPHS = 5


def is_boilerplate_line(line: str, lang: str, web: bool = False) -> bool:
    """Whether a line is page furniture: a URL alone, an English navigation word, and in web text
    (`web`) Chinese share/QR/editor/forum lines and lines with too few Han characters. The
    Chinese web patterns are not used on documentation, where 点击 ("click") is an instruction."""
    s = line.strip()
    if not s:
        return False
    if _URL_ONLY.match(s):
        return True
    if lang == "zh" and web and ideograph_count(s) < WEB_MIN_IDEOGRAPHS:
        return True
    if len(s) > MAX_FURNITURE_CHARS:
        return False
    if lang == "zh":
        return web and bool(_ZH_BOILERPLATE.search(s))
    return bool(_EN_BOILERPLATE.search(s))


def drop_boilerplate_lines(text: str, lang: str, counts: Counter, web: bool = False) -> str:
    """The text without its boilerplate lines (dropped bytes counted under "boilerplate")."""
    kept = []
    for line in text.split("\n"):
        if is_boilerplate_line(line, lang, web):
            counts["boilerplate_bytes"] += len(line.encode("utf-8")) + 1
        else:
            kept.append(line)
    return "\n".join(kept)


# ------------------------------------------------------------------------------- licences
# Phrases that occur in licence texts and notices and (almost) never in other prose.
_LICENCE_PHRASES = re.compile(
    "|".join(
        [
            r"GNU (Lesser |Library )?General Public Licen[cs]e",
            r"GNU Free Documentation Licen[cs]e",
            r"GNU Affero General Public",
            r"Apache Licen[cs]e",
            r"Mozilla Public Licen[cs]e",
            r"Artistic Licen[cs]e",
            r"Creative Commons",
            r"Free Software Foundation",
            r"Permission is (hereby )?granted",
            r"WITHOUT (ANY )?WARRANT",
            r"MERCHANTABILITY",
            r"FITNESS FOR A PARTICULAR PURPOSE",
            r"THE SOFTWARE IS PROVIDED",
            r"SPDX-License-Identifier",
            r"Invariant Sections",
            r"Front-Cover Texts",
            r"Redistribution and use in source and binary forms",
            r"This (program|library|document|file|manual) is free (software|documentation)",
            r"(you may not use this file|under the terms of the)",
            r"(GNU )?通用公共(许可|授权)",
            r"自由文档(许可|授权)",
            r"(通用公共|宽通用公共|自由文档)许可证",
            r"自由软件基金会",
            r"(許可證|授權條款)",
        ]
    ),
    re.IGNORECASE,
)
# A document with at least this many licence paragraphs (and at least this share of its bytes in
# them) is a licence text as a whole, e.g. the GPL shipped as a help page: drop all of it.
LICENCE_DOC_PARAGRAPHS = 3
LICENCE_DOC_SHARE = 0.25


def is_licence_paragraph(paragraph: str) -> bool:
    return bool(_LICENCE_PHRASES.search(paragraph))


def _licence_units(text: str) -> list[list[str]]:
    """Paragraphs as groups of lines. Lines are the units: every extractor here ends a paragraph
    with a line break (HTML blocks) or joins hard-wrapped lines first (TeX, apt, novels)."""
    return [[line for line in p.split("\n") if line.strip()] for p in paragraphs(text)]


def strip_licences(text: str, counts: Counter) -> str:
    """The text without licence paragraphs; "" when the document is a licence text itself."""
    groups = _licence_units(text)
    units = [u for g in groups for u in g]
    flags = {id(u): is_licence_paragraph(u) for u in units}
    licence_bytes = sum(len(u.encode("utf-8")) for u in units if flags[id(u)])
    total = sum(len(u.encode("utf-8")) for u in units) or 1
    n_licence = sum(flags.values())
    if n_licence >= LICENCE_DOC_PARAGRAPHS and licence_bytes >= LICENCE_DOC_SHARE * total:
        counts["licence_documents"] += 1
        counts["licence_bytes"] += total
        return ""
    counts["licence_bytes"] += licence_bytes
    kept = ["\n".join(u for u in g if not flags[id(u)]) for g in groups]
    return "\n\n".join(k for k in kept if k)


# ------------------------------------------------------------------------------ line dedup
@dataclass
class LineDeduplicator:
    """Remembers lines across documents and sources; `filter` drops lines already seen.

    `filter` only looks; `commit` records a kept document's lines, so the lines of a document that
    a later filter drops (too short, untranslated) do not remove their copies elsewhere.
    Lines shorter than `min_chars` (after stripping) are never dropped: short lines such as a
    heading "Options" or "注意" recur legitimately and carry no duplicated text worth removing.
    """

    min_chars: int = 12
    _seen: set[bytes] = field(default_factory=set)

    def filter(self, text: str, counts: Counter) -> tuple[str, list[bytes]]:
        """(text without already-seen lines, keys of its remaining long lines)."""
        kept, keys, here = [], [], set()
        for line in text.split("\n"):
            s = line.strip()
            if len(s) >= self.min_chars:
                key = hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest()
                if key in self._seen or key in here:
                    counts["duplicate_line_bytes"] += len(line.encode("utf-8")) + 1
                    continue
                here.add(key)
                keys.append(key)
            kept.append(line)
        return "\n".join(kept), keys

    def commit(self, keys: list[bytes]) -> None:
        self._seen.update(keys)


def tidy(text: str) -> str:
    """Strip line ends, collapse runs of blank lines to one, strip the whole."""
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
