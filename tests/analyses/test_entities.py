"""Entities: the pair lists' properties, and a δ hook that shrinks the space after known first
words gives 100% real < reversed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses import entities
from analyses.entities import (
    BIGRAMS,
    CARRIERS,
    ENTITIES,
    default_conditions,
    entity_analysis,
    measure_pairs,
    nonce_pairs,
    read_pairs,
    space_index,
    wilcoxon_p,
)
from lens_positions.tokenizer import encode

from .conftest import delta_hooks, make_model


def words(pairs) -> list[str]:
    return [w.lower() for pair in pairs for w in pair]


def test_pair_lists_have_the_promised_properties():
    assert len(ENTITIES) >= 60 and len(BIGRAMS) == len(ENTITIES)
    for pairs in (ENTITIES, BIGRAMS, nonce_pairs()):
        assert len(set(words(pairs))) == 2 * len(pairs), "no word may be shared between pairs"
        assert all(w.isascii() and w.isalpha() for w in words(pairs))
    assert not set(words(ENTITIES)) & set(words(BIGRAMS))
    for (a, b), (c, d) in zip(ENTITIES, BIGRAMS, strict=True):  # matched on word lengths
        assert abs(len(a) - len(c)) <= 1 and abs(len(b) - len(d)) <= 1, (a, b, c, d)
    nonce = nonce_pairs(70, seed=0)
    assert nonce == nonce_pairs(70, seed=0) and nonce != nonce_pairs(70, seed=1)
    assert not set(words(nonce)) & (set(words(ENTITIES)) | set(words(BIGRAMS)))
    assert all(w[0].isupper() for w in (x for pair in nonce for x in pair))


def test_space_index_points_at_the_space():
    for carrier in CARRIERS:
        for a, b in [("New", "York"), ("the", "the"), ("北京", "市")]:
            i = space_index(carrier, a, b)
            ids = encode(carrier.format(a=a, b=b))
            assert ids[i] == ord(" ") and bytes(ids[i - len(a.encode()) : i]).decode() == a
    with pytest.raises(ValueError, match="one space"):
        space_index("{a}-{b}", "New", "York")


def shrink_after(first_words: set[str], n_layers: int):
    """δ = 0.5 at a space whose preceding word is in ``first_words``, else 1."""
    targets = {w.encode() for w in first_words}

    def fn(tokens: torch.Tensor, layer: int) -> torch.Tensor:
        out = torch.ones(tokens.shape)
        for b, row in enumerate(tokens.tolist()):
            for i, t in enumerate(row):
                if t != ord(" "):
                    continue
                j = i
                while j > 0 and row[j - 1] not in (ord(" "), 256):
                    j -= 1
                if bytes(row[j:i]) in targets:
                    out[b, i] = 0.5
        return out

    return delta_hooks(fn, n_layers)


def test_space_small_only_after_known_first_words_gives_100_percent():
    model = make_model("per_layer")
    pairs = list(ENTITIES)
    hooks = shrink_after({a for a, _ in pairs}, model.cfg.n_layers)
    result = entity_analysis(model, {"entities": pairs}, fwd_hooks=hooks, progress=False)
    s = result.summary.set_index("layer")
    assert list(s.index) == ["L0", "L1", "L2"]
    assert np.allclose(s["mean_real"], 0.5) and np.allclose(s["mean_reversed"], 1.0)
    assert np.allclose(s["pct_real_smaller"], 100.0) and (s["wilcoxon_p"] < 1e-10).all()
    assert (s["n"] == len(pairs)).all() and len(result.pairs) == 3 * len(pairs)


def test_carrier_average_and_byte_identity_layer0():
    model = make_model("per_layer")

    # Only one carrier of five shrinks the space: the average over carriers is (0.5 + 4) / 5.
    def fn(tokens, layer):
        out = torch.ones(tokens.shape)
        for b, row in enumerate(tokens.tolist()):
            if bytes(row[1:5]) == b"near" and bytes(row[6:9]) == b"New":
                out[b, 9] = 0.5
        return out

    pd_ = measure_pairs(model, [("New", "York")], fwd_hooks=delta_hooks(fn, 3), progress=False)
    assert pd_.real.shape == (1, 3, 1)
    np.testing.assert_allclose(pd_.real[0, :, 0], 0.9, rtol=1e-6)
    np.testing.assert_allclose(pd_.reversed[0, :, 0], 1.0, rtol=1e-6)
    # Without hooks, layer 0 sees only the space byte: identical in both orders, p = 1.
    s = entity_analysis(model, {"e": list(ENTITIES[:12])}, progress=False).summary.set_index(
        "layer"
    )
    assert s.loc["L0", "mean_real"] == pytest.approx(s.loc["L0", "mean_reversed"])
    assert s.loc["L0", "pct_real_smaller"] == 0 and s.loc["L0", "wilcoxon_p"] == 1.0


def test_per_head_rows():
    model = make_model("per_layer", per_head=True)
    pairs = list(ENTITIES[:20])
    n_heads = model.cfg.n_heads
    base = shrink_after({a for a, _ in pairs}, 3)

    def factory(tokens):
        hooks = []
        for name, inner in base(tokens):
            # head 0 follows the shrink rule, the others are constant
            def per_head(delta, hook, inner=inner):
                single = inner(delta[..., 0], hook=hook)
                out = torch.ones_like(delta)
                out[..., 0] = single
                return out

            hooks.append((name, per_head))
        return hooks

    result = entity_analysis(
        model, {"entities": pairs}, per_head=True, fwd_hooks=factory, progress=False
    )
    s = result.summary.set_index(["layer", "head"])
    assert s.loc[("L1", "0"), "pct_real_smaller"] == 100.0
    assert s.loc[("L1", "1"), "pct_real_smaller"] == 0.0 and s.loc[("L1", "1"), "wilcoxon_p"] == 1.0
    assert s.loc[("L1", "mean"), "mean_real"] == pytest.approx((0.5 + (n_heads - 1)) / n_heads)


def test_wilcoxon_p_edge_cases():
    assert wilcoxon_p(np.ones(10), np.ones(10)) == 1.0
    assert wilcoxon_p(np.arange(20.0), np.arange(20.0) + 1) < 1e-3


def test_read_pairs_and_command(saved_models, tmp_path, capsys):
    f = tmp_path / "mine.txt"
    f.write_text("# my pairs\nNew York\nRio\tde Janeiro\n\nHong   Kong\n", encoding="utf-8")
    assert read_pairs(f) == [("New", "York"), ("Rio", "de Janeiro"), ("Hong", "Kong")]
    bad = tmp_path / "bad.txt"
    bad.write_text("lonely\n")
    with pytest.raises(ValueError, match="two words"):
        read_pairs(bad)
    out = tmp_path / "ent"
    entities.main(
        [
            "--model",
            saved_models["per_layer"],
            "--pairs",
            str(f),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "## mine (3 pairs)" in printed and "pct_real_smaller" in printed
    for name in ("entities.csv", "entity_pairs.csv", "entities.png", "entities.svg"):
        assert (out / name).stat().st_size > 100
    assert set(default_conditions()) == {"entities", "nonce", "bigrams"}
