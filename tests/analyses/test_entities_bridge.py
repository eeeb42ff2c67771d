"""Entities at the token level on a tiny random Llama: the located token is the second word's
first token (checked by decoding and against the bridge's own tokenisation), the three orders, a
δ hook known by token gives known statistics, and δ = 1 gives zero differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import entities
from analyses import entities as eb
from analyses._common import InputError
from lens_positions.rotary_models import load_rotary_model

from .conftest import delta_hooks

#: Words the tiny tokenizer knows as one token with a leading space (" fox"), and words it spells
#: out letter by letter after a separate " " token ("New York").
KNOWN = [("quick", "fox"), ("brown", "dog"), ("lazy", "cat"), ("jumps", "mat"), ("when", "sat"),
         ("over", "on")]  # fmt: skip
SPELLED = [("New", "York"), ("Marie", "Curie")]


def test_located_token_is_the_second_words_first_token(tiny_bridge):
    tok = tiny_bridge.tokenizer
    for a, b in KNOWN + SPELLED:
        for carrier in entities.CARRIERS:
            loc = eb.locate_second_word(tiny_bridge, carrier, a, b)
            prompt = carrier.format(a=a, b=b)
            space = prompt.rindex(" " + b)
            # the whole prompt as the bridge tokenises it (BOS first)
            assert loc.tokens == tiny_bridge.to_tokens(prompt)[0].tolist()
            ids = loc.tokens[1:]
            k = loc.index - 1
            assert tok.decode(ids[:k]) == prompt[:space]  # everything before the space
            assert tok.decode(ids[k:]) == " " + b  # the second word, from its first token
            assert loc.text == tok.decode([ids[k]]) and loc.text.startswith(" ")
            assert loc.b_tokens == len(ids) - k and not loc.merged
            if (a, b) in KNOWN:
                assert loc.text == " " + b and loc.b_tokens == 1
            else:  # spelled out: the space is its own token, then the letters
                assert loc.text == " " and loc.b_tokens == 1 + len(b)
    # reversed order: the target is the first word's token
    assert eb.locate_second_word(tiny_bridge, "near {a} {b}", "fox", "quick").text == " quick"
    with pytest.raises(ValueError, match="one space"):
        eb.locate_second_word(tiny_bridge, "{a}-{b}", "quick", "fox")


class _MergingTokenizer:
    """A stand-in tokenizer whose one token spans "w Y" (merges across the space)."""

    is_fast = True
    bos_token_id = 0
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        assert text == "New York"
        return {"input_ids": [1, 2, 3], "offset_mapping": [(0, 2), (2, 5), (5, 8)]}

    def decode(self, ids):
        return {1: "Ne", 2: "w Y", 3: "ork"}[ids[0]]


def test_a_token_across_the_space_is_flagged_merged():
    class Stub:
        tokenizer = _MergingTokenizer()

    loc = eb.locate_second_word(Stub(), "{a} {b}", "New", "York")
    assert loc.merged and loc.index == 2 and loc.text == "w Y" and loc.b_tokens == 2


def test_delta_known_by_token_gives_known_statistics(tiny_bridge):
    """δ = 0.5 at the second words' first tokens, 1 elsewhere: every real pair has δ 0.5 at the
    target, its reversed order 1, the other-first-word order 0.5 (same target token)."""
    tok = tiny_bridge.tokenizer
    targets = torch.tensor([tok(" " + b, add_special_tokens=False)["input_ids"][0] for _, b in KNOWN])

    def fn(tokens: torch.Tensor, layer: int) -> torch.Tensor:
        return torch.where(torch.isin(tokens, targets), 0.5, 1.0)

    result = eb.token_entity_analysis(tiny_bridge, {"known": KNOWN}, fwd_hooks=delta_hooks(fn, 2), progress=False)
    pairs = result.pairs
    assert list(dict.fromkeys(pairs.layer)) == ["L0", "L1"]
    np.testing.assert_allclose(pairs.real, 0.5)
    np.testing.assert_allclose(pairs.reversed, 1.0)
    np.testing.assert_allclose(pairs.other, 0.5)
    assert (pairs.real_token == [" " + b for _, b in KNOWN] * 2).all()
    assert (pairs.reversed_token == [" " + a for a, _ in KNOWN] * 2).all()
    summary = result.summary.set_index("layer")
    for layer in ("L0", "L1"):
        row = summary.loc[layer]
        assert row.n == len(KNOWN) and row.n_merged == 0
        assert row.mean_real == pytest.approx(0.5) and row.mean_diff == pytest.approx(0.5)
        assert row.pct_real_smaller == 100.0
        assert row.wilcoxon_p == pytest.approx(2 / 2 ** len(KNOWN))  # exact: all 6 of one sign
        assert row.other_diff == pytest.approx(0.0) and row.wilcoxon_p_other == 1.0
        assert not row.all_zero


@pytest.mark.parametrize("increments", ["none", "per_layer"])
def test_delta_one_everywhere_gives_zero_differences(tiny_llama_folder, increments):
    """The base model (δ = 1) and a fresh graft (δ = 1 exactly): the command runs, every
    difference is 0, p = 1, and the report says so; moving δ makes the differences non-zero."""
    model = load_rotary_model(tiny_llama_folder, increments=increments)
    result = entities.run(model, entities.Params(progress=False))
    s = result.tables["entities"]
    assert set(s.condition) == {"entities", "nonce", "bigrams"} and (s.n == len(entities.ENTITIES)).all()
    assert list(dict.fromkeys(s.layer)) == (["none"] if increments == "none" else ["L0", "L1"])
    assert s.all_zero.all() and (s.mean_diff == 0).all() and (s.wilcoxon_p == 1.0).all()
    assert (s.pct_real_smaller == 0).all()
    assert "Every difference is 0" in result.markdown and "entities" in result.figures
    if increments == "per_layer":
        with torch.no_grad():
            for block in model.blocks:
                block.delta_mlp.W_out.normal_(0, 0.5)
        moved = entities.run(model, entities.Params(progress=False)).tables["entities"]
        # L1 reads context; L0 reads the target token alone, which the tiny tokenizer makes the
        # same " " token in both orders of the spelled-out entities (as the byte models' space)
        l1 = moved[moved.layer == "L1"]
        assert not l1.all_zero.any() and (l1.mean_diff != 0).all()


def test_command_options_that_do_not_apply(tiny_bridge, tmp_path):
    with pytest.raises(InputError, match="one δ per layer"):
        entities.run(tiny_bridge, entities.Params(per_head=True, progress=False))
    one = tmp_path / "one.txt"
    one.write_text("quick fox\n")
    with pytest.raises(InputError, match="at least two pairs"):
        entities.run(tiny_bridge, entities.Params(pairs=[str(one)], progress=False))


def test_command_on_a_model_folder(tiny_llama_folder, tmp_path, capsys):
    """``python -m analyses.entities --model FOLDER`` (an HF Llama folder) takes the token path."""
    out = tmp_path / "e"
    entities.main(["--model", tiny_llama_folder, "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "second word's first token" in printed and "Every difference is 0" in printed
    assert {p.name for p in out.iterdir()} >= {"entities.csv", "entity_pairs.csv", "entities.png"}
