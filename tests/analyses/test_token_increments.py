"""δ per token category and word-start AUC on a tiny random Llama."""

from __future__ import annotations

import json

import pytest
import torch

from analyses import token_increments as ti
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama


@pytest.mark.parametrize("text, want", [
    (" the", "word start"), ("the", "continuation"), (" 42", "digits"), ("7", "digits"),
    (".", "sentence punct . ! ?"), ("?!", "sentence punct . ! ?"), (",", "other punct , ; : -"),
    (" -", "other punct , ; : -"), ("\n", "newline"), (".\n\n", "newline"), ("中", "CJK"),
    (" (", "other"), ("é", "other"),
])
def test_categories(text, want):
    assert ti.category(text) == want


def test_tables_on_tiny_llama(tmp_path):
    model = load_rotary_model(save_tiny_llama(tmp_path / "tiny"), increments="per_layer")
    texts = ["the quick brown fox jumps over the lazy dog. when the cat sat on the mat, 42!\n"] * 6
    base = ti.run(model, texts, n_ctx=32, max_windows=4)
    assert base["tokens"] == 4 * 32
    cats = base["categories"]
    assert set(cats.category) >= {"word start", "continuation", "newline"}
    assert (cats[["L0", "L1"]].values == 1.0).all()  # δ = 1 exactly at init
    assert (base["auc"].auc == 0.5).all()
    # δ = 2 at word-start tokens only (through hook_delta): word-start AUC 1 in every layer.
    ids = model.tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    starts = torch.tensor(sorted({i for i in ids if ti.category(model.tokenizer.decode([i])) == "word start"}))
    seen = {}
    handle = model.embed.register_forward_pre_hook(lambda module, args: seen.__setitem__("tokens", args[0]))

    def set_delta(delta, hook):
        return torch.where(torch.isin(seen["tokens"], starts), 2.0, 1.0)

    try:
        with model.hooks(fwd_hooks=[(f"blocks.{i}.hook_delta", set_delta) for i in range(2)]):
            moved = ti.run(model, texts, n_ctx=32, max_windows=4)
    finally:
        handle.remove()
    assert (moved["auc"].auc == 1.0).all()
    row = moved["categories"].set_index("category")
    assert row.loc["word start", "L0"] == pytest.approx(2.0)
    assert row.loc["continuation", "L1"] == pytest.approx(1.0)


def test_heldout_texts_uses_the_hash_rule(tmp_path):
    path = tmp_path / "d.jsonl"
    docs = [f"document number {i}" for i in range(400)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    held = ti.heldout_texts(path)
    assert 0 < len(held) < 40
    assert all(ti.content_key(d) / 2**64 < 0.03 for d in held)
