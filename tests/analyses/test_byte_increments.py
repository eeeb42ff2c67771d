"""Per-byte δ table: known δ = f(byte) hooks give known per-category min/max/means."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from analyses import byte_increments
from analyses._common import char_windows
from analyses.byte_increments import BYTE_CATEGORIES, byte_increment_table
from lens_positions import SEPARATOR_ID

from .conftest import EN_TEXT, ZH_TEXT, delta_hooks, make_model


def f(byte: torch.Tensor | int, layer: int) -> torch.Tensor:
    """A known δ per byte and layer: 0.5 + (byte mod 7) / 10 + layer."""
    return 0.5 + (torch.as_tensor(byte) % 7).float() / 10 + layer


TEXTS = [EN_TEXT, ZH_TEXT, "aaab 12!"]


def expected(texts: list[str], ids: list[int], layer: int) -> dict[str, float] | None:
    """The category's row computed directly from the texts (None if no byte of it occurs)."""
    counts = Counter(b for t in texts for b in t.encode("utf-8"))
    counts[SEPARATOR_ID] = sum(len(char_windows(t, 96)) for t in texts)  # one per window (n_ctx 96)
    seen = [i for i in ids if counts[i]]
    if not seen:
        return None
    vals = [float(f(i, layer)) for i in seen]
    total = sum(counts[i] * float(f(i, layer)) for i in seen)
    return {
        "min": min(vals),
        "max": max(vals),
        "byte_mean": float(np.mean(vals)),
        "mean": total / sum(counts[i] for i in seen),
        "occurrences": sum(counts[i] for i in seen),
        "bytes": len(seen),
    }


def test_context_rows_match_a_known_delta_per_byte():
    model = make_model("per_layer")
    hooks = delta_hooks(lambda tok, layer: f(tok, layer), model.cfg.n_layers)
    table = byte_increment_table(model, TEXTS, identity=False, fwd_hooks=hooks, progress=False)
    assert set(table["layer"]) == {"L0", "L1", "L2"} and set(table["source"]) == {"context"}
    for layer in range(3):
        for cat, ids in BYTE_CATEGORIES.items():
            row = table[(table["layer"] == f"L{layer}") & (table["category"] == cat)].iloc[0]
            exp = expected(TEXTS, ids, layer)
            if exp is None:  # no byte of the category in the texts
                assert row["bytes"] == 0 and np.isnan(row["mean"])
                continue
            for key, value in exp.items():
                assert row[key] == pytest.approx(value, abs=1e-5), (layer, cat, key)


def test_mean_weighs_occurrences_and_byte_mean_does_not():
    model = make_model("per_layer")
    hooks = delta_hooks(lambda tok, layer: f(tok, layer), model.cfg.n_layers)
    table = byte_increment_table(model, ["aaab"], identity=False, fwd_hooks=hooks, progress=False)
    row = table[(table["layer"] == "L0") & (table["category"] == "a-z")].iloc[0]
    fa, fb = float(f(ord("a"), 0)), float(f(ord("b"), 0))
    assert row["mean"] == pytest.approx((3 * fa + fb) / 4) and row["byte_mean"] == pytest.approx(
        (fa + fb) / 2
    )
    assert row["occurrences"] == 4 and row["bytes"] == 2


def test_identity_rows_are_the_frozen_table():
    model = make_model("shared", frozen=True)
    table_values = 0.5 + torch.arange(257, dtype=torch.float32) / 100
    model.set_frozen_deltas(table_values)
    table = byte_increment_table(model, ["Hello, world.\n"], progress=False)
    ident = table[table["source"] == "identity"].set_index("category")
    assert set(ident["layer"]) == {"shared"}
    for cat, ids in BYTE_CATEGORIES.items():
        vals = table_values[ids]
        assert ident.loc[cat, "min"] == pytest.approx(float(vals.min()))
        assert ident.loc[cat, "max"] == pytest.approx(float(vals.max()))
        assert ident.loc[cat, "mean"] == pytest.approx(float(vals.mean()))
    # In context, a frozen table gives every byte exactly its table value.
    ctx = table[table["source"] == "context"].set_index("category")
    assert ctx.loc["space", "mean"] == pytest.approx(float(table_values[32]))
    # The published shared numbers are the reference column of a (non-per-head) shared model.
    assert ident.loc["a-z", "reference"] == "0.68-0.96 (0.79)"
    assert ctx.loc["newline", "reference"] == "2.12"


def test_per_layer_identity_is_layer0_of_the_context():
    model = make_model("per_layer")
    table = byte_increment_table(model, ["The cat sat. 中文"], progress=False)
    ident = table[table["source"] == "identity"]
    assert (
        set(ident["layer"]) == {"L0"}
        and ident.set_index("category").loc["A-Z", "reference"] == "2.87-9.98 (9.52)"
    )
    # Layer 0 reads the embedding, so in-context L0 δ of a byte equals its identity δ.
    deltas = model.byte_deltas()
    ctx = table[(table["source"] == "context") & (table["layer"] == "L0")].set_index("category")
    assert ctx.loc["space", "mean"] == pytest.approx(float(deltas[32]), rel=1e-5)
    assert ctx.loc[". ! ?", "max"] == pytest.approx(float(deltas[ord(".")]), rel=1e-5)


def test_per_head_rows_and_head_mean():
    model = make_model("per_layer", per_head=True)
    n_heads = model.cfg.n_heads
    scale = torch.arange(1, n_heads + 1, dtype=torch.float32)
    hooks = delta_hooks(lambda tok, layer: f(tok, layer)[..., None] * scale, model.cfg.n_layers)
    table = byte_increment_table(
        model, ["abc"], identity=False, per_head=True, fwd_hooks=hooks, progress=False
    )
    assert set(table["head"]) == {"mean", *map(str, range(n_heads))}
    assert (
        table["reference"].isna().all()
    )  # published numbers are for models without per-head rates
    sel = (table["layer"] == "L1") & (table["category"] == "a-z")
    base = np.mean([float(f(ord(c), 1)) for c in "abc"])
    for h in range(n_heads):
        assert table[sel & (table["head"] == str(h))]["mean"].item() == pytest.approx(
            base * (h + 1), rel=1e-5
        )
    assert table[sel & (table["head"] == "mean")]["mean"].item() == pytest.approx(
        base * float(scale.mean()), rel=1e-5
    )


def test_none_variant_is_all_ones():
    table = byte_increment_table(make_model("none"), ["Some text."], progress=False)
    assert set(table["layer"]) == {"none"}
    assert np.allclose(table["mean"].dropna(), 1.0)


def test_command_writes_table_and_figures(saved_models, text_files, tmp_path, capsys):
    out = tmp_path / "out"
    byte_increments.main(
        [
            "--model",
            saved_models["shared"],
            "--text-file",
            text_files["zh"],
            text_files["en"],
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "| layer" in printed and "a-z" in printed and "0.68-0.96 (0.79)" in printed
    for name in ("byte_increments.csv", "byte_increments.png", "byte_increments.svg"):
        assert (out / name).stat().st_size > 1000


def test_a_pretrained_rotary_bridge_is_handed_to_token_increments(tiny_bridge, tmp_path):
    """A bridge has BPE tokens: run gives analyses.token_increments' tables over the same
    documents (source filter and max_docs applied as for bytes); options with no token-level
    counterpart are usage errors naming the way out."""
    import json

    import pandas as pd

    from analyses import token_increments
    from analyses._common import InputError

    with torch.no_grad():
        for block in tiny_bridge.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    text = "the quick brown fox jumps over the lazy dog. when the cat sat on the mat, 42!\n"
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": text * 4, "source": "en"}) + "\n"
                    + json.dumps({"text": "dropped by the source filter", "source": "zh"}) + "\n")
    params = byte_increments.Params(text_file=[str(path)], source="en", max_tokens=16, progress=False)
    result = byte_increments.run(tiny_bridge, params)
    assert set(result.tables) == {"categories", "word_start_auc"}
    assert result.facts["handed_over_from"] == "byte_increments" and result.facts["documents"] == 1
    assert "hands over to `analyses.token_increments`" in result.markdown
    want = token_increments.token_tables(tiny_bridge, [text * 4], n_ctx=16, max_windows=32, batch_size=8)
    pd.testing.assert_frame_equal(result.tables["categories"], want["categories"])
    for bad in (byte_increments.Params(per_head=True), byte_increments.Params(text_file=[])):
        with pytest.raises(InputError, match="analyses.token_increments"):
            byte_increments.run(tiny_bridge, bad)


def test_the_figure_takes_a_mean_a_float_error_past_its_bounds():
    """A category whose bytes all have one δ: the occurrence-weighted mean can land 1e-9 past its
    min or max; the error bars must not fail on that (they did on a per-head model)."""
    import pandas as pd

    cats = list(BYTE_CATEGORIES)
    table = pd.DataFrame({"source": "context", "layer": "L0", "head": "mean", "category": cats,
                          "min": 1.0, "max": 1.0, "mean": [1.0 + 1e-9, 1.0 - 1e-9] * (len(cats) // 2)
                          + [1.0] * (len(cats) % 2)})
    fig = byte_increments.plot_byte_increments(table)
    assert fig.axes
