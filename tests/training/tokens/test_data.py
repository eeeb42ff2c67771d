"""Data side of training: sources, split, token files, windows, offline corpus builder.

Every corpus here is built in tmp_path; nothing depends on the Debian packages or the network.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from training.corpus.build import build_corpus, drop_contained
from training.corpus.build import main as build_main
from training.corpus.html_text import html_to_sections
from training.tokens import byte_tokens as corpus
from training.tokens import sources
from training.tokens.byte_tokens import (
    SEPARATOR_ID,
    decode_documents,
    encode_document,
    load_tokens,
    prepare_tokens,
    read_metadata,
)
from training.tokens.sources import Document, interleave, iter_documents, parse_spec
from training.tokens.windows import (
    TrainWindows,
    batch_starts,
    train_batch,
    val_batches,
    val_starts,
    worker_steps,
)

torch.set_num_threads(1)  # 2-core machines; the tests need no parallelism

EN = [f"English document {i}: the quick brown fox #{i * 7919}." for i in range(40)]
ZH = [f"中文文档{i}：敏捷的棕色狐狸跳过了懒狗。编号{i * 104729}" for i in range(40)]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    return path


def make_corpus(tmp_path: Path, en=EN, zh=ZH) -> str:
    """Two JSON-lines sources; returns their spec."""
    write_jsonl(tmp_path / "en.jsonl", en)
    write_jsonl(tmp_path / "zh.jsonl", zh)
    return f"local:{tmp_path}/en.jsonl=1,local:{tmp_path}/zh.jsonl=1"


def texts(spec: str) -> list[str]:
    return [d.text for d in iter_documents(spec)]


# ---------------------------------------------------------------- sources


def test_parse_spec_names_weights_defaults():
    specs = parse_spec(
        "en@hf:wikimedia/wikipedia:20231101.en=2, hf:wikimedia/wikipedia:20231101.zh,"
        "local:data/x/web.parquet=0.5"
    )
    assert [(s.name, s.kind, s.target, s.weight) for s in specs] == [
        ("en", "hf", "wikimedia/wikipedia:20231101.en", 2.0),
        ("20231101.zh", "hf", "wikimedia/wikipedia:20231101.zh", 1.0),
        ("web", "local", "data/x/web.parquet", 0.5),
    ]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty source spec"),
        ("s3:bucket/x.jsonl", "unknown source"),
        ("data/en.jsonl", "unknown source"),
        ("local:a.jsonl=heavy", "not a number"),
        ("local:a.jsonl=0", "must be > 0"),
        ("local:a.csv", "unknown file type"),
        ("local:a/en.jsonl,local:b/en.jsonl", "duplicate source names"),
    ],
)
def test_parse_spec_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_local_jsonl_parquet_text_share_the_datasets_streaming_path(tmp_path, monkeypatch):
    import datasets

    write_jsonl(tmp_path / "a.jsonl", ["json one", "json two"])
    pq.write_table(
        pa.table({"text": ["parquet one", "parquet two"], "id": [1, 2]}), tmp_path / "b.parquet"
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "1.txt").write_text("text one\n\nsecond paragraph of text one\n")
    (tmp_path / "docs" / "2.txt").write_text("text two")

    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or real(*a, **k)
    )
    assert texts(f"local:{tmp_path}/a.jsonl") == ["json one", "json two"]
    assert texts(f"local:{tmp_path}/b.parquet") == ["parquet one", "parquet two"]
    # One document per .txt file; blank lines stay inside the document.
    assert texts(f"local:{tmp_path}/docs/*.txt") == [
        "text one\n\nsecond paragraph of text one\n",
        "text two",
    ]
    assert [a[0] for a, _ in calls] == ["json", "parquet", "text"]
    assert all(k["streaming"] and k["split"] == "train" for _, k in calls)


def test_hub_source_calls_load_dataset_with_path_and_config(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, **kw):
        calls.append((path, kw))
        return iter([{"text": f"{kw['name']} article {i}", "title": "t"} for i in range(3)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = "en@hf:wikimedia/wikipedia:20231101.en=1,zh@hf:wikimedia/wikipedia:20231101.zh=1"
    docs = list(iter_documents(spec))
    assert [d.text for d in docs[:4]] == [
        "20231101.en article 0",
        "20231101.zh article 0",
        "20231101.en article 1",
        "20231101.zh article 1",
    ]
    assert [d.doc_id for d in docs[:2]] == ["en:0", "zh:0"]
    assert calls[0] == (
        "wikimedia/wikipedia",
        {"name": "20231101.en", "data_files": None, "split": "train", "streaming": True},
    )


def test_interleave_by_weight_and_exhaustion():
    def stream(name, n):
        return iter([Document(name, i, f"{name}{i}") for i in range(n)])

    equal = [d.text for d in interleave([stream("a", 3), stream("b", 3)], [1, 1])]
    assert equal == ["a0", "b0", "a1", "b1", "a2", "b2"]
    two_to_one = [d.source for d in interleave([stream("a", 100), stream("b", 100)], [2, 1])][:30]
    assert two_to_one.count("a") == 20 and two_to_one[:6] == ["a", "b", "a", "a", "b", "a"]
    # When a source runs out the rest continue, so nothing is lost.
    uneven = [d.text for d in interleave([stream("a", 1), stream("b", 3)], [1, 1])]
    assert uneven == ["a0", "b0", "b1", "b2"]


def test_weights_through_spec(tmp_path):
    write_jsonl(tmp_path / "en.jsonl", EN[:6])
    write_jsonl(tmp_path / "zh.jsonl", ZH[:3])
    docs = list(iter_documents(f"local:{tmp_path}/en.jsonl=2,local:{tmp_path}/zh.jsonl=1"))
    assert [d.source for d in docs] == ["en", "zh", "en", "en", "zh", "en", "en", "zh", "en"]
    assert [d.index for d in docs if d.source == "zh"] == [0, 1, 2]


def test_missing_file_and_missing_text_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        iter_documents(f"local:{tmp_path}/nope.jsonl")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        prepare_tokens(f"local:{tmp_path}/nope.jsonl", tmp_path / "out", progress=False)
    (tmp_path / "c.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(KeyError, match="no 'text' field"):
        list(iter_documents(f"local:{tmp_path}/c.jsonl"))


# ---------------------------------------------------------------- tokens and split


def test_separator_after_every_document():
    tokens = np.concatenate([encode_document(t) for t in ["ab", "", "中文"]])
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == [97, 98, 256, 256, 0xE4, 0xB8, 0xAD, 0xE6, 0x96, 0x87, 256]
    assert decode_documents(tokens) == ["ab", "", "中文"]


def test_separator_matches_model_tokenizer():
    config = pytest.importorskip("lens_positions.config")
    assert config.SEPARATOR_ID == SEPARATOR_ID


def test_prepare_round_trip_and_metadata(tmp_path):
    spec = make_corpus(tmp_path, en=EN[:5] + ["", "  "], zh=ZH[:5])
    meta = prepare_tokens(spec, tmp_path / "tok", val_docs=2, progress=False)
    train, val = load_tokens(tmp_path / "tok", "train"), load_tokens(tmp_path / "tok", "val")
    assert isinstance(train, np.memmap) and train.dtype == np.uint16
    # First two interleaved documents are validation, the rest train, in interleaved order.
    assert decode_documents(val) == [EN[0], ZH[0]]
    assert decode_documents(train) == [
        t for pair in zip(EN[1:5], ZH[1:5], strict=True) for t in pair
    ]
    for split, tokens in (("train", train), ("val", val)):
        info = meta[split]
        assert info["tokens"] == len(tokens) and tokens[-1] == SEPARATOR_ID
        assert int((tokens == SEPARATOR_ID).sum()) == info["documents"]
        assert info["text_bytes"] == sum(info["bytes_by_source"].values())
    assert meta["train"]["bytes_by_source"]["zh"] == sum(len(t.encode()) for t in ZH[1:5])
    assert meta["train"]["documents_by_source"] == {"en": 4, "zh": 4}
    assert meta["skipped_empty"] == 2 and meta["documents_read"] == 12
    assert meta["split"]["rule"] == "first" and meta["spec"] == spec
    assert read_metadata(tmp_path / "tok") == meta


def test_hash_split_is_disjoint_and_independent_of_order(tmp_path):
    en = EN + EN[:5]  # exact duplicates must land on the same side
    spec = make_corpus(tmp_path, en=en)
    meta = prepare_tokens(spec, tmp_path / "a", val_fraction=0.2, progress=False)
    train = load_tokens(tmp_path / "a", "train")
    val_docs = decode_documents(load_tokens(tmp_path / "a", "val"))
    assert 0 < len(val_docs) < 40 and meta["split"]["rule"] == "hash"
    # Separator -> 0xFF, a byte UTF-8 never uses, so the train stream is searchable as bytes.
    train_bytes = np.where(train == SEPARATOR_ID, 0xFF, train).astype(np.uint8).tobytes()
    for text in val_docs:
        assert text.encode() not in train_bytes
    # The rule looks at text only: other weights and order give the same validation set.
    spec2 = f"local:{tmp_path}/zh.jsonl=3,local:{tmp_path}/en.jsonl=1"
    prepare_tokens(spec2, tmp_path / "b", val_fraction=0.2, progress=False)
    assert sorted(decode_documents(load_tokens(tmp_path / "b", "val"))) == sorted(val_docs)


def test_first_docs_split_drops_later_duplicates_of_validation(tmp_path):
    spec = make_corpus(tmp_path, en=EN[:4] + [EN[0]], zh=ZH[:4])
    meta = prepare_tokens(spec, tmp_path / "tok", val_docs=1, progress=False)
    train_docs = decode_documents(load_tokens(tmp_path / "tok", "train"))
    assert EN[0] not in train_docs and meta["dropped_duplicates_of_val"] == 1


def test_limits(tmp_path):
    spec = make_corpus(tmp_path)
    meta = prepare_tokens(spec, tmp_path / "tok", val_docs=2, max_docs=10, progress=False)
    assert meta["train"]["documents"] + meta["val"]["documents"] == 10
    meta = prepare_tokens(spec, tmp_path / "tok", val_docs=2, max_bytes=300, progress=False)
    assert 300 <= meta["train"]["text_bytes"] + meta["val"]["text_bytes"] < 300 + 100


def test_empty_corpus_and_empty_split_errors(tmp_path):
    write_jsonl(tmp_path / "e.jsonl", ["", "   ", "\n"])
    with pytest.raises(ValueError, match="empty corpus"):
        prepare_tokens(f"local:{tmp_path}/e.jsonl", tmp_path / "tok", progress=False)
    write_jsonl(tmp_path / "one.jsonl", ["a single document"])
    with pytest.raises(ValueError, match="train split is empty"):
        prepare_tokens(f"local:{tmp_path}/one.jsonl", tmp_path / "tok", val_docs=1, progress=False)
    assert not (tmp_path / "tok" / "meta.json").exists()
    assert list((tmp_path / "tok").iterdir()) == []  # no temporary files left behind


def test_interrupted_prepare_keeps_previous_files(tmp_path, monkeypatch):
    spec = make_corpus(tmp_path)
    out = tmp_path / "tok"
    prepare_tokens(spec, out, val_docs=4, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_documents(spec):
        for i, doc in enumerate(iter_documents(spec)):
            if i == 30:
                raise RuntimeError("disk on fire")
            yield doc

    monkeypatch.setattr(corpus, "iter_documents", failing_documents)
    monkeypatch.setattr(corpus, "FLUSH_TOKENS", 16)  # so partial data did reach the temp file
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_tokens(make_corpus(tmp_path, en=ZH, zh=EN), out, val_docs=4, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # intact, no *.tmp left
    read_metadata(out)
    # A first run that fails leaves nothing that looks complete.
    with pytest.raises(RuntimeError):
        prepare_tokens(spec, tmp_path / "fresh", val_docs=4, progress=False)
    assert list((tmp_path / "fresh").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_tokens(tmp_path / "fresh")


def test_truncated_token_file_is_rejected(tmp_path):
    out = tmp_path / "tok"
    prepare_tokens(make_corpus(tmp_path), out, val_docs=4, progress=False)
    data = (out / "train.bin").read_bytes()
    (out / "train.bin").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="does not match"):
        load_tokens(out, "train")


# ---------------------------------------------------------------- windows


@pytest.fixture
def token_dir(tmp_path) -> Path:
    spec = make_corpus(
        tmp_path, en=EN * 5, zh=ZH * 5
    )  # repeated texts: hash split keeps them apart
    prepare_tokens(spec, tmp_path / "tok", val_fraction=0.25, progress=False)
    return tmp_path / "tok"


def test_train_batch_windows_are_slices_with_shifted_targets(token_dir):
    tokens = load_tokens(token_dir, "train")
    x, y = train_batch(tokens, step=3, batch_size=8, n_ctx=32, seed=1)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.long
    assert x.is_contiguous() and y.is_contiguous()
    starts = batch_starts(3, 8, len(tokens), 32, seed=1)
    for row, s in enumerate(starts):
        assert x[row].tolist() == tokens[s : s + 32].tolist()
        assert y[row].tolist() == tokens[s + 1 : s + 33].tolist()
    assert int(x.max()) <= SEPARATOR_ID and (x == SEPARATOR_ID).any()  # windows cross documents


def test_windows_deterministic_in_seed_step_rank(token_dir):
    tokens = load_tokens(token_dir, "train")
    kw = dict(batch_size=4, n_ctx=16, seed=7, rank=1, world_size=2)
    a, b = train_batch(tokens, 5, **kw), train_batch(tokens, 5, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], train_batch(tokens, 6, **kw)[0])
    assert not torch.equal(a[0], train_batch(tokens, 5, **{**kw, "seed": 8})[0])
    assert not torch.equal(a[0], train_batch(tokens, 5, **{**kw, "rank": 0})[0])


def test_no_two_ranks_or_workers_yield_the_same_windows():
    n_tokens, n_ctx, batch, steps = 10**8, 512, 16, 200
    seen: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for rank in range(2):
        for worker in range(2):
            seen[rank, worker] = {
                (step, int(s))
                for step in worker_steps(0, steps, worker, 2)
                for s in batch_starts(step, batch, n_tokens, n_ctx, seed=0, rank=rank, world_size=2)
            }
    streams = list(seen.values())
    assert all(len(s) == steps // 2 * batch for s in streams)
    for i in range(len(streams)):
        for j in range(i + 1, len(streams)):
            offsets_i = {s for _, s in streams[i]}
            assert not offsets_i & {s for _, s in streams[j]}
    # Workers partition the steps; together they cover every step exactly once.
    steps_seen = sorted(s for w in range(2) for s in worker_steps(0, steps, w, 2))
    assert steps_seen == list(range(steps))


def test_dataloader_workers_reproduce_train_batch_in_step_order(token_dir):
    tokens = load_tokens(token_dir, "train")
    ds = TrainWindows(
        token_dir, batch_size=4, n_ctx=16, seed=3, rank=1, world_size=2, start_step=10, end_step=16
    )
    got = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert len(got) == 6
    for step, (x, y) in zip(range(10, 16), got, strict=True):
        ex, ey = train_batch(tokens, step, 4, 16, seed=3, rank=1, world_size=2)
        assert torch.equal(x, ex) and torch.equal(y, ey)
    # Resuming mid-run: a new dataset from step 13 continues the same stream.
    resumed = list(
        TrainWindows(token_dir, 4, 16, seed=3, rank=1, world_size=2, start_step=13, end_step=16)
    )
    assert all(torch.equal(a[0], b[0]) for a, b in zip(resumed, got[3:], strict=True))


def test_validation_windows_fixed_and_cover_each_target_once(token_dir):
    val = load_tokens(token_dir, "val")
    n_ctx = 16
    starts = val_starts(len(val), n_ctx)
    assert starts.tolist() == list(range(0, (len(val) - 1) // n_ctx * n_ctx, n_ctx))
    batches = list(val_batches(val, n_ctx, batch_size=5))
    y = torch.cat([b[1] for b in batches]).flatten()
    assert y.tolist() == val[1 : 1 + len(y)].tolist()  # every target once, in order
    assert all(
        torch.equal(a[0], b[0]) for a, b in zip(batches, val_batches(val, n_ctx, 5), strict=True)
    )
    assert sum(len(b[0]) for b in val_batches(val, n_ctx, 5, max_windows=7)) == 7
    parts = [
        torch.cat([b[0] for b in val_batches(val, n_ctx, 5, rank=r, world_size=2)])
        for r in range(2)
    ]
    assert len(parts[0]) + len(parts[1]) == len(starts)
    with pytest.raises(ValueError, match="cannot hold one window"):
        val_starts(10, 16)


# ---------------------------------------------------------------- offline corpus builder


PAGE = """<?xml version="1.0"?><html><head><title>{title}</title><script>var x = 1;</script></head>
<body><div id="banner"><a href="#"><span>Download the ebook</span></a></div>
<ul class="docnav"><li><a href="prev.html">Prev</a></li></ul>
<div class="section"><h2 class="title">{title}</h2><div class="para">
    {body}
</div><pre>$ apt-get   install
  indented line</pre></div><ul class="docnav"><li>Next</li></ul></body></html>"""

REFERENCE_PAGE = """<html><head><title>Chapter</title></head><body>
<div class="navheader"><table><tr><th>Chapter 1</th></tr></table></div>
<div class="toc"><dl><dt>1.1 toc entry</dt></dl></div>
<h1>Chapter 1. {word}</h1><p>{intro}</p>
<h2>1.1. First</h2><p>{first}</p><h3>1.1.1. Sub</h3><p>{sub}</p>
<div class="navfooter">next</div></body></html>"""


def fake_debian_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    long_en = "Debian is a free operating system. " * 10
    long_zh = "Debian 是一个自由的操作系统，由志愿者维护。" * 10
    for lang, body in (("en-US", long_en), ("zh-CN", long_zh)):
        d = root / "usr/share/doc/debian-handbook/html" / lang
        d.mkdir(parents=True)
        (d / "apt.html").write_text(PAGE.format(title="APT", body=body), encoding="utf-8")
        (d / "short.html").write_text(PAGE.format(title="x", body="tiny"), encoding="utf-8")
    ref = root / "usr/share/debian-reference"
    ref.mkdir(parents=True)
    for suffix, text in (("en", long_en), ("zh-cn", long_zh)):
        page = REFERENCE_PAGE.format(word="Tutorial", intro=text, first=text[::-1], sub=text + "!")
        (ref / f"ch01.{suffix}.html").write_text(page, encoding="utf-8")
    return root


def test_html_text_strips_markup_and_hidden_variants():
    html = (
        "<html><head><style>p {}</style></head><body><header>menu</header><p>Press "
        '<span class="switchinline"><span hidden="true" id="MACtext_1" class="MAC">Command</span>'
        '<span hidden="true" id="defaulttext_1">Ctrl</span></span>+O &amp; wait.</p>'
        "<p>中文换行\n  测试</p><footer>debug</footer></body></html>"
    )
    assert html_to_sections(html) == ["Press Ctrl+O & wait.\n中文换行测试"]


def test_builder_on_fake_debian_tree(tmp_path, capsys):
    root = fake_debian_root(tmp_path)
    out = tmp_path / "corpus"
    assert build_main(["--out", str(out), "--root", str(root), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "en:" in printed and "zh:" in printed and "bytes" in printed
    docs = {
        lang: [json.loads(line) for line in (out / f"{lang}.jsonl").open(encoding="utf-8")]
        for lang in ("en", "zh")
    }
    # Handbook: one page kept, the near-empty page dropped. Reference: split at h2/h3.
    assert [d["id"] for d in docs["en"]] == [
        "debian-handbook/en/apt.html#0",
        "debian-reference/en/ch01.en.html#0",
        "debian-reference/en/ch01.en.html#1",
        "debian-reference/en/ch01.en.html#2",
    ]
    page = docs["zh"][0]["text"]
    assert (
        page.startswith("APT\nDebian 是一个自由的操作系统")
        and "Download" not in page
        and "Prev" not in page
    )
    assert "$ apt-get   install\n  indented line" in page  # <pre> kept verbatim
    assert (
        docs["en"][1]["text"].startswith("Chapter 1. Tutorial")
        and "toc entry" not in docs["en"][1]["text"]
    )
    assert docs["en"][3]["text"].startswith("1.1.1. Sub")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["languages"]["zh"]["documents"] == 4 and stats["dropped"]["en"] == {"short": 1}
    assert stats["languages"]["en"]["bytes"] == sum(len(d["text"].encode()) for d in docs["en"])
    assert stats["languages"]["zh"]["cjk_chars"] > 0
    # The corpus feeds prepare_tokens through the same spec syntax as the Hub.
    meta = prepare_tokens(
        f"local:{out}/en.jsonl=1,local:{out}/zh.jsonl=1",
        tmp_path / "tok",
        val_docs=1,
        progress=False,
    )
    assert meta["train"]["documents_by_source"] == {"en": 3, "zh": 4}


def test_builder_drops_documents_contained_in_others():
    docs = [
        {"text": t}
        for t in ["Zoom\nSets the zoom.", "Status bar\nZoom\nSets the zoom.\nMore.", "Other"]
    ]
    dropped = Counter()
    assert [d["text"] for d in drop_contained(docs, dropped)] == [docs[1]["text"], "Other"]
    assert dropped == {"contained": 1}


def test_builder_names_apt_get_for_missing_packages(tmp_path, capsys):
    root = fake_debian_root(tmp_path)
    assert build_main(["--out", str(tmp_path / "c"), "--root", str(root), "--sources", "v1"]) == 2
    err = capsys.readouterr().err
    assert (
        "apt-get install" in err
        and "libreoffice-help-zh-cn" in err
        and "libreoffice-help-en-us" in err
    )
    assert not (tmp_path / "c" / "en.jsonl").exists()
    stats = build_corpus(
        tmp_path / "c",
        root=root,
        sources=("handbook", "libreoffice"),
        skip_missing=True,
        progress=False,
    )
    assert stats["languages"]["en"]["documents"] == 1 and len(stats["missing"]) == 2
    with pytest.raises(ValueError, match="unknown sources"):
        build_corpus(tmp_path / "c", root=root, sources=("wikipedia",))


def test_sources_module_documents_the_spec():
    assert "[NAME@]KIND:TARGET[=WEIGHT]" in sources.__doc__
