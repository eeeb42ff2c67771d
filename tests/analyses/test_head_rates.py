"""Head rates: pattern hooks with known look-back, δ hooks with known per-head means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import head_rates as head_rates_module
from analyses.head_rates import _correlate, head_rates

from .conftest import EN_TEXT, ZH_TEXT, delta_hooks, make_model


def pattern_hooks(n_layers: int, target):
    """Replace every layer's attention pattern by one-hot attention to key ``target(q)``."""

    def hook(pattern: torch.Tensor, hook) -> torch.Tensor:
        n = pattern.shape[-1]
        out = torch.zeros_like(pattern)
        for q in range(n):
            out[..., q, target(q)] = 1.0
        return out

    return [(f"blocks.{layer}.attn.hook_pattern", hook) for layer in range(n_layers)]


@pytest.mark.parametrize(
    ("increments", "per_head"), [("per_layer", False), ("per_layer", True), ("shared", False)]
)
def test_previous_token_attention_has_lookback_one(increments, per_head):
    model = make_model(increments, per_head)
    texts = [EN_TEXT, ZH_TEXT, "short"]
    result = head_rates(
        model, texts, fwd_hooks=pattern_hooks(3, lambda q: max(q - 1, 0)), progress=False
    )
    heads = result.heads
    assert len(heads) == 3 * model.cfg.n_heads
    np.testing.assert_allclose(heads["lookback_units"], 1.0, rtol=1e-6)
    # Attending to the previous token spans exactly the query's own δ in learned positions.
    np.testing.assert_allclose(heads["lookback_learned"], heads["mean_delta"], rtol=1e-5)
    if not per_head:  # every head carries its layer's δ
        assert heads.groupby("layer")["mean_delta"].nunique().eq(1).all()


def test_attention_to_the_separator_looks_back_to_the_start():
    model = make_model("per_layer")
    text = "abcdefghij"  # 11 tokens with the separator: queries 1..10 look back q bytes
    result = head_rates(model, [text], fwd_hooks=pattern_hooks(3, lambda q: 0), progress=False)
    np.testing.assert_allclose(result.heads["lookback_units"], np.mean(np.arange(1, 11)), rtol=1e-6)
    assert (result.heads["n_queries"] == 10).all()


def test_known_per_head_deltas_and_perfect_correlation():
    model = make_model("per_layer", per_head=True)
    n_heads = model.cfg.n_heads
    rates = torch.arange(1, n_heads + 1, dtype=torch.float32)

    def delta(tokens, layer):
        return (rates * (layer + 1)).expand(*tokens.shape, n_heads).clone()

    # Head h of every layer looks back h + 1 tokens (clipped at the separator).
    def pattern(p: torch.Tensor, hook) -> torch.Tensor:
        out = torch.zeros_like(p)
        for h in range(n_heads):
            for q in range(p.shape[-1]):
                out[:, h, q, max(q - h - 1, 0)] = 1.0
        return out

    def factory(tokens):
        return delta_hooks(delta, 3)(tokens) + [
            (f"blocks.{layer}.attn.hook_pattern", pattern) for layer in range(3)
        ]

    result = head_rates(
        model, ["a fairly long piece of text to look back over"], fwd_hooks=factory, progress=False
    )
    heads = result.heads.set_index(["layer", "head"])
    for layer in range(3):
        for h in range(n_heads):
            assert heads.loc[(f"L{layer}", h), "mean_delta"] == pytest.approx(
                float(rates[h]) * (layer + 1)
            )
    corr = result.correlations.set_index("scope")
    # Within a layer, δ and look-back both grow with the head index.
    for layer in range(3):
        assert corr.loc[f"L{layer}", "spearman_rho"] == pytest.approx(1.0)
        assert corr.loc[f"L{layer}", "n"] == n_heads
    assert corr.loc["all", "n"] == 3 * n_heads and corr.loc["all", "reference"].startswith(
        "r -0.35"
    )


def test_correlate_edge_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    r = _correlate(x, -2 * x)
    assert r["pearson_r"] == pytest.approx(-1.0) and r["spearman_rho"] == pytest.approx(-1.0)
    assert np.isnan(_correlate(x, np.ones(4))["pearson_r"])  # constant δ (integer RoPE)
    assert np.isnan(_correlate(x[:2], x[:2])["spearman_rho"])


def test_command_writes_scatter(saved_models, text_files, tmp_path, capsys):
    out = tmp_path / "hr"
    head_rates_module.main(
        [
            "--model",
            saved_models["per_layer_per_head"],
            "--text-file",
            text_files["en"],
            text_files["zh"],
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "pearson_r" in printed and "| L2    |" in printed
    for name in (
        "head_rates.csv",
        "head_rate_correlations.csv",
        "head_rates.png",
        "head_rates.svg",
    ):
        assert (out / name).stat().st_size > 100


def test_head_rates_and_learned_axis_attention_agree(any_model):
    """One look-back: both analyses give the same table on the same windows (same rule: the
    separator is neither a query nor counted in mean δ)."""
    from analyses._common import byte_windows
    from analyses.learned_axis_attention import look_back_distances

    windows = byte_windows([EN_TEXT, ZH_TEXT], 40, max_windows=4)
    axis = look_back_distances(any_model, windows, batch_size=3, progress=False)
    texts = [bytes(w[1:]).decode("utf-8", errors="ignore") for w in windows]
    rates = head_rates(any_model, texts, progress=False).heads
    assert list(axis.columns) == list(rates.columns) and list(axis.layer) == list(rates.layer)
    # char windows drop the bytes of a character cut at a window's edge: compare on whole texts
    whole = [w for w in windows if bytes(w[1:]).decode("utf-8", errors="ignore").encode() == bytes(w[1:])]
    axis = look_back_distances(any_model, whole, batch_size=3, progress=False)
    rates = head_rates(any_model, [bytes(w[1:]).decode() for w in whole], progress=False).heads
    assert len(whole) >= 2
    for col in ("mean_delta", "lookback_units", "lookback_learned", "uniform_learned", "ratio"):
        np.testing.assert_allclose(axis[col], rates[col], rtol=1e-5, atol=1e-6, err_msg=col)
    assert (axis.n_queries == rates.n_queries).all()
