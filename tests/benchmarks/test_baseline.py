"""The yardstick computes what the `none` model computes, given the same weights."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baseline import BaselineTransformer
from lens_positions import HookedIncrementTransformer, IncrementConfig


def _none_model(**kw) -> HookedIncrementTransformer:
    cfg = IncrementConfig(d_model=32, n_heads=4, n_layers=3, d_mlp=64, n_ctx=96, seed=0, **kw)
    model = HookedIncrementTransformer(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # sharpen attention and move the norms off 1, so every weight matters
        for block in model.blocks:
            block.attn.W_Q.mul_(10)
            block.attn.W_K.mul_(10)
            for norm in (block.ln1, block.ln2):
                norm.w.copy_(1 + 0.3 * torch.randn(norm.w.shape, generator=g))
        model.ln_final.w.copy_(1 + 0.3 * torch.randn(model.ln_final.w.shape, generator=g))
    return model


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
def test_baseline_logits_equal_the_none_model(fused):
    model = _none_model()
    base = BaselineTransformer.from_hooked(model, fused=fused).eval()
    tokens = torch.randint(0, 257, (3, 96), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(tokens), base(tokens)
    assert ours.shape == theirs.shape == (3, 96, 257)
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-4)
    assert ours.std() > 0.1  # logits far from zero: the comparison is not vacuous


def test_baseline_loss_and_gradients_match():
    model = _none_model().train()
    base = BaselineTransformer.from_hooked(model).train()
    tokens = torch.randint(0, 257, (2, 64), generator=torch.Generator().manual_seed(3))
    ours, theirs = model(tokens, return_type="loss"), base.loss(tokens)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(base.embed.weight.grad, model.W_E.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(base.blocks[1].down.weight.grad, model.blocks[1].mlp.W_out.grad.T, atol=1e-6, rtol=1e-4)


def test_baseline_is_the_weights_of_the_model_not_a_shared_reference():
    model = _none_model()
    base = BaselineTransformer.from_hooked(model)
    n_model = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in base.parameters()) == n_model
    with torch.no_grad():
        base.embed.weight.zero_()
    assert model.W_E.abs().sum() > 0


def test_baseline_refuses_learned_increments():
    with pytest.raises(ValueError, match="integer RoPE"):
        BaselineTransformer(IncrementConfig(d_model=32, n_heads=4, n_layers=1, d_mlp=64, increments="per_layer"))
