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


def window_hooks(table: dict, n_layers: int, per_head: int = 0, pad: int | None = None):
    """δ hook factory looking each (padded) window up in ``table``."""

    def fn(tokens: torch.Tensor, layer: int) -> torch.Tensor:
        rows = []
        for row in tokens:
            key = strip_padding(row) if pad is None else strip_padding(row, pad)
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


def test_a_pretrained_rotary_bridge_hands_english_to_token_increments(tiny_bridge, tmp_path):
    """A bridge: the English word-start AUC at the BPE level (analyses.token_increments) over the
    English files; the Chinese protocol runs on its tokens (tested below)."""
    import pandas as pd

    from analyses import token_increments

    with torch.no_grad():
        for block in tiny_bridge.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    text = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n" * 3
    en = tmp_path / "en.txt"
    en.write_text(text)
    params = word_boundaries.Params(en_file=[str(en)], max_tokens=16, progress=False)
    result = word_boundaries.run(tiny_bridge, params)
    assert result.facts["handed_over_from"] == "word_boundaries"
    want = token_increments.token_tables(tiny_bridge, [text], n_ctx=16, max_windows=32, batch_size=8)
    pd.testing.assert_frame_equal(result.tables["word_start_auc"], want["auc"])
    assert (result.tables["word_start_auc"].auc != 0.5).all()  # δ moved: the AUC is measured
    assert "word_boundaries" not in result.tables  # no Chinese asked for


# ------------------------------------------------------------------ the Chinese protocol on tokens
ZH_CORPUS = [ZH_TEXT, *DOCS[1:], "机器学习是人工智能的一个分支。软件包管理器会自动安装所有依赖的软件包。"] * 4


@pytest.fixture(scope="module")
def zh_bridge(tmp_path_factory):
    """A tiny per-layer bridge whose byte-level BPE was trained on Chinese: tokens of several
    characters, and tokens joining the end of one character to the start of the next."""
    from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

    folder = save_tiny_llama(tmp_path_factory.mktemp("zh_llama"), vocab_size=420, texts=ZH_CORPUS)
    return load_rotary_model(folder, increments="per_layer")


def test_token_windows_say_where_a_unit_starts(zh_bridge):
    """Independent of the offsets: a character starts a unit exactly when the window's tokens
    before it decode to the text before it."""
    from lens_positions.subject import subject_of

    s = subject_of(zh_bridge)
    tok = zh_bridge.tokenizer
    seen = {True: 0, False: 0}
    for d, doc in enumerate(DOCS + ZH_CORPUS[-1:]):
        for w in s.windows(doc, 24, d):
            assert w.tokens[0] == s.start_id and len(w.tokens) <= 24
            for j in range(w.end - w.start):
                prefixes = {tok.decode(w.tokens[1:k]) for k in range(1, len(w.tokens) + 1)}
                clean = doc[w.start : w.start + j] in prefixes
                assert w.starts_unit(j) == clean, (doc, j)
                seen[clean] += 1
                if clean:  # the unit at char_tokens[j] is the one that starts there
                    assert tok.decode(w.tokens[1 : w.char_tokens[j]]) == doc[w.start : w.start + j]
    assert seen[True] > 0 and seen[False] > 0  # both cases occur with this tokenizer


def test_chinese_gaps_on_tokens_score_token_starts_and_count_the_rest(zh_bridge):
    from lens_positions.subject import subject_of

    s = subject_of(zh_bridge)
    limit = 20
    table, scored, hidden, hidden_bounds = {}, 0, 0, 0
    for d, doc in enumerate(DOCS):
        bounds = jieba_boundaries(doc)
        for w in s.windows(doc, limit, d):
            delta = torch.full((len(w.tokens),), 0.5)
            for j in range(1, w.end - w.start):
                g = w.start + j
                if not (is_cjk(doc[g - 1]) and is_cjk(doc[g])):
                    continue
                if w.starts_unit(j):
                    scored += 1
                    if g in bounds:
                        delta[w.char_tokens[j]] = 3.0
                else:
                    hidden += 1
                    hidden_bounds += g in bounds
            table[tuple(w.tokens)] = delta
    gaps = collect_chinese_gaps(zh_bridge, DOCS, max_tokens=limit, fwd_hooks=window_hooks(table, 2, pad=s.pad_id),
                                progress=False)
    n, n_pos = count_gaps(DOCS, 10_000)  # every adjacent CJK pair (windows never split a pair's count)
    assert gaps.unit == "token" and len(gaps.labels) == scored and gaps.hidden_gaps == hidden > 0
    assert gaps.hidden_boundaries == hidden_bounds
    assert len(gaps.labels) + gaps.hidden_gaps <= n
    aucs = auc_table(gaps, n_boot=20)
    assert list(aucs["layer"]) == ["L0", "L1"] and np.allclose(aucs["auc"], 1.0)
    f = gaps.facts()
    assert f["hidden_boundary_share"] == pytest.approx(hidden_bounds / (hidden_bounds + gaps.labels.sum()))
    assert f["scored_inside_word_share"] == pytest.approx(1 - gaps.labels.mean())


def test_byte_models_hide_no_gap():
    gaps = collect_chinese_gaps(make_model("per_layer"), DOCS, max_tokens=LIMIT, progress=False)
    assert gaps.hidden_gaps == 0 and gaps.unit == "byte"


def test_residual_probe_finds_a_planted_boundary_feature():
    """probe_table on gaps whose residual carries the label in one feature (AUC ~1) or nothing
    (AUC ~0.5), split by document."""
    from analyses._gaps import GapSet, probe_table

    rng = np.random.default_rng(0)
    n = 600
    labels = rng.integers(0, 2, n)
    docs = np.repeat(np.arange(30), n // 30)
    noise = rng.normal(size=(n, 8)).astype(np.float32)
    planted = noise.copy()
    planted[:, 3] += 4 * labels
    gaps = GapSet("zh", ["L0", "L1"], np.ones((n, 2, 1)), labels, docs, "token",
                  residual={0: noise, 1: planted})
    table = probe_table(gaps, n_boot=50, seed=0)
    assert list(table.layer) == ["L0", "L1"]
    assert abs(table.auc[0] - 0.5) < 0.1 and table.auc[1] > 0.97
    assert (table.n_train + table.n_test == n).all() and 0.6 < table.n_train[0] / n < 0.8
    assert table.ci_low[1] <= table.auc[1] <= table.ci_high[1]


def test_command_on_a_bridge_runs_chinese_with_the_probe(zh_bridge, tmp_path):
    zh = tmp_path / "zh.txt"
    zh.write_text("\n\n".join(DOCS))
    result = word_boundaries.run(zh_bridge, word_boundaries.Params(
        text_file=[str(zh)], max_tokens=20, n_boot=10, probe=True, progress=False))
    assert set(result.tables) == {"word_boundaries", "residual_probe"}
    assert list(result.tables["residual_probe"].layer) == ["L0", "L1"]
    assert "inside a token" in result.markdown and "Residual probe" in result.markdown
    assert result.facts["hidden_gaps"] > 0
