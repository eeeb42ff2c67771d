"""δ attribution on pretrained rotary bridges, on a tiny random Llama: the parts against the
bridge's own residual stream and δ, the attribution against autograd through the whole bridge."""

from __future__ import annotations

import pytest
import torch

from analyses import _residual_parts as bpe
from analyses import _tokens
from analyses.delta_attribution import Params, attribute_batch, delta_attribution, delta_logits, run
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

TEXT = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n" * 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m", n_layers=3)


@pytest.fixture(scope="module")
def per_layer(folder):
    model = load_rotary_model(folder, increments="per_layer")
    with torch.no_grad():  # a fresh graft has δ = 1 exactly (zero output weight): make δ vary
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    return model


def windows(model, n=12, k=4):
    return _tokens.token_windows(model, [TEXT], n, k)


def test_parts_are_the_bridge_residual_and_attributions_add_up(per_layer):
    tokens = torch.tensor(windows(per_layer)[:2])
    att = attribute_batch(per_layer, tokens, layer=2)
    assert att.labels == ["embed", "L0ATTN", "L0MLP", "L1ATTN", "L1MLP"]
    torch.testing.assert_close(att.parts.sum(0), att.resid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(att.grad_x_input.sum(0), att.linearised, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(att.grad_x_input_frozen.sum(0), att.linearised_frozen, atol=1e-5, rtol=1e-4)
    # the δ the bridge used in its forward is max_delta * sigmoid of the attributed δ-logit
    mlp = per_layer.blocks[2].delta_mlp
    torch.testing.assert_close(att.delta, mlp.max_delta * torch.sigmoid(att.raw), atol=1e-5, rtol=1e-5)
    assert att.delta.std() > 1e-3  # δ really varies, so the test is not about constants
    sums = bpe.residual_sum_check(per_layer, tokens, skip_first=0)
    assert len(sums) == 3 and (sums.rel_err < 1e-6).all()


def test_attribution_equals_autograd_through_the_whole_bridge(per_layer):
    """g·c with g from autograd of the bridge's own δ-logit (hook_raw, in a full forward) with
    respect to its residual stream entering the layer."""
    tokens = torch.tensor(windows(per_layer)[:2])
    layer = 2
    att = attribute_batch(per_layer, tokens, layer=layer)
    store = {}

    def leaf(resid, hook):
        store["x"] = resid.detach().clone().requires_grad_(True)
        return store["x"]

    def keep(raw, hook):
        store["raw"] = raw

    with torch.enable_grad(), per_layer.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", leaf),
                                                         (f"blocks.{layer}.delta_mlp.hook_raw", keep)]):
        per_layer(tokens, return_type=None)
        (grad,) = torch.autograd.grad(store["raw"].sum(), store["x"])
    torch.testing.assert_close(store["raw"].detach(), att.raw, atol=1e-5, rtol=1e-5)
    expect = torch.einsum("bpd,cbpd->cbp", grad, att.parts)[..., None]
    torch.testing.assert_close(att.grad_x_input, expect, atol=1e-5, rtol=1e-4)
    # and against finite differences of the δ MLP along one part
    eps = 1e-2
    with torch.no_grad():
        up = delta_logits(per_layer, layer, att.resid + eps * att.parts[1])
        down = delta_logits(per_layer, layer, att.resid - eps * att.parts[1])
    torch.testing.assert_close((up - down) / (2 * eps), att.grad_x_input[1], atol=2e-3, rtol=2e-2)


def test_summary_leaves_out_the_bos(per_layer):
    wins = windows(per_layer)
    summary = delta_attribution(per_layer, wins, batch_size=2, progress=False, skip_first=1)
    assert list(summary.checks.positions) == [len(wins) * (len(wins[0]) - 1)] * 3
    assert (summary.checks.completeness_err < 1e-4).all()
    assert (summary.checks[summary.checks.layer != 0].r_gxi_zero > 0.5).all()


def test_the_base_model_has_nothing_to_attribute(folder, tmp_path, capsys):
    base = load_rotary_model(folder)
    tokens = torch.tensor(windows(base)[:1])
    with pytest.raises(ValueError, match="no δ MLP"):
        attribute_batch(base, tokens, layer=0)
    result = run(base, Params(progress=False))
    assert "Nothing to attribute" in result.markdown and "increments='none'" in result.markdown
    assert not result.tables


def test_command_on_a_bridge(per_layer, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    result = run(per_layer, Params(text_file=[str(text)], window_tokens=10, max_windows=3, batch_size=2,
                                   progress=False))
    assert "L0ATTN" in result.markdown and "completeness_err" in result.markdown
    assert set(result.tables) == {"parts", "checks", "residual_sum"} and "attribution" in result.figures
    assert result.facts["max_rel_residual_err"] < 1e-6
    paths = result.save(tmp_path / "out")
    assert any(p.name == "attribution.png" for p in paths)
