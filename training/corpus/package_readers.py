"""Readers for the file formats the offline corpus comes in (standard library only).

- `load_pickle_restricted`: a pickle that may hold only builtin containers and scalars (no
  class lookups at all), so loading a downloaded pickle cannot run code;
- `read_r_lazyload`: R's lazy-load database (`Rdata.rdx` index + `Rdata.rdb` blobs), e.g. the
  novels of `r-cran-janeaustenr`, through a small reader of R's XDR serialisation;
- `read_mo`: GNU gettext `.mo` catalogues -> (msgid, msgstr) pairs;
- `iter_apt_descriptions`: the apt `Translation-en` index -> (package, short, long description);
- `tex_to_text`: running text of a LaTeX source (markup, comments, code and maths removed);
- `read_text_file`: a text file, gzip-compressed or not, UTF-8 or GB18030.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


# ------------------------------------------------------------------------------- pickles
class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"pickle refers to {module}.{name}; only builtin containers and scalars are allowed"
        )


def load_pickle_restricted(path: str | Path) -> Any:
    """Load a pickle of lists/tuples/dicts/str/numbers only; anything else raises UnpicklingError."""
    with open(path, "rb") as f:
        return _NoGlobalsUnpickler(f).load()


# ------------------------------------------------------------------------------ R objects
_NIL, _REF = 254, 255
_SPECIAL_ENVS = {241, 242, 250, 251, 252, 253}  # base/empty/global env, missing arg, ...
_PAIRLISTS = {2, 3, 5, 6, 17}  # LISTSXP, CLOSXP, PROMSXP, LANGSXP, DOTSXP
_CHARSXP, _SYMSXP = 9, 1
_INTS, _REALS, _STRS, _LISTS = {10, 13}, 14, 16, {19, 20}


class RObject:
    """A serialised R vector: `type` (SEXP type), `value` (a list/tuple), `attributes`."""

    def __init__(self, type_: int, value: Any, attributes: dict[str, Any] | None):
        self.type, self.value, self.attributes = type_, value, attributes or {}

    @property
    def names(self) -> list[str]:
        names = self.attributes.get("names")
        return list(names.value) if isinstance(names, RObject) else []


class _XdrReader:
    """Reads R's XDR serialisation (formats 2 and 3): vectors, strings, pairlists, symbols."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def _int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def _bytes(self, n: int) -> bytes:
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def read(self) -> Any:
        if self._bytes(2) != b"X\n":
            raise ValueError("not an R XDR serialisation (expected 'X\\n')")
        version = self._int()
        self._int(), self._int()  # writer and minimal reader R versions
        if version == 3:
            self._bytes(self._int())  # native encoding name
        return self._item()

    def _item(self) -> Any:
        flags = self._int()
        sexp, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if sexp == _NIL or sexp in _SPECIAL_ENVS:
            return None
        if sexp == _REF:
            index = flags >> 8 or self._int()
            return self.refs[index - 1]
        if sexp == _SYMSXP:
            symbol = self._item()
            self.refs.append(symbol)
            return symbol
        if sexp == _CHARSXP:
            n = self._int()
            return None if n == -1 else self._bytes(n).decode("utf-8", errors="replace")
        if sexp in _PAIRLISTS:
            return self._pairlist(has_attr, has_tag)
        n = self._int()
        if sexp in _INTS:
            value: Any = struct.unpack_from(f">{n}i", self._bytes(4 * n))
        elif sexp == _REALS:
            value = struct.unpack_from(f">{n}d", self._bytes(8 * n))
        elif sexp == _STRS or sexp in _LISTS:
            value = [self._item() for _ in range(n)]
        else:
            raise ValueError(f"R object type {sexp} is not supported by this reader")
        attributes = self._item() if has_attr else None
        return RObject(sexp, value, attributes if isinstance(attributes, dict) else None)

    def _pairlist(self, has_attr: int, has_tag: int) -> dict[str, Any]:
        """A pairlist as {tag: value} (attributes lists are pairlists of tagged values)."""
        if has_attr:
            self._item()
        tag = self._item() if has_tag else None
        car = self._item()
        rest = self._item()
        out = {str(tag): car}
        if isinstance(rest, dict):
            out.update(rest)
        return out


def unserialize_r(data: bytes) -> Any:
    """An R object from its XDR serialisation (see `RObject`)."""
    return _XdrReader(data).read()


def read_r_lazyload(rdx: str | Path) -> dict[str, Any]:
    """All objects of an R lazy-load database, by name: `PATH.rdx` (index) and `PATH.rdb`."""
    rdx = Path(rdx)
    index = unserialize_r(gzip.decompress(rdx.read_bytes()))
    variables = index.value[index.names.index("variables")]
    blob = rdx.with_suffix(".rdb").read_bytes()
    out = {}
    for name, where in zip(variables.names, variables.value, strict=True):
        offset, length = where.value
        chunk = blob[offset : offset + length]
        # Each blob: 4-byte big-endian uncompressed length, then a zlib stream.
        out[name] = unserialize_r(zlib.decompress(chunk[4:]))
    return out


# ----------------------------------------------------------------------- gettext catalogues
def read_mo(path: str | Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a `.mo` file (first plural form; the header entry skipped)."""
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    order = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if order is None:
        raise ValueError(f"{path}: not a gettext .mo file")
    _, n, orig_at, trans_at = struct.unpack_from(order + "4I", data, 4)
    pairs = []
    for i in range(n):
        olen, ooff = struct.unpack_from(order + "2I", data, orig_at + 8 * i)
        tlen, toff = struct.unpack_from(order + "2I", data, trans_at + 8 * i)
        msgid = data[ooff : ooff + olen].decode("utf-8", errors="replace")
        msgstr = data[toff : toff + tlen].decode("utf-8", errors="replace")
        if msgid:
            # msgctxt is prefixed with \x04; plural forms are \0-separated.
            pairs.append((msgid.split("\x04")[-1].split("\0")[0], msgstr.split("\0")[0]))
    return pairs


# ------------------------------------------------------------------------- apt descriptions
def iter_apt_descriptions(text: str) -> Iterator[tuple[str, str, str]]:
    """(package, short description, long description) from a `Translation-en` index.

    The long description's continuation lines start with a space; " ." is a paragraph break and
    lines starting with two spaces are verbatim (lists); other lines of a paragraph are joined.
    """
    for stanza in text.split("\n\n"):
        package, short, body = "", "", []
        in_desc = False
        for line in stanza.split("\n"):
            if line.startswith("Package:"):
                package = line.split(":", 1)[1].strip()
            elif line.startswith("Description-en:"):
                short, in_desc = line.split(":", 1)[1].strip(), True
            elif in_desc and line.startswith(" "):
                body.append(line[1:])
            else:
                in_desc = False
        if package and short:
            yield package, short, _join_description(body)


def _join_description(lines: list[str]) -> str:
    paras: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == ".":
            paras.append([])
        elif line.startswith(" "):  # verbatim line (list item): its own line
            paras[-1].append("\n" + line.strip())
        else:
            paras[-1].append(line.strip())
    out = []
    for p in paras:
        text = " ".join(p).replace(" \n", "\n").strip()
        if text:
            out.append(text)
    return "\n\n".join(out)


# ------------------------------------------------------------------------------- LaTeX
_TEX_DROP_ENVS = re.compile(
    r"\\begin\{(verbatim|Verbatim|lstlisting|minted|LTXexample|tcblisting|example|code|"
    r"shellcode|latexcode|tikzpicture|tabular|tabularx|longtable|equation|align|displaymath|"
    r"math|gather|multline|filecontents|comment)(\*?)\}.*?\\end\{\1\2\}",
    re.DOTALL,
)
_TEX_COMMENT = re.compile(r"(?<!\\)%.*")
_TEX_DROP_WITH_ARG = re.compile(
    r"\\(label|ref|pageref|eqref|cite|input|include|usepackage|RequirePackage|documentclass|"
    r"includegraphics|url|hypersetup|setlength|setcounter|newcommand|renewcommand|"
    r"providecommand|newenvironment|DeclareRobustCommand|ctexset|vspace|hspace|bibliography|"
    r"bibliographystyle|index|begin|end|verb\w*|lstinline|cs|env|pkg|cls|opt|file|path)"
    r"\*?(\[[^\]]*\])*(\{[^{}]*\})*"
)
_TEX_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_TEX_VERB = re.compile(r"\\verb\*?(.).*?\1")
_TEX_COMMAND = re.compile(r"\\[a-zA-Z@]+\*?(\[[^\]]*\])?")
_TEX_HEADING = re.compile(
    r"\\(part|chapter|section|subsection|subsubsection|paragraph)\*?(\[[^\]]*\])?\{([^{}]*)\}"
)
_TEX_BREAKS = re.compile(r"\\(par|item|section|subsection|subsubsection|chapter|paragraph)\b")


def tex_to_text(source: str) -> str:
    """Running text of a LaTeX document: the body between begin/end document if present, without
    comments, code/maths/table environments, references and command names (arguments of text
    commands such as \\textbf stay). Paragraphs are separated by blank lines."""
    begin = source.find("\\begin{document}")
    end = source.rfind("\\end{document}")
    if begin != -1:
        source = source[begin + len("\\begin{document}") : end if end > begin else None]
    source = "\n".join(_TEX_COMMENT.sub("", line) for line in source.split("\n"))
    source = _TEX_DROP_ENVS.sub("\n\n", source)
    source = _TEX_VERB.sub("", source)
    source = _TEX_MATH.sub("", source)
    source = _TEX_HEADING.sub(r"\n\n\3\n\n", source)
    source = _TEX_BREAKS.sub("\n\n", source)
    source = _TEX_DROP_WITH_ARG.sub("", source)
    source = source.replace("\\\\", "\n").replace("~", " ")
    source = _TEX_COMMAND.sub("", source)
    source = re.sub(r"[{}]", "", source)
    source = re.sub(r"\\([%&#_$])", r"\1", source)
    paras = []
    for para in re.split(r"\n\s*\n", source):
        lines = [line.strip() for line in para.split("\n") if line.strip()]
        paras.append(join_wrapped(lines))
    return "\n\n".join(p for p in paras if p)


def join_wrapped(lines: list[str]) -> str:
    """Join hard-wrapped lines: no space between two CJK characters, one space otherwise."""
    out = ""
    for line in lines:
        if out and not (_is_cjk(out[-1]) and _is_cjk(line[0])):
            out += " "
        out += line
    return out


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\uffef"



# ---------------------------------------------------------------------------- text files
def read_text_file(path: str | Path) -> str:
    """A (possibly .gz) text file decoded as UTF-8, or GB18030 when it is not valid UTF-8."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.GzipFile(fileobj=io.BytesIO(data)).read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")
