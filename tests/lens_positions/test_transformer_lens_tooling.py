"""TransformerLens's own tools, unchanged, on our model."""

from __future__ import annotations

import circuitsvis
import pytest
import torch
from transformer_lens import ActivationCache, patching
from transformer_lens import utilities as utils

from lens_positions import HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config


@pytest.fixture
def model() -> HookedIncrementTransformer:
    return perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())


def test_run_with_cache_returns_an_activation_cache(model):
    tokens = model.to_tokens("New York is big.")
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    torch.testing.assert_close(logits, model(tokens), atol=1e-5, rtol=1e-5)
    assert cache["delta", 2].shape == tokens.shape  # TL's (name, layer) shorthand
    assert utils.get_act_name("delta", 2) == "blocks.2.hook_delta"
    assert utils.get_act_name("position", 1) == "blocks.1.hook_position"
    _, small = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_delta"))
    assert sorted(small.keys()) == [f"blocks.{i}.hook_delta" for i in range(3)]
    _, one = model.run_with_cache(tokens, names_filter="blocks.1.hook_position")
    assert list(one.keys()) == ["blocks.1.hook_position"]


def test_residual_decompositions_add_up(model):
    tokens = model.to_tokens("Marie Curie won.")
    _, cache = model.run_with_cache(tokens)
    final = cache["blocks.2.hook_resid_post"]
    parts = cache.decompose_resid(layer=3, return_labels=False)
    torch.testing.assert_close(parts.sum(0), final, atol=1e-5, rtol=1e-5)
    accumulated = cache.accumulated_resid(layer=3)
    torch.testing.assert_close(accumulated[-1], final)
    torch.testing.assert_close(accumulated[0], cache["hook_embed"])
    heads = cache.stack_head_results(layer=1)  # [heads, batch, pos, d_model] for layer 0
    torch.testing.assert_close(heads.sum(0), cache["blocks.0.hook_attn_out"], atol=1e-5, rtol=1e-5)


def test_logit_attrs_recover_the_logits(model):
    tokens = model.to_tokens("abcabc")
    logits, cache = model.run_with_cache(tokens)
    parts = cache.decompose_resid(layer=3, return_labels=False)[:, 0, -1]  # [components, d_model]
    answer = torch.tensor([int(tokens[0, 1])])
    # With the final norm's cached scale and weight, the attributions sum to the logit.
    attrs = cache.logit_attrs(parts[:, None] * model.ln_final.w, tokens=answer, pos_slice=-1, batch_slice=0, has_batch_dim=False)
    torch.testing.assert_close(attrs.sum(), logits[0, -1, answer[0]], atol=1e-4, rtol=1e-4)


def test_activation_patching_of_residual_and_deltas(model):
    # Clean and corrupt differ only in the last byte, so patching any earlier position is a no-op
    # and patching the last position's embedding (resid_pre of layer 0) restores the clean run.
    clean = model.to_tokens("New York")
    corrupt = model.to_tokens("New Yorq")
    _, clean_cache = model.run_with_cache(clean)
    target = int(model.to_single_token(" "))

    def metric(logits):
        return logits[0, -1, target]

    with torch.no_grad():
        clean_value, corrupt_value = metric(model(clean)), metric(model(corrupt))
    assert abs(clean_value - corrupt_value) > 1e-3

    resid = patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric)
    assert resid.shape == (3, clean.shape[1])
    torch.testing.assert_close(resid[:, :-1], torch.full_like(resid[:, :-1], corrupt_value.item()))
    torch.testing.assert_close(resid[0, -1], clean_value, atol=1e-5, rtol=1e-5)

    deltas = patching.generic_activation_patch(
        model, corrupt, clean_cache, metric,
        patch_setter=patching.layer_pos_patch_setter,
        activation_name="delta", index_axis_names=("layer", "pos"),
    )
    assert deltas.shape == (3, clean.shape[1])
    torch.testing.assert_close(deltas[:, :-1], torch.full_like(deltas[:, :-1], corrupt_value.item()))
    # the last byte's δ differs between the runs (per-layer δ reads the byte), and patching it moves
    # that token's position, so the metric changes
    assert (deltas[:, -1] - corrupt_value).abs().max() > 1e-6


def test_patching_refuses_training_mode(model):
    model.train()
    _, cache = model.run_with_cache(model.to_tokens("ab"))
    with pytest.raises(Exception, match="eval"):
        patching.get_act_patch_resid_pre(model, model.to_tokens("ba"), cache, lambda x: x.sum())


def test_circuitsvis_attention_renders_offline(model):
    tokens = model.to_tokens("人工智能 AI")
    _, cache = model.run_with_cache(tokens)
    html = circuitsvis.attention.attention_patterns(
        tokens=model.to_str_tokens(tokens), attention=cache["pattern", 0][0]
    )
    src = html.local_src
    assert ("人" in src or "\\u4eba" in src) and len(src) > 100_000  # the JS bundle is inline
    assert "unpkg.com" not in src and 'from "http' not in src and "<script src" not in src
    assert "unpkg.com" in str(html)  # (the plain str() form would need the CDN)
