"""Plain text from documentation HTML (Debian handbook/reference, LibreOffice help).

Uses only the standard library's html.parser. Navigation, tables of contents, scripts and
hidden platform variants are skipped; block elements end lines; inline whitespace collapses to one
space (kept verbatim inside <pre>). A page can be cut into sections at chosen heading tags.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID_TAGS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
BLOCK_TAGS = frozenset(
    "address article blockquote br dd div dl dt figcaption figure h1 h2 h3 h4 h5 h6 hr li ol p "
    "pre section table tbody thead tfoot tr ul".split()
)
# Whole subtrees that are never page text.
SKIP_TAGS = frozenset("script style head noscript header footer aside nav template svg".split())
# Debian: docnav/navheader/navfooter (prev/next links), toc; LibreOffice: related-topics links;
# Sphinx (kernel and Python docs): permalink marks, sidebars, breadcrumbs, footers.
SKIP_CLASSES = frozenset(
    "docnav navheader navfooter toc relatedtopics headerlink sphinxsidebar related footer "
    "breadcrumbs wy-breadcrumbs rst-footer-buttons toctree-wrapper".split()
)
# Code blocks, dropped when `drop_code` is set: <pre> and Sphinx's highlight wrappers.
CODE_TAGS = frozenset(["pre"])
# Handbook: "Download the ebook" banner and logo line; LibreOffice: debug footer, empty frames.
SKIP_IDS = frozenset("banner title DEBUG SearchFrame DonationFrame".split())

_WS = re.compile(r"\s+")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
# A source line break between two CJK characters is an artefact of line wrapping, not a space.
_CJK_LINE_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t]*\n\s*(?=[{_CJK}])")
_BLANK_LINES = re.compile(r"\n{3,}")


def _is_skipped(tag: str, attrs: dict[str, str | None], drop_code: bool = False) -> bool:
    if tag in SKIP_TAGS:
        return True
    if drop_code and (
        tag in CODE_TAGS
        or any(c.startswith("highlight") for c in (attrs.get("class") or "").split())
    ):
        return True
    if set((attrs.get("class") or "").split()) & SKIP_CLASSES or attrs.get("id") in SKIP_IDS:
        return True
    # LibreOffice marks every platform/module variant `hidden` and lets JavaScript show one;
    # the generic variant's id starts with "default". Keep that one, drop MAC/WIN/CALC/...
    return "hidden" in attrs and not (attrs.get("id") or "").startswith("default")


class _TextExtractor(HTMLParser):
    def __init__(
        self,
        split_tags: frozenset[str],
        body: tuple[str, str] | None = None,
        drop_code: bool = False,
    ) -> None:
        super().__init__(convert_charrefs=True)
        self.split_tags = split_tags
        self.body, self.drop_code = body, drop_code
        # With `body` set, text counts only inside an element whose attribute body[0] equals
        # body[1]; _body_depth > 0 while inside one (open elements counted).
        self._body_depth = 0 if body else 1
        self.sections: list[list[str]] = [[]]
        self._skip_depth = 0  # > 0 while inside a skipped subtree
        self._pre_depth = 0
        self._last = "\n"  # last character emitted in the current section

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.body:
            if self._body_depth:
                self._body_depth += tag not in VOID_TAGS
            elif dict(attrs).get(self.body[0]) == self.body[1]:
                self._body_depth = 1
                return
            else:
                return
        if self._skip_depth:
            self._skip_depth += tag not in VOID_TAGS
            return
        if _is_skipped(tag, dict(attrs), self.drop_code):
            self._skip_depth = int(tag not in VOID_TAGS)
            return
        if tag in self.split_tags and any(self.sections[-1]):
            self.sections.append([])
            self._last = "\n"
        if tag == "pre":
            self._pre_depth += 1
        if tag in BLOCK_TAGS:
            self._newline()
        elif tag in ("td", "th"):
            self._space()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:  # `<br/>` reports an end tag; it opened nothing
            return
        if self.body:
            if not self._body_depth:
                return
            self._body_depth -= 1
            if not self._body_depth:
                self._newline()
                return
        if self._skip_depth:
            self._skip_depth -= 1
            return
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        if tag in BLOCK_TAGS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._skip_depth or not self._body_depth:
            return
        if not self._pre_depth:
            data = _WS.sub(" ", _CJK_LINE_BREAK.sub("", data))
            if self._last in " \n":  # no space at a line start or after a space
                data = data.lstrip(" ")
        self._emit(data)

    def _emit(self, text: str) -> None:
        if text:
            self.sections[-1].append(text)
            self._last = text[-1]

    def _space(self) -> None:
        if self._last not in " \n":
            self._emit(" ")

    def _newline(self) -> None:
        if self._last != "\n":
            self._emit("\n")


def _clean(parts: list[str]) -> str:
    lines = [line.rstrip() for line in "".join(parts).split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_sections(
    html: str,
    split_tags: tuple[str, ...] = (),
    body: tuple[str, str] | None = None,
    drop_code: bool = False,
) -> list[str]:
    """Text of a page, cut into one string per section starting at any of `split_tags`.

    With no split tags the whole page is one section. Empty sections are dropped.
    body: (attribute, value), e.g. ("itemprop", "articleBody"): keep only text inside such
    elements (the article, without the page frame). drop_code: skip <pre> and highlight blocks.
    """
    parser = _TextExtractor(frozenset(split_tags), body, drop_code)
    parser.feed(html)
    parser.close()
    return [text for text in map(_clean, parser.sections) if text]


def html_to_text(html: str) -> str:
    """Text of a whole page (see html_to_sections)."""
    sections = html_to_sections(html)
    return sections[0] if sections else ""


def cjk_count(text: str) -> int:
    """Number of CJK characters (ideographs, CJK punctuation, full-width forms)."""
    return len(re.findall(rf"[{_CJK}]", text))
