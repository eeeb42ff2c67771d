"""Head rates on a tiny random Llama bridge: `look_back` in tokens and on the learned axis against a
hand computation from each window's own cached patterns and positions; the command's tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analyses import _tokens, head_rates
from analyses._common import InputError
from lens_positions.rotary_models import load_rotary_model

TEXTS = ["the quick brown fox jumps over the lazy dog", "when the cat sat on the mat",
         "the lazy dog sat", "fox"]  # fmt: skip


def hand_look_back(model, windows):
    """Per (layer, head): mean δ, look-back in tokens and in learned units over every token after
    the BOS, each window run alone (no padding) and read from its cache."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    sums = np.zeros((3, n_layers, n_heads))
    n = 0
    for w in windows:
        _, cache = model.run_with_cache(torch.tensor([w]))
        q = len(w)
        n += q - 1
        for layer in range(n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].double().numpy()  # [h, q, k]
            pos = cache[f"blocks.{layer}.hook_position"][0].double().numpy()  # [q]
            delta = cache[f"blocks.{layer}.hook_delta"][0].double().numpy()
            for h in range(n_heads):
                for i in range(1, q):
                    sums[0, layer, h] += delta[i]
                    sums[1, layer, h] += sum(pattern[h, i, k] * (i - k) for k in range(i + 1))
                    sums[2, layer, h] += sum(pattern[h, i, k] * (pos[i] - pos[k]) for k in range(i + 1))
    return sums / n, n


def test_look_back_on_a_bridge_matches_a_hand_computation(tiny_bridge):
    with torch.no_grad():  # δ that varies with the token and the layer
        for block in tiny_bridge.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    windows = _tokens.document_windows(tiny_bridge, TEXTS, 6, max_windows=100)
    assert len({len(w) for w in windows}) > 1  # padded batches of several lengths
    table = head_rates.look_back(tiny_bridge, windows, batch_size=3, progress=False)
    assert {"lookback_units", "uniform_units"} <= set(table.columns)
    (delta, tokens, learned), n = hand_look_back(tiny_bridge, windows)
    assert (table.n_queries == n).all() and len(table) == 2 * 4
    got = table.set_index(["layer", "head"])
    for layer in range(2):
        for h in range(4):
            row = got.loc[(f"L{layer}", h)]
            assert row.mean_delta == pytest.approx(delta[layer, h], rel=1e-5)
            assert row.lookback_units == pytest.approx(tokens[layer, h], rel=1e-5)
            assert row.lookback_learned == pytest.approx(learned[layer, h], rel=1e-5)
    assert np.ptp(delta[1]) < 1e-12  # one δ per layer: every head shows it
    assert abs(delta[1, 0] - 1) > 1e-3 and abs(tokens[1, 0] - learned[1, 0]) > 1e-4


def test_command_tables_and_correlations(tiny_bridge, tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 3))
    with torch.no_grad():
        for block in tiny_bridge.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    result = head_rates.run(tiny_bridge, head_rates.Params(text_file=[str(path)], max_tokens=8, progress=False))
    heads, corr = result.tables["head_rates"], result.tables["head_rate_correlations"]
    assert len(heads) == 8 and len(result.tables["head_rate_layers"]) == 2
    assert list(zip(corr.scope, corr.distance, corr.n, strict=True)) == [
        ("all heads", "lookback_units", 8), ("layer means", "lookback_units", 2),
        ("all heads", "lookback_learned", 8), ("layer means", "lookback_learned", 2)]
    want = head_rates._correlate(heads.mean_delta.to_numpy(), heads.lookback_units.to_numpy())
    assert corr.pearson_r.iloc[0] == pytest.approx(want["pearson_r"])
    assert "one δ per layer" in result.markdown and "head_rates" in result.figures
    assert result.facts["n_queries"] == heads.n_queries.iloc[0]


def test_base_model_has_undefined_correlations(tiny_llama_folder):
    model = load_rotary_model(tiny_llama_folder, increments="none")
    result = head_rates.run(model, head_rates.Params(max_docs=4, max_tokens=16, progress=False))
    heads = result.tables["head_rates"]
    assert (heads.mean_delta == 1).all()
    np.testing.assert_allclose(heads.lookback_learned, heads.lookback_units, rtol=1e-6)
    assert result.tables["head_rate_correlations"].pearson_r.isna().all()
    assert "every correlation is undefined" in result.markdown
    with pytest.raises(InputError, match="exceed the context"):
        head_rates.run(model, head_rates.Params(max_docs=4, max_tokens=10**5, progress=False))


def test_command_on_a_model_folder(tiny_llama_folder, tmp_path, capsys):
    out = tmp_path / "h"
    head_rates.main(["--model", tiny_llama_folder, "--max-docs", "3", "--max-tokens", "16",
                     "--out", str(out), "--no-progress"])  # fmt: skip
    assert "one δ per layer" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"head_rates.csv", "head_rate_layers.csv",
                                               "head_rate_correlations.csv", "head_rates.png"}
