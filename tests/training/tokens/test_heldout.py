"""Held-out text (`training.tokens.heldout`): the validation documents by language, and the shipped sample."""

from __future__ import annotations

import json

from lens_positions.samples import SAMPLE_DIR, chinese_fraction, in_held_out, sample_files
from training.tokens.heldout import docs_for_bytes, heldout_texts, main, split_parts

from ...conftest import EN_DOC, MIXED_EN, ZH_DOC


def test_split_parts_keeps_the_text_and_the_bound():
    text = "ab\n" * 10 + "x" * 25 + "\n中文" * 3
    parts = split_parts(text, 8)
    assert "".join(parts) == text
    assert all(0 < len(p.encode("utf-8")) <= 8 for p in parts)
    assert split_parts("short", 100) == ["short"]


def test_heldout_texts_split_by_language(heldout_token_dir, tmp_path):
    paths = heldout_texts(heldout_token_dir, tmp_path / "heldout")
    rows = {k: [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] for k, p in paths.items()}
    assert len(rows["zh"]) == 2 and len(rows["en"]) == 2
    assert all(chinese_fraction(r["text"]) >= 0.05 for r in rows["zh"])
    assert all(r["source"] == "en" for r in rows["en"]) and any("中文" in r["text"] for r in rows["en"])
    # only validation documents, never the training ones
    assert not any("训练" in r["text"] or "training" in r["text"] for k in rows for r in rows[k])
    # all.jsonl holds the same bytes, in parts
    for lang in ("zh", "en"):
        whole = sorted(r["text"] for r in rows[lang])
        by_doc: dict[int, list] = {}
        for r in rows["all"]:
            if r["source"] == lang:
                by_doc.setdefault(r["val_index"], []).append(r)
        joined = sorted("".join(p["text"] for p in sorted(v, key=lambda p: p["part"])) for v in by_doc.values())
        assert joined == whole
    n, total = docs_for_bytes(paths["all"], 10)
    assert n == 1 and total >= 10



def test_sample_is_whole_validation_documents_with_their_ids(heldout_token_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [ZH_DOC, MIXED_EN, ZH_DOC.replace("人工", "机器"), EN_DOC.upper()]
    (corpus / "en.jsonl").write_text("".join(
        json.dumps({"id": f"libreoffice-help/en/{i}", "text": d}, ensure_ascii=False) + "\n"
        for i, d in enumerate(docs)
    ), encoding="utf-8")  # fmt: skip
    assert main(["sample", "--data", str(heldout_token_dir), "--corpus", str(corpus), "--out",
                 str(tmp_path / "sample"), "--bytes", "10"]) == 0  # fmt: skip
    full = heldout_texts(heldout_token_dir, tmp_path / "full")
    for lang in ("zh", "en"):
        rows = [json.loads(x) for x in (tmp_path / "sample" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        first = json.loads(full[lang].read_text(encoding="utf-8").splitlines()[0])
        assert len(rows) == 1 and rows[0]["text"] == first["text"]  # one document passes 10 bytes
        assert rows[0]["id"].startswith("libreoffice-help/")
    licence = (tmp_path / "sample" / "LICENSE.md").read_text(encoding="utf-8")
    assert "MPL-2.0" in licence and "`libreoffice-help/...` (2 documents)" in licence
    assert main(["sample", "--data", str(tmp_path / "missing")]) == 2


def test_shipped_sample_never_trained_on():
    """Every shipped document falls in the hash split's validation set of the shipped models'
    token folder (the card's split rule), and each file holds its language."""
    import json as json_

    from lens_positions.checkpoints import resolve

    card = json_.loads((resolve("bilingual-per-layer") / "card.json").read_text(encoding="utf-8"))
    fraction = card["data"]["meta"]["split"]["val_fraction"]
    zh, en = sample_files()
    for path, lang in ((zh, "zh"), (en, "en")):
        rows = [json_.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        assert 20 <= len(rows) and 100_000 <= sum(len(r["text"].encode()) for r in rows) <= 250_000
        assert all(in_held_out(r["text"], fraction) for r in rows)
        assert all((chinese_fraction(r["text"]) >= 0.05) == (lang == "zh") for r in rows)
        assert all(r["source"] == lang and r["id"] for r in rows)
    assert "GPL" in (SAMPLE_DIR / "LICENSE.md").read_text(encoding="utf-8")
