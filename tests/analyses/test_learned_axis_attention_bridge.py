"""Attention on the learned axis for pretrained rotary bridges, on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import _tokens
from analyses.learned_axis_attention import (
    Params,
    attention_views,
    look_back_distances,
    run,
    text_tokens,
)
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

TEXT = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n" * 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def per_layer(folder):
    model = load_rotary_model(folder, increments="per_layer")
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    return model


def previous_token(pattern, hook):
    """Every query attends to the token before it (the BOS to itself)."""
    n = pattern.shape[-1]
    prev = torch.zeros(n, n)
    prev[0, 0] = 1.0
    prev[torch.arange(1, n), torch.arange(0, n - 1)] = 1.0
    return prev.expand_as(pattern).clone()


def test_previous_token_heads_look_back_their_query_delta(per_layer):
    windows = _tokens.token_windows(per_layer, [TEXT], 12, 3)
    hooks = [(lambda n: n.endswith("hook_pattern"), previous_token)]
    table = look_back_distances(per_layer, windows, batch_size=2, fwd_hooks=hooks, progress=False)
    tokens = torch.tensor(windows)
    with torch.no_grad(), per_layer.hooks(fwd_hooks=hooks):  # δ of the same (edited) forward
        _, cache = per_layer.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_delta"))
    for li in range(per_layer.cfg.n_layers):
        query_delta = float(cache[f"blocks.{li}.hook_delta"][:, 1:].double().mean())  # p_q - p_{q-1} = δ_q
        rows = table[table.layer == f"L{li}"]
        np.testing.assert_allclose(rows.lookback_learned, query_delta, rtol=1e-6)
        np.testing.assert_allclose(rows.ratio, 1.0, rtol=1e-6)
    assert (table.lookback_units == 1).all() and table.lookback_learned.std() > 1e-3


def test_base_model_learned_axis_is_the_token_axis(folder):
    base = load_rotary_model(folder)
    windows = _tokens.token_windows(base, [TEXT], 12, 2)
    table = look_back_distances(base, windows, progress=False)
    np.testing.assert_allclose(table.lookback_learned, table.lookback_units, rtol=1e-9)
    assert (table.mean_delta == 1).all()


def test_views_and_command_on_a_bridge(per_layer, tmp_path):
    tokens, texts, unit = text_tokens(per_layer, "the cat sat")
    assert unit == "token" and tokens[0, 0] == _tokens.bos_id(per_layer) and texts[1:] == ["the", " cat", " sat"]
    sections = attention_views(per_layer, "the cat sat on the mat", layers=[1])
    assert [s[0] for s in sections] == ["Layer 1: token axis", "Layer 1: learned axis, all heads"]
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    result = run(per_layer, Params(text_file=[str(text)], window_tokens=10, max_windows=3, text="the cat sat on the mat",
                                   layers=[0], progress=False))
    assert "lookback_units" in result.markdown and "BOS excluded" in result.markdown
    assert set(result.figures) == {"query_attention", "look_back"}
    assert len(result.figures["query_attention"].axes) == 2  # one layer: one row of two panels
    assert "learned axis" in result.pages["attention.html"] and "cdn" not in result.pages["attention.html"].lower()
    paths = result.save(tmp_path / "out")
    assert any(p.name == "attention.html" for p in paths)
