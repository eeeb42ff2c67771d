"""The model interface: the facts of a byte model and of a grafted bridge, their windows with
character offsets, and the positions δ = 1 gives, each checked against the model itself."""

from __future__ import annotations

import pytest
import torch

from lens_positions import SEPARATOR_ID, HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of

from ..conftest import small_config

TEXT = "New York 很大。 Ünïcode, then more words."


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

    return load_rotary_model(save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m"), increments="per_layer")


def test_a_byte_model_states_its_facts():
    model = HookedIncrementTransformer(small_config("per_layer", True, False)).eval()
    s = subject_of(model)
    assert (s.unit, s.start_id, s.pad_id) == ("byte", SEPARATOR_ID, SEPARATOR_ID)
    assert (s.n_layers, s.n_heads, s.delta_heads, s.per_head) == (model.cfg.n_layers, model.cfg.n_heads,
                                                                   model.cfg.n_heads, True)
    assert s.label == model.cfg.variant_name and s.unit_plural == "bytes"
    assert s.delta_mlp(1) is model.blocks[1].delta_mlp and s.delta_mlp_name(1) == "blocks.1.delta_mlp"
    assert subject_of(s) is s  # a Subject passes through


def test_a_bridge_states_its_facts(bridge):
    s = subject_of(bridge)
    tok = bridge.tokenizer
    assert s.unit == "token" and s.start_id == (tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)
    assert s.delta_heads == 1 and not s.per_head and s.n_layers == len(bridge.blocks)
    assert s.label.endswith(" per_layer") and s.delta_mlp(0) is bridge.blocks[0].delta_mlp
    assert s.encode("the cat") == tok("the cat", add_special_tokens=False)["input_ids"]


def test_something_else_is_refused():
    with pytest.raises(TypeError, match="neither a byte model nor a grafted bridge"):
        subject_of(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("limit", [8, 13, 64])
def test_byte_windows_hold_every_character_once_with_its_first_byte(limit):
    s = subject_of(HookedIncrementTransformer(small_config("none", False, False)))
    windows = s.windows(TEXT, limit)
    assert "".join(TEXT[w.start:w.end] for w in windows) == TEXT
    for w in windows:
        assert w.tokens[0] == SEPARATOR_ID and len(w.tokens) <= limit
        assert bytes(w.tokens[1:]).decode("utf-8") == TEXT[w.start:w.end]
        for j, t in enumerate(w.char_tokens):  # the unit at t starts character start + j
            assert bytes(w.tokens[t:]).decode("utf-8", errors="ignore").startswith(TEXT[w.start + j])


@pytest.mark.parametrize("limit", [4, 7, 50])
def test_token_windows_hold_every_character_once_with_the_token_holding_it(bridge, limit):
    s = subject_of(bridge)
    tok = bridge.tokenizer
    windows = s.windows(TEXT, limit)
    assert "".join(TEXT[w.start:w.end] for w in windows) == TEXT
    offsets = tok(TEXT, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    seen = 0
    for w in windows:
        assert w.tokens[0] == s.start_id and len(w.tokens) <= limit
        assert w.tokens[1:] == ids[seen:seen + len(w.tokens) - 1]
        for j, t in enumerate(w.char_tokens):
            start, end = offsets[seen + t - 1]
            c = w.start + j
            # the character's unit is the token whose span holds it (or, for a character between
            # tokens such as a space merged into the next token, the last token starting before it)
            assert start <= c and (c < end or t == len(w.tokens) - 1 or offsets[seen + t][0] > c)
        seen += len(w.tokens) - 1
    assert seen == len(ids)


def test_integer_positions_are_what_delta_one_gives(bridge):
    """The positions δ = 1 gives, read from each model's own hook_position."""
    byte_model = HookedIncrementTransformer(small_config("none", False, False)).eval()
    tokens = byte_model.to_tokens("abc def")
    _, cache = byte_model.run_with_cache(tokens, names_filter="blocks.0.hook_position")
    torch.testing.assert_close(cache["blocks.0.hook_position"][0].float(),
                               subject_of(byte_model).integer_positions(tokens.shape[1]))
    ids = torch.tensor([[subject_of(bridge).start_id, *subject_of(bridge).encode("the cat sat")]])
    _, cache = bridge.run_with_cache(ids, names_filter="blocks.0.hook_position")  # a fresh graft: δ = 1
    torch.testing.assert_close(cache["blocks.0.hook_position"][0].float(),
                               subject_of(bridge).integer_positions(ids.shape[1]))
    assert subject_of(bridge).integer_positions(3).tolist() == [0.0, 1.0, 2.0]  # HF's position_ids


def test_a_subject_is_frozen(bridge):
    s = subject_of(bridge)
    with pytest.raises(AttributeError):
        s.unit = "byte"  # type: ignore[misc]
    assert isinstance(s, Subject)
