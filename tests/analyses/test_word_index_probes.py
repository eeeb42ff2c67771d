"""Word-index probes: known answers on small models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.word_index_probes import (
    balanced_chance,
    balanced_subset,
    fit_probe,
    lookup_predict,
    make_prompts,
    split_words,
    word_index_probes,
)
from lens_positions import HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config

PREFIX = "Hi.\nWhen"  # short: the test models have n_ctx 96
SMALL = dict(n_words=4, n_train=40, n_test=20, prefix=PREFIX, max_len=8, progress=False)


def test_word_pools_are_disjoint_and_share_every_length():
    rng = np.random.default_rng(0)
    train, test = split_words(["aa", "bb", "cc", "ddd", "eee", "ffff"], 0.5, rng)
    assert sorted(train) == sorted(test) == [2, 3]  # "ffff" alone cannot be split
    for n in train:
        assert not set(train[n]) & set(test[n])


def test_prompts_point_at_the_last_byte_of_each_word():
    rng = np.random.default_rng(0)
    prompts = make_prompts({3: ["cat"], 2: ["go"]}, 5, 3, PREFIX, rng)
    for j in range(len(prompts.label)):
        row = prompts.tokens[prompts.prompt[j]]
        word = prompts.words[j].encode()
        p = prompts.pos[j]
        assert bytes(row[p - len(word) + 1 : p + 1]) == word and row[p - len(word)] == ord(" ")
        assert p + 1 == len(row) or row[p + 1] == ord(" ")
    letters = make_prompts({3: ["cat"]}, 4, 2, PREFIX, rng, random_letters=True)
    assert all(len(w) == 3 and w.isalpha() for w in letters.words)


def test_probe_separates_a_separable_case_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 600)
    X = np.eye(10)[y] * 3 + rng.normal(size=(600, 10)) * 0.3
    assert (fit_probe(X[:400], y[:400], X[400:]) == y[400:]).mean() == 1.0
    # with shuffled labels each cluster gets a random class: chance (0.1) on average over draws
    shuffled = [(fit_probe(X[:400], rng.permutation(y[:400]), X[400:]) == y[400:]).mean() for _ in range(5)]
    assert np.mean(shuffled) < 0.1 + 0.12


def test_balanced_subset_leaves_position_uninformative():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 10, 2000)
    label = np.clip(pos // 2 + rng.integers(-1, 2, 2000), 0, 4)
    idx = balanced_subset(pos, label, rng)
    assert len(idx)
    for p in np.unique(pos[idx]):
        counts = np.unique(label[idx][pos[idx] == p], return_counts=True)[1]
        assert len(counts) >= 2 and counts.min() == counts.max()
    # the best position-only guess scores 1/k per position on the balanced set
    assert balanced_chance(pos[idx], label[idx]) < 0.55
    assert balanced_chance(pos, label) > balanced_chance(pos[idx], label[idx])


def test_lookup_is_the_best_position_only_guess():
    x = np.array([1, 1, 1, 2, 2, 5])
    y = np.array([0, 0, 1, 1, 1, 2])
    assert lookup_predict(x, y, np.array([1, 2, 5, 4, 9, 0])).tolist() == [0, 1, 2, 2, 2, 0]


def test_integer_rope_learned_position_equals_absolute_position():
    model = HookedIncrementTransformer(small_config("none")).eval()
    result = word_index_probes(model, controls=False, **SMALL)
    acc = result.accuracy
    absolute = acc[acc.predictor == "absolute position"].set_index("evaluation").accuracy
    learned = acc[acc.predictor == "learned position"]
    assert len(learned) == 2 * model.cfg.n_layers
    for row in learned.itertuples():
        assert row.accuracy == pytest.approx(absolute[row.evaluation], abs=1e-12)


def test_word_index_written_into_the_residual_is_found():
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())

    def write_index(tokens):
        # overwrite 8 dims of the stream entering block 1 with a one-hot of the spaces so far,
        # which at the end of word k (after a space-free prefix) is k + 1
        spaces = (tokens == ord(" ")).long().cumsum(1).clamp(max=7)
        signal = 10.0 * torch.nn.functional.one_hot(spaces, 8).float()

        def hook(resid, hook):
            resid = resid.clone()
            resid[..., :8] = signal
            return resid

        return [("blocks.1.hook_resid_pre", hook)]

    result = word_index_probes(model, controls=True, fwd_hooks=write_index, **SMALL)
    summary = result.summary()
    at1 = summary[summary.layer == 1].iloc[0]
    assert at1["resid test"] >= 0.99 and at1["resid balanced"] >= 0.99
    assert at1["random letters resid"] >= 0.99  # the hook counts spaces, words or not
    assert at1["abs balanced"] <= at1["chance balanced"] + 1e-9
    assert at1["abs lookup balanced"] <= at1["chance balanced"] + 1e-9


def test_every_variant_runs(any_model):
    result = word_index_probes(any_model, controls=True, **{**SMALL, "n_train": 16, "n_test": 8})
    summary = result.summary()
    assert len(summary) == any_model.cfg.n_layers + 1
    assert ("learned heads test" in summary) == (any_model.cfg.n_delta_outputs > 1)
    assert summary["resid test"].between(0, 1).all()
    assert set(result.f1["index"]) == set(range(4))


def test_refuses_prompts_longer_than_the_context():
    model = HookedIncrementTransformer(small_config("none")).eval()
    with pytest.raises(ValueError, match="n_ctx"):
        word_index_probes(model, n_words=20, n_train=2, n_test=2, progress=False)


def test_command_prints_tables_and_writes_figures(tmp_path, capsys):
    from analyses.word_index_probes import main

    model_dir = tmp_path / "model"
    perturb_deltas(HookedIncrementTransformer(small_config("per_layer", per_head=True)).eval()).save_pretrained(model_dir)
    main(["--model", str(model_dir), "--out", str(tmp_path / "out"), "--n-words", "4", "--n-train", "16",
          "--n-test", "8", "--prefix", PREFIX, "--max-len", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert "| layer | stage | resid test |" in out and "learned heads test" in out and "Per-index F1" in out
    for name in ("accuracy.csv", "f1.csv", "summary.csv", "accuracy_by_layer.png", "f1_by_index.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
