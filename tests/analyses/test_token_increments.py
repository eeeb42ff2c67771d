"""δ per token category and word-start AUC on a tiny random Llama."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from analyses import token_increments as ti
from analyses._common import InputError, Result
from lens_positions.rotary_models import is_rotary_model_name, load_rotary_model, save_tiny_llama
from lens_positions.samples import sample_file


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
    base = ti.token_tables(model, texts, n_ctx=32, max_windows=4)
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
            moved = ti.token_tables(model, texts, n_ctx=32, max_windows=4)
    finally:
        handle.remove()
    assert (moved["auc"].auc == 1.0).all()
    row = moved["categories"].set_index("category")
    assert row.loc["word start", "L0"] == pytest.approx(2.0)
    assert row.loc["continuation", "L1"] == pytest.approx(1.0)


def test_run_reads_only_held_out_documents_and_returns_a_result(tmp_path):
    """run(model, Params) on a file: only hash-held-out documents are read (the tokens of the one
    held-out document fill the windows), tables as token_tables gives them; no document or too
    little text is a usage error (InputError) naming the problem."""
    model = load_rotary_model(save_tiny_llama(tmp_path / "tiny"), increments="per_layer")
    docs = [f"document number {i} about the quick brown fox and the lazy dog" for i in range(200)]
    held = [d for d in docs if ti.content_key(d) / 2**64 < 0.03]
    assert 0 < len(held) < 20
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    n_ctx = 8
    params = ti.Params(data=[str(path)], n_ctx=n_ctx, max_windows=1000, batch_size=2)
    result = ti.run(model, params)
    assert isinstance(result, Result) and set(result.tables) == {"categories", "word_start_auc"}
    tok = model.tokenizer
    n_stream = sum(len(tok(d, add_special_tokens=False)["input_ids"]) + 1 for d in held)
    assert result.facts["documents"] == len(held)
    assert result.facts["tokens"] == (n_stream // n_ctx) * n_ctx
    want = ti.token_tables(model, held, n_ctx, 1000, 2)
    pd.testing.assert_frame_equal(result.tables["categories"], want["categories"])
    assert "# δ per token category" in result.markdown
    with pytest.raises(InputError, match="no held-out document"):
        ti.run(model, ti.Params(data=[str(path)], held_out=0.0))
    with pytest.raises(InputError, match=r"exceed the context \(n_ctx=256\)"):
        ti.run(model, ti.Params(data=[str(path)], n_ctx=10**6))
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"text": held[0]}) + "\n")
    with pytest.raises(InputError, match="less than one window of 200"):
        ti.run(model, ti.Params(data=[str(one)], n_ctx=200))


def test_command_defaults_to_the_shipped_adapter_and_english_sample():
    args = ti.build_parser().parse_args([])
    assert args.model == ti.DEFAULT_MODEL_OVERRIDE == "smollm2-135m-per-layer"
    assert is_rotary_model_name(args.model)
    assert args.data is None and ti.Params().data is None  # None: lens_positions/.../en.jsonl
    assert sample_file("en").is_file()
