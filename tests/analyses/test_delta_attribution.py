"""δ attribution: completeness, the gradient through the norm, and the trivial cases."""

from __future__ import annotations

import pytest
import torch

from analyses._common import SAMPLE_TEXTS, byte_windows
from analyses.delta_attribution import (
    attribute_batch,
    delta_attribution,
    delta_logits,
    layer_table,
)
from lens_positions import HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config

WINDOWS = byte_windows(SAMPLE_TEXTS[:4], 30, max_windows=4, per_doc=1)
TOKENS = torch.tensor(WINDOWS[:2])


@pytest.fixture(scope="module")
def per_layer() -> HookedIncrementTransformer:
    return perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())


def test_parts_and_attributions_add_up(per_layer):
    att = attribute_batch(per_layer, TOKENS, layer=2)
    assert att.labels == ["embed", "L0H0", "L0H1", "L0H2", "L0H3", "L0MLP", "L1H0", "L1H1", "L1H2", "L1H3", "L1MLP"]
    torch.testing.assert_close(att.parts.sum(0), att.resid, atol=1e-5, rtol=1e-5)
    # completeness: Σ_c g·c = g·resid_pre, through the norm and with its scale frozen
    torch.testing.assert_close(att.grad_x_input.sum(0), att.linearised, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(att.grad_x_input_frozen.sum(0), att.linearised_frozen, atol=1e-5, rtol=1e-4)
    # RMSNorm is scale-invariant, so the linearised δ-logit through it is ~0 while raw is not
    assert att.linearised.abs().max() < 1e-3 * att.raw.abs().mean()
    assert att.linearised_frozen.abs().mean() > 1e-3
    # δ and raw agree: δ = max_delta * sigmoid(raw)
    torch.testing.assert_close(att.delta, per_layer.cfg.max_delta * torch.sigmoid(att.raw), atol=1e-5, rtol=1e-5)


def test_gradient_goes_through_the_norm(per_layer):
    att = attribute_batch(per_layer, TOKENS, layer=1)
    eps = 1e-2
    for c in (0, 2, 5):  # embedding, a head, the MLP
        with torch.no_grad():
            up = delta_logits(per_layer, 1, att.resid + eps * att.parts[c])
            down = delta_logits(per_layer, 1, att.resid - eps * att.parts[c])
        torch.testing.assert_close((up - down) / (2 * eps), att.grad_x_input[c], atol=2e-3, rtol=2e-2)
    # zero-ablation: raw(x) - raw(x - c), exactly as defined
    with torch.no_grad():
        torch.testing.assert_close(att.zero_ablation[5], att.raw - delta_logits(per_layer, 1, att.resid - att.parts[5]))


def test_layer_zero_reads_only_the_embedding(per_layer):
    att = attribute_batch(per_layer, TOKENS, layer=0)
    assert att.labels == ["embed"]
    torch.testing.assert_close(att.grad_x_input[0], att.linearised)


def test_with_heads_and_mlps_silenced_everything_is_on_the_embedding(per_layer):
    zero = [(lambda n: n.endswith("attn.hook_z") or n.endswith("hook_mlp_out"), lambda x, hook: torch.zeros_like(x))]
    att = attribute_batch(per_layer, TOKENS, layer=2, fwd_hooks=zero)
    others = slice(1, None)
    assert (att.parts[others] == 0).all()
    for name in ("grad_x_input", "grad_x_input_frozen", "zero_ablation", "grad_x_centered"):
        assert (getattr(att, name)[others] == 0).all(), name
    torch.testing.assert_close(att.grad_x_input_frozen[0], att.linearised_frozen)
    torch.testing.assert_close(att.resid, att.parts[0])


def test_shared_model_has_one_part_and_no_norm():
    model = perturb_deltas(HookedIncrementTransformer(small_config("shared")).eval())
    att = attribute_batch(model, TOKENS, layer=None)
    assert att.labels == ["embed"] and att.layer is None
    torch.testing.assert_close(att.grad_x_input, att.grad_x_input_frozen)  # no norm to freeze
    torch.testing.assert_close(att.delta, torch.nn.functional.softplus(att.raw), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", [("none", False), ("shared", True)], ids=["none", "frozen"])
def test_models_without_an_increment_mlp_are_refused(kind):
    model = HookedIncrementTransformer(small_config(kind[0], frozen=kind[1])).eval()
    with pytest.raises(ValueError, match="nothing to attribute|no increment MLP"):
        attribute_batch(model, TOKENS, layer=0)


@pytest.mark.parametrize("increments,per_head", [("per_layer", True), ("shared", True)])
def test_summary_over_windows(increments, per_head):
    model = perturb_deltas(HookedIncrementTransformer(small_config(increments, per_head)).eval())
    summary = delta_attribution(model, WINDOWS, batch_size=2, progress=False)
    n_layers = 1 if increments == "shared" else 3
    assert len(summary.checks) == n_layers * model.cfg.n_heads  # one row per output head
    assert (summary.checks.completeness_err < 1e-4).all()
    assert summary.parts.groupby(["layer", "out_head"]).share.sum().sub(1).abs().max() < 1e-6
    table = layer_table(summary, top=3)
    assert len(table) == sum(min(3, k) for k in ([1] if n_layers == 1 else [1, 6, 11]))
    if increments == "per_layer":
        # the linear attribution predicts the ablation it linearises, beyond the single-part layer 0
        assert (summary.checks[summary.checks.layer != 0].r_gxi_zero > 0.5).all()


def test_command_prints_tables_and_writes_figures(tmp_path, capsys, per_layer):
    from analyses.delta_attribution import main

    model_dir = tmp_path / "model"
    per_layer.save_pretrained(model_dir)
    main(["--model", str(model_dir), "--out", str(tmp_path / "out"), "--max-windows", "3", "--no-progress"])
    out = capsys.readouterr().out
    assert "completeness_err" in out and "Top 8 parts per layer" in out
    for name in ("parts.csv", "checks.csv", "attribution.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    none_dir = tmp_path / "none"
    HookedIncrementTransformer(small_config("none")).save_pretrained(none_dir)
    main(["--model", str(none_dir), "--out", str(tmp_path / "out2"), "--no-progress"])
    assert "Nothing to attribute" in capsys.readouterr().out


@pytest.mark.parametrize("increments,signed", [("per_layer", False), ("shared", False), ("per_layer", True), ("shared", True)])
def test_gain_is_the_derivative_of_the_squash(increments, signed):
    """`_gain` equals autograd's dδ/draw for the sigmoid, softplus and signed tanh squashes."""
    from analyses.delta_attribution import _gain
    from lens_positions import IncrementConfig

    cfg = small_config(increments)
    model = HookedIncrementTransformer(IncrementConfig(**{**cfg.to_dict(), "signed": signed})).eval()
    prefix = "blocks.1.delta_mlp" if increments == "per_layer" else "delta_mlp"
    mlp = model.get_submodule(prefix)
    raw = torch.linspace(-30, 30, 41, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        mlp.W_out.zero_()
    x = torch.zeros(1, 41, cfg.d_model)

    def squash_of(r):  # δ as the MLP computes it, with its raw output replaced by r
        handle = mlp.hook_raw.add_hook(lambda act, hook: r.to(act.dtype).reshape(act.shape))
        try:
            return mlp(x)
        finally:
            mlp.hook_raw.remove_hooks()
            del handle

    (grad,) = torch.autograd.grad(squash_of(raw.float()).sum(), raw)
    assert torch.allclose(_gain(model, prefix, raw.detach()).double().reshape(-1), grad, rtol=1e-4, atol=1e-6)
