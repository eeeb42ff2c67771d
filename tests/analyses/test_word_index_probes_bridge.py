"""The word-index probes' BPE protocol on a tiny random Llama (fast; SmolLM2 runs are in results/)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import _probe_fits, _word_index_data
from analyses import word_index_probes as wip
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

#: Words the tiny tokenizer holds whole, and others it splits into 2-3 or more tokens.
WORDS = ("the quick brown fox jumps over lazy dog when cat sat on mat "
         "at to in it is an as be by he me we us go do no so up of or if "
         "tea sea pea ten hen pen den men net bet get jet let met pet set wet yet "
         "bat hat rat fat vat pat tab cab dab jab lab nab tan ban can fan man pan van").split() + [
    a + b + c for a in "bcdfgh" for b in "aeiou" for c in "klmnprst"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


def test_protocol_reads_each_words_last_token(tiny_dir):
    model = load_rotary_model(tiny_dir, increments="none")
    # Replace the residual after layer 0 by the token index alone: the layer-0 probe must then
    # predict exactly what the position-only probe does, which it can only if every example is
    # read at its own word's last token.
    def plant(resid, hook):
        out = torch.zeros_like(resid)
        out[..., 0] = 50.0 * torch.arange(resid.shape[1], dtype=resid.dtype)
        return out

    result = wip.token_word_index_probes(model, n_train=60, n_test=30, words=WORDS, batch_size=7, letters_per_length=20,
                     fwd_hooks=[("blocks.0.hook_resid_post", plant)])
    acc, info = result["accuracy"], result["info"]
    words = acc[acc.dataset == "words"]
    layer0 = words[(words.predictor == "residual") & (words.layer == 0)]
    pos_only = words[words.predictor == "absolute position"]
    assert pos_only.test.item() > 2 / 7  # word index is visible in position (unbalanced classes)
    assert layer0.test.item() == pos_only.test.item()
    assert layer0.balanced.item() == pos_only.balanced.item()
    assert info["max |learned position - token index|"] == 0.0  # δ = 1: positions are indices
    checked = info["test prompts equal to whole-text tokenisation"]
    assert checked.split(" of ")[0] == checked.split(" of ")[1]
    assert set(acc.dataset) == {"words", "random letters"}
    assert len(result["f1"]) == 2 * 7


def test_grafted_model_adds_learned_position_predictors(tiny_dir):
    model = load_rotary_model(tiny_dir, increments="per_layer")
    result = wip.token_word_index_probes(model, n_train=30, n_test=15, words=WORDS, controls=False)
    predictors = set(result["accuracy"].predictor)
    assert {"learned position", "residual + learned position"} <= predictors
    text = wip.token_report(result, "tiny")
    assert "0.749" in text and "learned position test" in text


def test_balanced_subset_removes_position_information():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 12, 600)
    label = np.clip(pos // 2 + rng.integers(-1, 2, 600), 0, 6)
    keep = _probe_fits.balanced_subset(pos, label, rng)
    assert len(keep) > 0
    for p in np.unique(pos[keep]):
        _, counts = np.unique(label[keep][pos[keep] == p], return_counts=True)
        assert len(counts) >= 2 and counts.min() == counts.max()
    # hindsight per-position majority on the balanced set = mean over its examples of 1/k
    k = {p: len(np.unique(label[keep][pos[keep] == p])) for p in np.unique(pos[keep])}
    expected = np.mean([1 / k[p] for p in pos[keep]])
    assert _probe_fits.balanced_chance(pos[keep], label[keep]) == pytest.approx(expected)
    assert _probe_fits.balanced_chance(pos, label) > expected


def test_missing_word_list_names_the_package(tmp_path):
    with pytest.raises(_word_index_data.WordListMissing, match="apt-get install wamerican"):
        _word_index_data.load_words(tmp_path / "words")


@pytest.mark.skipif(not _word_index_data.WORDLIST.is_file(), reason="wamerican word list not installed (scripts/setup.sh)")
def test_word_index_probes_command_dispatches_pretrained_models(tiny_dir, tmp_path, capsys):
    from analyses import word_index_probes

    out = tmp_path / "out"
    word_index_probes.main(["--model", str(tiny_dir), "--out", str(out), "--n-train", "30",
                            "--n-test", "15", "--no-controls"])
    assert "Word-index probes on" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"accuracy.csv", "f1.csv", "summary.csv",
                                               "accuracy_by_layer.png", "accuracy_by_layer.svg"}
