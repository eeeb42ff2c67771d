"""Word boundaries: δ hooks tied to jieba's boundaries give AUC 1.0, constant δ gives 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from analyses import word_boundaries
from analyses._common import char_windows, is_cjk
from analyses.word_boundaries import (
    auc_table,
    collect_chinese_gaps,
    collect_english_boundaries,
    english_targets,
    jieba_boundaries,
    weighted_auc,
    word_boundary_table,
)
from lens_positions.tokenizer import encode

from .conftest import EN_TEXT, ZH_TEXT, delta_hooks, make_model, strip_padding

DOCS = [
    ZH_TEXT,
    "光合作用是植物利用阳光制造养分的过程。",
    "北京是中国的首都，也是一座历史悠久的城市。",
]
LIMIT = 31  # small windows: several per document, so gaps across windows must be left out


def test_jieba_precise_mode_boundaries():
    # 人工智能 / 是 / 计算机科学 / 的 / 一个 / 分支 / 。
    assert jieba_boundaries("人工智能是计算机科学的一个分支。") == {4, 5, 10, 11, 13, 15}


def boundary_delta_table(
    docs: list[str], limit: int, big: float, small: float
) -> dict[tuple[int, ...], torch.Tensor]:
    """For every window: δ = ``big`` at the lead byte of a character that starts a jieba word
    after a CJK character, ``small`` elsewhere."""
    out = {}
    for d, doc in enumerate(docs):
        bounds = jieba_boundaries(doc)
        for w in char_windows(doc, limit, d):
            delta = torch.full((len(w.tokens),), small)
            for j in range(1, w.end - w.start):
                g = w.start + j
                if g in bounds and is_cjk(doc[g - 1]) and is_cjk(doc[g]):
                    delta[w.char_tokens[j]] = big
            out[tuple(w.tokens)] = delta
    return out


def window_hooks(table: dict, n_layers: int, per_head: int = 0):
    """δ hook factory looking each (padded) window up in ``table``."""

    def fn(tokens: torch.Tensor, layer: int) -> torch.Tensor:
        rows = []
        for row in tokens:
            key = strip_padding(row)
            d = torch.ones(len(row))
            d[: len(key)] = table[key]
            rows.append(d)
        out = torch.stack(rows)
        return out[..., None].expand(-1, -1, per_head).clone() if per_head else out

    return delta_hooks(fn, n_layers)


def count_gaps(docs: list[str], limit: int) -> tuple[int, int]:
    n = pos = 0
    for d, doc in enumerate(docs):
        bounds = jieba_boundaries(doc)
        for w in char_windows(doc, limit, d):
            for g in range(w.start + 1, w.end):
                if is_cjk(doc[g - 1]) and is_cjk(doc[g]):
                    n += 1
                    pos += g in bounds
    return n, pos


def test_delta_large_at_jieba_boundaries_gives_auc_one_and_constant_gives_half():
    model = make_model("per_layer")
    perfect = window_hooks(boundary_delta_table(DOCS, LIMIT, 3.0, 0.5), 3)
    gaps = collect_chinese_gaps(model, DOCS, max_tokens=LIMIT, fwd_hooks=perfect, progress=False)
    n, n_pos = count_gaps(DOCS, LIMIT)
    assert len(gaps.labels) == n and gaps.labels.sum() == n_pos and 0 < n_pos < n
    table = auc_table(gaps, n_boot=50, seed=1)
    assert list(table["layer"]) == ["L0", "L1", "L2"]
    assert np.allclose(table["auc"], 1.0) and np.allclose(table[["ci_low", "ci_high"]], 1.0)
    assert (table["n_gaps"] == n).all() and np.allclose(table["base_rate"], n_pos / n)
    assert np.allclose(table["mean_boundary"], 3.0) and np.allclose(table["mean_within"], 0.5)

    inverted = window_hooks(boundary_delta_table(DOCS, LIMIT, 0.5, 3.0), 3)
    table = auc_table(
        collect_chinese_gaps(model, DOCS, max_tokens=LIMIT, fwd_hooks=inverted, progress=False),
        n_boot=0,
    )
    assert np.allclose(table["auc"], 0.0)  # below 0.5: the layer compresses boundaries

    constant = delta_hooks(lambda tok, layer: torch.full(tok.shape, 1.7), 3)
    table = auc_table(
        collect_chinese_gaps(model, DOCS, max_tokens=LIMIT, fwd_hooks=constant, progress=False),
        n_boot=50,
    )
    assert np.allclose(table["auc"], 0.5)
    assert (table["ci_low"] <= 0.5).all() and (table["ci_high"] >= 0.5).all()


def test_per_head_rows_and_head_mean():
    model = make_model("per_layer", per_head=True)
    good = boundary_delta_table(DOCS, LIMIT, 3.0, 0.5)
    bad = boundary_delta_table(DOCS, LIMIT, 0.5, 3.0)
    n_heads = model.cfg.n_heads

    def fn(tokens, layer):  # head 0 marks boundaries, head 1 marks the opposite, heads 2+ constant
        out = torch.ones(*tokens.shape, n_heads)
        for b, row in enumerate(tokens):
            key = strip_padding(row)
            out[b, : len(key), 0] = good[key]
            out[b, : len(key), 1] = bad[key]
        return out

    gaps = collect_chinese_gaps(
        model, DOCS, max_tokens=LIMIT, fwd_hooks=delta_hooks(fn, 3), progress=False
    )
    table = auc_table(gaps, n_boot=20).set_index(["layer", "head"])
    assert table.loc[("L2", "0"), "auc"] == pytest.approx(1.0)
    assert table.loc[("L2", "1"), "auc"] == pytest.approx(0.0)
    assert table.loc[("L2", "2"), "auc"] == pytest.approx(0.5)
    assert ("L2", "mean") in table.index and table["reference"].isna().all()


def test_shared_model_reports_one_row_with_the_published_value():
    model = make_model("shared")
    table = auc_table(collect_chinese_gaps(model, DOCS[:1], progress=False), n_boot=20)
    assert list(table["layer"]) == ["shared"] and table["reference"].iloc[0] == 0.50


def test_english_targets_follow_the_definition():
    tokens = encode("Hi there, don't go-away 3d")
    where, labels = english_targets(tokens)
    got = {(i, chr(tokens[i])): lab for i, lab in zip(where, labels, strict=True)}
    # "H" follows the separator (not scored); "t" of "don't" follows an apostrophe and "d" a digit.
    starts = [i for (i, c), lab in got.items() if lab == 1]
    assert [chr(tokens[i]) for i in starts] == ["t", "d", "g", "a"]
    assert sum(lab == 0 for lab in labels) == len("i") + len("here") + len("on") + len("o") + len(
        "way"
    )


def test_english_auc_one_when_delta_marks_word_starts():
    model = make_model("per_layer")
    letters = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    def fn(tokens, layer):
        out = torch.ones(tokens.shape)
        for b, row in enumerate(tokens.tolist()):
            for i in range(2, len(row)):
                if row[i] in letters and row[i - 1] not in letters:
                    out[b, i] = 4.0
        return out

    gaps = collect_english_boundaries(
        model, [EN_TEXT], fwd_hooks=delta_hooks(fn, 3), progress=False
    )
    table = auc_table(gaps, n_boot=20)
    assert np.allclose(table["auc"], 1.0) and table["task"].eq("en").all()


def test_weighted_auc_matches_scikit_learn():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # with ties
    labels = (rng.random(200) < 0.3).astype(np.int64)
    weights = rng.integers(0, 4, size=(5, 200)).astype(float)
    ours = weighted_auc(scores, labels, weights)
    theirs = [roc_auc_score(labels, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_bootstrap_is_seeded():
    model = make_model("per_layer")
    gaps = collect_chinese_gaps(model, DOCS, progress=False)
    a = auc_table(gaps, n_boot=30, seed=5)
    b = auc_table(gaps, n_boot=30, seed=5)
    c = auc_table(gaps, n_boot=30, seed=6)
    assert a.equals(b) and not a["ci_low"].equals(c["ci_low"])
    assert (a["ci_low"] <= a["auc"]).all() and (a["auc"] <= a["ci_high"]).all()


def test_word_boundary_table_and_command(saved_models, text_files, tmp_path, capsys):
    model = make_model("per_layer")
    table = word_boundary_table(model, DOCS[:1], [EN_TEXT], n_boot=10, progress=False)
    assert set(table["task"]) == {"zh", "en"}
    out = tmp_path / "wb"
    word_boundaries.main(
        [
            "--model",
            saved_models["per_layer_per_head"],
            "--text-file",
            text_files["zh"],
            "--source",
            "zh",
            "--en-file",
            text_files["en"],
            "--n-boot",
            "10",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert (
        "Chinese gaps vs jieba" in printed
        and "| layer | head |" in printed
        and "English word starts" in printed
    )
    for name in ("word_boundaries.csv", "word_boundaries.png", "word_boundaries.svg"):
        assert (out / name).stat().st_size > 1000


def test_a_pretrained_rotary_bridge_is_handed_to_token_increments(tiny_bridge, tmp_path):
    """A bridge: the English word-start AUC at the BPE level (analyses.token_increments) over the
    English files; Chinese files are refused with an error naming the byte-level protocol."""
    import pandas as pd

    from analyses import token_increments
    from analyses._common import InputError

    with torch.no_grad():
        for block in tiny_bridge.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    text = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n" * 3
    en = tmp_path / "en.txt"
    en.write_text(text)
    params = word_boundaries.Params(en_file=[str(en)], max_tokens=16, progress=False)
    result = word_boundaries.run(tiny_bridge, params)
    assert result.facts["handed_over_from"] == "word_boundaries"
    assert "Not run: the Chinese gaps vs jieba" in result.markdown
    want = token_increments.token_tables(tiny_bridge, [text], n_ctx=16, max_windows=32, batch_size=8)
    pd.testing.assert_frame_equal(result.tables["word_start_auc"], want["auc"])
    assert (result.tables["word_start_auc"].auc != 0.5).all()  # δ moved: the AUC is measured
    with pytest.raises(InputError, match="Chinese protocol"):
        word_boundaries.run(tiny_bridge, word_boundaries.Params(text_file=[str(en)]))
