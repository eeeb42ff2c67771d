"""Attention on the learned axis: look-back distances with known answers, offline views."""

from __future__ import annotations

import pytest
import torch

from analyses._common import SAMPLE_TEXTS, byte_windows, pad_batch
from analyses.learned_axis_attention import (
    attention_html,
    attention_views,
    learned_axis_view,
    look_back_distances,
    plot_query,
)
from lens_positions import HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config

# windows of two lengths, so batches are padded
WINDOWS = byte_windows(SAMPLE_TEXTS[:3], 24, max_windows=3, per_doc=1) + byte_windows(SAMPLE_TEXTS[3:4], 17, 1, 1)


def known_deltas(tokens):
    """δ = 1 + (byte mod 3) at every layer, from the tokens (a hook factory)."""
    delta = 1.0 + (tokens % 3).float()

    def set_delta(d, hook):
        return delta.view(*delta.shape, *([1] * (d.ndim - 2))).expand_as(d).to(d.dtype).clone()

    return [(lambda n: n.endswith("hook_delta"), set_delta)]


def previous_token(pattern, hook):
    """Every query attends to the token before it (the separator to itself)."""
    n = pattern.shape[-1]
    prev = torch.zeros(n, n)
    prev[0, 0] = 1.0
    prev[torch.arange(1, n), torch.arange(0, n - 1)] = 1.0
    return prev.expand_as(pattern).clone()


def expected_mean_query_delta() -> tuple[float, float]:
    """Mean δ over queries 1.. (real ones) and mean δ over all real tokens, under known_deltas."""
    q, t = [], []
    for w in WINDOWS:
        d = [1.0 + (b % 3) for b in w]
        q += d[1:]
        t += d
    return sum(q) / len(q), sum(t) / len(t)


@pytest.mark.parametrize("increments,per_head", [("per_layer", False), ("per_layer", True), ("shared", False)])
def test_previous_token_heads_look_back_one_delta(increments, per_head):
    model = perturb_deltas(HookedIncrementTransformer(small_config(increments, per_head)).eval())

    def hooks(tokens):
        return known_deltas(tokens) + [(lambda n: n.endswith("hook_pattern"), previous_token)]

    table = look_back_distances(model, WINDOWS, batch_size=3, fwd_hooks=hooks, progress=False)
    query_delta, token_delta = expected_mean_query_delta()
    assert len(table) == model.cfg.n_layers * model.cfg.n_heads
    # p_q - p_{q-1} = δ_q: the look-back in learned units is the query's own δ
    torch.testing.assert_close(torch.tensor(table.lookback_learned.to_numpy()), torch.full((len(table),), query_delta, dtype=torch.float64))
    assert (table.lookback_units - 1).abs().max() < 1e-12
    # mean δ over the same queries (the separator left out, as in `head_rates`): ratio 1
    assert (table.mean_delta - query_delta).abs().max() < 1e-9
    assert (table.mean_delta - token_delta).abs().max() > 1e-3  # the separator's δ is not counted
    assert (table.ratio - 1).abs().max() < 1e-9
    assert table.n_queries.iloc[0] == sum(len(w) - 1 for w in WINDOWS)


def test_uniform_attention_matches_the_uniform_baseline():
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())

    def uniform(pattern, hook):
        n = pattern.shape[-1]
        causal = torch.ones(n, n).tril()
        return (causal / causal.sum(-1, keepdim=True)).expand_as(pattern).clone()

    table = look_back_distances(model, WINDOWS, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), uniform)], progress=False)
    # (the hooked pattern is float32: agreement to float32 precision)
    assert (table.lookback_learned - table.uniform_learned).abs().max() < 1e-5
    assert (table.lookback_units - table.uniform_units).abs().max() < 1e-5


def test_integer_rope_look_back_is_the_same_in_both_units():
    model = perturb_deltas(HookedIncrementTransformer(small_config("none")).eval())
    table = look_back_distances(model, WINDOWS, progress=False)
    assert (table.lookback_learned - table.lookback_units).abs().max() < 1e-9
    assert (table.ratio - 1).abs().max() < 1e-9 and (table.mean_delta == 1).all()


def test_learned_axis_view_places_tokens_at_their_positions():
    pattern = torch.softmax(torch.randn(2, 5, 5).masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf")), -1)
    # integer positions and bins of 1: the view is the pattern itself
    same = learned_axis_view(pattern, torch.arange(1.0, 6.0), list("abcde"), 1.0)
    torch.testing.assert_close(same.attention, pattern)
    assert same.labels == list("abcde")
    # "c" jumps by 3: two empty bins before it; "d" and "e" share a bin
    view = learned_axis_view(pattern, torch.tensor([0.0, 1.0, 4.0, 5.0, 5.5]), list("abcde"), 1.0)
    assert view.labels == ["a", "b", "·", "·", "c", "de"]
    assert view.token_bin.tolist() == [0, 1, 4, 5, 5]
    rows = view.attention.sum(-1)
    torch.testing.assert_close(rows[:, [0, 1, 4, 5]], torch.ones(2, 4))  # occupied rows sum to 1
    assert (rows[:, [2, 3]] == 0).all()
    # the "de" row: queries d and e averaged, their keys summed into the keys' bins
    expected = torch.zeros(2, 6)
    for q in (3, 4):
        for k, b in enumerate([0, 1, 4, 5, 5]):
            expected[:, b] += pattern[:, q, k] / 2
    torch.testing.assert_close(view.attention[:, 5], expected)


def test_views_render_offline_with_one_bundle(any_model):
    sections = attention_views(any_model, "New York, 人工智能.", layers=[0, 2])
    per_head = any_model.cfg.n_delta_outputs > 1
    assert len(sections) == 2 * (1 + (any_model.cfg.n_heads if per_head else 1))
    page = attention_html(sections)
    assert page.count("CircuitsVis.render(") == len(sections)
    assert page.count("var CircuitsVis=") == 1  # the bundle is inlined once
    assert "unpkg.com" not in page and "<script src" not in page
    fig = plot_query(any_model, "New York.", query=-1)
    assert len(fig.axes) == 2 * any_model.cfg.n_layers


def test_look_back_runs_on_every_variant(any_model):
    tokens, _ = pad_batch(WINDOWS)
    table = look_back_distances(any_model, WINDOWS, progress=False)
    assert table.lookback_learned.notna().all() and (table.lookback_units >= 0).all()
    assert (table.lookback_units <= tokens.shape[1]).all()


def test_command_prints_tables_and_writes_figures(tmp_path, capsys):
    from analyses.learned_axis_attention import main

    model_dir = tmp_path / "model"
    perturb_deltas(HookedIncrementTransformer(small_config("shared", per_head=True)).eval()).save_pretrained(model_dir)
    main(["--model", str(model_dir), "--out", str(tmp_path / "out"), "--max-windows", "3", "--view-bytes", "40",
          "--no-progress"])
    out = capsys.readouterr().out
    assert "lookback_learned" in out and "Per layer (mean over heads)" in out
    page = (tmp_path / "out" / "attention.html").read_text()
    assert page.count("var CircuitsVis=") == 1 and "unpkg.com" not in page
    for name in ("look_back.csv", "look_back.png", "query_attention.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
