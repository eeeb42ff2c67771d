"""Spaced-text plots: per-character increments and positions from known δ, scalings, and the
PNG/SVG/HTML files (self-contained, with the characters)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from analyses import spaced_text
from lens_positions import spaced_figure
from lens_positions.plots import (
    DEFAULT_SENTENCES,
    find_cjk_font,
    plot_spaced_text,
    save_spaced_text,
    spaced_text_data,
)

from .conftest import delta_hooks, make_model


def space_is_wide(tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """δ = 3 at spaces, 1 elsewhere, times (layer + 1)."""
    return torch.where(tokens == ord(" "), 3.0, 1.0) * (layer + 1)


def test_character_increments_sum_their_bytes():
    model = make_model("per_layer")
    data = spaced_text_data(model, "ab 中文", fwd_hooks=delta_hooks(space_is_wide, 3))
    assert data.chars == ["a", "b", " ", "中", "文"] and data.rows == ["L0", "L1", "L2"]
    assert [len(b) for b in data.char_bytes] == [1, 1, 1, 3, 3]
    for layer in range(3):
        k = layer + 1
        np.testing.assert_allclose(data.char_increments[layer], [k, k, 3 * k, 3 * k, 3 * k])
        np.testing.assert_allclose(data.positions[layer], np.cumsum([k, k, 3 * k, 3 * k, 3 * k]))
    # Row scaling removes the per-layer factor; one shared scale keeps it.
    row = data.scaled_positions("row")
    np.testing.assert_allclose(row[0], row[2])
    shared = data.scaled_positions("shared")
    np.testing.assert_allclose(shared[2], 3 * shared[0])
    assert shared[:, 0].tolist() == [0.0, 0.0, 0.0]
    # A character's last byte sits at the character.
    np.testing.assert_allclose(data.scaled_byte_positions("row")[:, [0, 1, 2, 5, 8]], row)


def test_positions_match_the_models_own_positions():
    model = make_model("per_layer", per_head=True)
    text = "Hi, 你好"
    data = spaced_text_data(model, text)
    pos = model.get_positions(text)[:, 0].mean(-1)  # [layers, pos], mean over heads
    last_bytes = [1, 2, 3, 4, 7, 10]  # token index of each character's last byte (separator at 0)
    np.testing.assert_allclose(data.positions, (pos[:, last_bytes] - pos[:, :1]).numpy(), rtol=1e-5)
    assert data.head_note == "head mean"
    assert spaced_text_data(model, text, head=2).head_note == "head 2"
    with pytest.raises(ValueError, match="out of range"):
        spaced_text_data(model, text, head=9)


def test_shared_model_has_one_row():
    data = spaced_text_data(make_model("shared"), "one row")
    assert data.rows == ["shared"] and data.char_increments.shape == (1, 7)


def test_files_are_written_and_html_is_self_contained(tmp_path):
    model = make_model("per_layer")
    data = [spaced_text_data(model, t) for t in DEFAULT_SENTENCES]
    paths = save_spaced_text(data, tmp_path, title="tiny")
    names = sorted(p.name for p in paths)
    assert names == [
        "spaced_text.html",
        "spaced_text_row.png",
        "spaced_text_row.svg",
        "spaced_text_shared.png",
        "spaced_text_shared.svg",
    ]
    for p in paths:
        assert p.stat().st_size > 10_000, p
    assert (tmp_path / "spaced_text_row.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "spaced_text_row.svg").read_text()
    page = (tmp_path / "spaced_text.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", page), "the page must not load anything"
    for ch in set(DEFAULT_SENTENCES[0] + DEFAULT_SENTENCES[1]) - {" ", "'"}:
        assert f">{ch}<" in page, ch
    assert "<script>" in page and "data-tip=" in page and "U+5149" in page  # 光's tooltip
    assert page.count('class="ch') == 3 * sum(len(t) for t in DEFAULT_SENTENCES)


def test_cjk_font_is_found_or_a_warning_is_given(monkeypatch):
    data = spaced_text_data(make_model("shared"), "中文")
    if find_cjk_font() is not None:  # scripts/setup installs one; then no warning is given
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plot_spaced_text(data)
    monkeypatch.setattr(spaced_figure, "find_cjk_font", lambda: None)
    with pytest.warns(UserWarning, match="no CJK font"):
        plot_spaced_text(data)


def test_command(saved_models, tmp_path, capsys):
    out = tmp_path / "st"
    spaced_text.main(
        [
            "--model",
            saved_models["per_layer_per_head"],
            "--out",
            str(out),
            "--scale",
            "row",
            "--head",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert "head 1" in printed and "largest_gaps" in printed and "光合作用" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "spaced_text.html",
        "spaced_text_gaps.csv",
        "spaced_text_row.png",
        "spaced_text_row.svg",
    ]


# ------------------------------------------------------------------ pretrained rotary models, by token
@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from lens_positions.rotary_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")


def test_token_model_is_drawn_by_token(tiny_llama):
    """Units are the tokens (a split character whole); positions are the running sums of the
    hooked δ after the BOS, checked against a separate cached run."""
    from lens_positions.rotary_models import load_rotary_model

    model = load_rotary_model(tiny_llama, increments="per_layer")
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    text = "the lazy dog sat 中"
    result = spaced_text.run(model, spaced_text.Params(text=[text], scale="row"))
    data = spaced_text.spaced_texts(model, [text])[0]
    assert data.unit == "token" and data.rows == ["L0", "L1"]
    assert "".join(data.chars) == text and data.chars[:2] == ["the", " lazy"] and data.chars[-1] == "中"
    assert [len(t) for t in data.unit_tokens][-1] == 3  # 中 is three byte tokens
    tokens = model.to_tokens(text)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_delta"))
    ends = np.cumsum([len(t) for t in data.unit_tokens])  # each unit's last token, after the BOS
    for layer in range(2):
        delta = cache[f"blocks.{layer}.hook_delta"][0, 1:].double().numpy()
        assert delta.std() > 0.01
        np.testing.assert_allclose(data.positions[layer], np.cumsum(delta)[ends - 1], rtol=1e-6)
    gaps = result.tables["spaced_text_gaps"]
    assert list(gaps.columns[2:6]) == ["tokens", "units", "delta_per_token", "unit_increment"]
    assert gaps["tokens"].iloc[0] == len(data.chars) + 2 and gaps["units"].iloc[0] == len(data.chars)
    assert "␣lazy" in gaps["largest_gaps"].str.cat() and "by token" in result.markdown
    with pytest.raises(spaced_text.InputError, match="per-head"):
        spaced_text.spaced_texts(model, [text], head=0)


def test_command_on_a_token_model(tiny_llama, tmp_path, capsys):
    out = tmp_path / "st"
    spaced_text.main(["--model", str(tiny_llama), "--out", str(out), "--scale", "row", "--text", "the cat sat\non the mat"])
    printed = capsys.readouterr().out
    assert "by token" in printed and "| none " in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "spaced_text.html", "spaced_text_gaps.csv", "spaced_text_row.png", "spaced_text_row.svg",
    ]
    page = (out / "spaced_text.html").read_text(encoding="utf-8")
    assert ">·cat<" in page and ">↵<" in page and "token id" in page
