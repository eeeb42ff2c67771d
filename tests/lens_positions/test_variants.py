"""The post's two variants: signed increments and a second (integer) rotary axis.

Both must start as exact integer RoPE (equal to ``none`` and to HF Llama), keep every hook, the
cache, generation and checkpoints working, and refuse bad settings with clear errors.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from lens_positions import HookedIncrementTransformer, IncrementConfig, IncrementKVCache
from lens_positions.checkpoints import CheckpointError, save_pretrained
from lens_positions.increments import signed_range, signed_squash
from lens_positions.rotary import (
    apply_rotary,
    inverse_frequencies,
    rotary_cos_sin,
    rotate_queries_keys,
)

from ..conftest import perturb_deltas, small_config
from .test_against_llama import to_llama

TEXT = "Marie Curie won two prizes. 人工智能的一个分支。"

#: (increments, per_head, extra config) of the new variants; d_head is 8 (4 pairs) in small_config.
NEW_VARIANTS = [
    ("per_layer", False, dict(signed=True)),
    ("per_layer", True, dict(signed=True)),
    ("shared", False, dict(signed=True)),
    ("shared", True, dict(signed=True)),
    ("per_layer", False, dict(learned_fraction=0.5)),
    ("per_layer", True, dict(learned_fraction=0.25)),
    ("shared", False, dict(learned_fraction=0.75)),
    ("per_layer", False, dict(learned_fraction=0.0)),
    ("per_layer", True, dict(signed=True, learned_fraction=0.5)),
]
NEW_IDS = [
    "-".join([inc] + (["per-head"] if ph else []) + [f"{k}={v}" for k, v in extra.items()])
    for inc, ph, extra in NEW_VARIANTS
]


def new_model(increments: str, per_head: bool, extra: dict, **kw) -> HookedIncrementTransformer:
    return HookedIncrementTransformer(small_config(increments, per_head, **extra, **kw)).eval()


def perturbed(increments: str, per_head: bool, extra: dict, **kw) -> HookedIncrementTransformer:
    """A model off its δ = 1 start; signed models also get clearly negative δ somewhere."""
    model = perturb_deltas(new_model(increments, per_head, extra, **kw))
    if model.cfg.signed:
        M = model.cfg.max_delta
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "delta_mlp" in name and name.endswith("b_out"):
                    p.fill_(-M * math.atanh(1 / (M - 1)))  # δ = 0 at raw = b: both signs around it
    return model


@pytest.fixture(params=NEW_VARIANTS, ids=NEW_IDS)
def variant(request) -> HookedIncrementTransformer:
    return perturbed(*request.param)


def with_plain_weights(model: HookedIncrementTransformer) -> HookedIncrementTransformer:
    """The ``none`` model holding ``model``'s shared weights (embedding, attention, MLPs, norms)."""
    plain = HookedIncrementTransformer(small_config("none")).eval()
    own = plain.state_dict()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in own})
    return plain


# ------------------------------------------------------------------------------------ init
@pytest.mark.parametrize(("increments", "per_head", "extra"), NEW_VARIANTS, ids=NEW_IDS)
def test_every_variant_starts_as_exact_integer_rope(increments, per_head, extra):
    model = new_model(increments, per_head, extra)
    with torch.no_grad():  # sharp attention, so that any position difference would show
        for b in model.blocks:
            b.attn.W_Q.mul_(10)
            b.attn.W_K.mul_(10)
    tokens = model.to_tokens(TEXT)
    deltas, positions = model.get_deltas(tokens), model.get_positions(tokens)
    assert torch.equal(deltas, torch.ones_like(deltas))  # exactly 1, every backend
    steps = torch.arange(1, tokens.shape[1] + 1, dtype=torch.float32).view(1, 1, -1, *([1] * per_head))
    assert torch.equal(positions, steps.expand_as(positions))
    with torch.no_grad():
        logits = model(tokens)
        assert torch.equal(logits, with_plain_weights(model)(tokens))
        hf = to_llama(with_plain_weights(model))
        theirs = hf(tokens, position_ids=torch.arange(1, tokens.shape[1] + 1)[None]).logits
    torch.testing.assert_close(logits, theirs, atol=2e-5, rtol=1e-4)


def test_config_round_trip_and_names():
    cfg = small_config("per_layer", True, signed=True, learned_fraction=0.5)
    assert IncrementConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.variant_name == "per-layer-per-head-signed-learned-0.5"
    assert cfg.n_learned_pairs == 2 and small_config("shared").n_learned_pairs == 4
    # TransformerLens attributes are readable but are no constructor arguments and are not saved
    assert cfg.normalization_type == "RMS" and cfg.n_key_value_heads is None
    assert "normalization_type" not in cfg.to_dict() and "device" not in cfg.to_dict()
    assert cfg.dtype == torch.float32


# ------------------------------------------------------------------------------------ signed
def test_signed_squash_bounds_slope_and_start():
    M = 10.0
    raw = torch.linspace(-1e4, 1e4, 20001)
    delta = signed_squash(raw, M)
    lo, hi = signed_range(M)
    assert (delta >= lo).all() and (delta <= hi).all()  # tanh saturates to ±1 in float32
    assert delta.min() < lo + 1e-3 and delta.max() > hi - 1e-3  # the whole range is reachable
    assert signed_squash(torch.zeros(3), M).eq(1.0).all()
    # slope at δ = 1 equals the positive per-layer squash's, M * sigmoid at M * sigmoid(b) = 1
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    signed_squash(x, M).backward()
    b = torch.tensor(-math.log(M - 1.0), dtype=torch.float64, requires_grad=True)
    (M * torch.sigmoid(b)).backward()
    torch.testing.assert_close(x.grad[0], b.grad)
    torch.testing.assert_close(x.grad[0], torch.tensor(1 - 1 / M, dtype=torch.float64))


@pytest.mark.parametrize(("increments", "per_head"), [("per_layer", False), ("per_layer", True), ("shared", True)])
def test_signed_deltas_go_negative_and_positions_stay_running_sums(increments, per_head):
    model = perturbed(increments, per_head, dict(signed=True))
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    lo, hi = signed_range(model.cfg.max_delta)
    for layer in range(model.cfg.n_layers):
        delta = cache[f"blocks.{layer}.hook_delta"]
        position = cache[f"blocks.{layer}.hook_position"]
        assert (delta < 0).any() and (delta > 0).any()
        assert (delta >= lo).all() and (delta <= hi).all()
        torch.testing.assert_close(position, torch.cumsum(delta.double(), dim=1).float())
    assert (cache["blocks.0.hook_position"].diff(dim=1) < 0).any()  # positions step back


def test_signed_frozen_table_and_its_errors(tmp_path):
    signed = HookedIncrementTransformer(small_config("shared", frozen=True, signed=True)).eval()
    table = torch.linspace(-3.0, 4.0, 257)
    signed.set_frozen_deltas(table)
    _, cache = signed.run_with_cache(signed.to_tokens("ab"))
    torch.testing.assert_close(cache["blocks.0.hook_delta"][0], table[[256, 97, 98]])
    with pytest.raises(ValueError, match=r"signed delta table must lie in \[-8, 10\]"):
        signed.set_frozen_deltas(torch.full((257,), -9.0))
    with pytest.raises(ValueError, match="finite"):
        signed.set_frozen_deltas(torch.full((257,), float("nan")))
    unsigned = HookedIncrementTransformer(small_config("shared", frozen=True)).eval()
    with pytest.raises(ValueError, match="must be positive .* signed=True to allow negative"):
        unsigned.set_frozen_deltas(table)
    # a checkpoint whose config says unsigned but whose table is not positive is refused on load
    save_pretrained(signed, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["signed"] = False
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors: delta table must be positive"):
        HookedIncrementTransformer.from_pretrained(tmp_path / "m")


# ------------------------------------------------------------------------------------ two axes
def test_integer_pairs_turn_by_the_integer_position_learned_pairs_by_the_learned_one():
    """hook_rot_q against a hand rotation: first pairs by 1, 2, 3, ..., the rest by hook_position."""
    model = perturbed("per_layer", True, dict(learned_fraction=0.5))
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    n_fixed = model.cfg.d_head // 2 - model.cfg.n_learned_pairs
    assert n_fixed == 2
    inv = inverse_frequencies(model.cfg.d_head, model.cfg.rope_theta).double()
    for layer in range(model.cfg.n_layers):
        q = cache[f"blocks.{layer}.attn.hook_q"].double()  # [batch, pos, head, d_head]
        learned = cache[f"blocks.{layer}.hook_position"].double()  # [batch, pos, head]
        integer = torch.arange(1, tokens.shape[1] + 1, dtype=torch.float64)[None, :, None].expand_as(learned)
        angles = torch.cat((integer[..., None] * inv[:n_fixed], learned[..., None] * inv[n_fixed:]), -1)
        even, odd = q[..., 0::2], q[..., 1::2]
        expected = torch.stack(
            (even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()), -1
        ).flatten(-2)
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_rot_q"].double(), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(cache["blocks.1.hook_position"], integer.float())  # really two axes


def test_zero_learned_fraction_is_the_none_model_whatever_the_deltas():
    model = perturbed("per_layer", True, dict(learned_fraction=0.0))
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        assert not torch.equal(model.get_deltas(tokens), torch.ones(1))
        torch.testing.assert_close(model(tokens), with_plain_weights(model)(tokens))


def test_position_hook_edits_only_the_learned_axis():
    half = perturbed("per_layer", False, dict(learned_fraction=0.5))
    tokens = half.to_tokens(TEXT)
    # RoPE sees differences only: shifting the learned axis changes nothing, even with two axes
    shift = [(f"blocks.{i}.hook_position", lambda p, hook: p + 37.5) for i in range(3)]
    scramble = [(f"blocks.{i}.hook_position", lambda p, hook: p.flip(1) * 3) for i in range(3)]
    with torch.no_grad():
        base = half(tokens)
        torch.testing.assert_close(half.run_with_hooks(tokens, fwd_hooks=shift), base, atol=1e-4, rtol=1e-4)
        assert (half.run_with_hooks(tokens, fwd_hooks=scramble) - base).abs().max() > 1e-3
        # with no learned pairs the position hook has nothing to move
        zero = perturbed("per_layer", False, dict(learned_fraction=0.0))
        torch.testing.assert_close(zero.run_with_hooks(tokens, fwd_hooks=scramble), zero(tokens))


@pytest.mark.parametrize("per_head", [False, True])
def test_two_axis_rotary_backward_matches_autograd(per_head):
    g = torch.Generator().manual_seed(0)
    batch, pos, heads, d_head, n_fixed = 2, 7, 3, 8, 2
    q = torch.randn(batch, pos, heads, d_head, generator=g, requires_grad=True)
    k = torch.randn(batch, pos, heads, d_head, generator=g, requires_grad=True)
    shape = (batch, pos, heads) if per_head else (batch, pos)
    positions = (torch.rand(shape, generator=g) * 3).cumsum(1).requires_grad_()
    integer = torch.arange(1, pos + 1, dtype=torch.float32)
    weights = [torch.randn(batch, pos, heads, d_head, generator=g) for _ in range(2)]

    def loss_of(qr, kr):
        return (qr * weights[0]).sum() + (kr * weights[1]).sum()

    custom = torch.autograd.grad(
        loss_of(*rotate_queries_keys(q, k, positions, 10_000.0, integer, n_fixed)), (q, k, positions)
    )
    cos, sin = rotary_cos_sin(positions, d_head, 10_000.0, integer, n_fixed)
    plain = torch.autograd.grad(loss_of(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)), (q, k, positions))
    for a, b in zip(custom, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert custom[2].abs().max() > 0


# ------------------------------------------------------------------------------------ machinery
def test_cached_forward_and_generation_equal_the_full_forward(variant):
    tokens = variant.to_tokens(TEXT)
    with torch.no_grad():
        full = variant(tokens)
        cache = IncrementKVCache(variant.cfg.n_layers)
        first = variant(tokens[:, :9], past_kv_cache=cache)
        rest = [variant(tokens[:, i : i + 1], past_kv_cache=cache) for i in range(9, tokens.shape[1])]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-4, rtol=1e-4)
    prompt = variant.to_tokens("Marie")
    kw = dict(max_new_tokens=12, temperature=0, stop_at_separator=False)
    cached = variant.generate(prompt, use_past_kv_cache=True, **kw)
    uncached = variant.generate(prompt, use_past_kv_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_hooks_sdpa_and_patching(variant):
    from transformer_lens import patching

    tokens = variant.to_tokens("New York is big.")
    logits, cache = variant.run_with_cache(tokens)  # materialised attention (pattern hooked)
    with torch.no_grad():
        torch.testing.assert_close(logits, variant(tokens), atol=1e-5, rtol=1e-5)  # SDPA
    shape = tokens.shape + ((variant.cfg.n_heads,) if variant.cfg.per_head else ())
    for layer in range(variant.cfg.n_layers):
        assert cache[f"blocks.{layer}.hook_delta"].shape == shape
        assert cache[f"blocks.{layer}.hook_position"].shape == shape
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (1, 4, tokens.shape[1], tokens.shape[1])
    clean, corrupt = variant.to_tokens("abcd"), variant.to_tokens("abce")
    _, clean_cache = variant.run_with_cache(clean)
    target = clean[0, -1]

    def metric(out):
        return out[0, -2].log_softmax(-1)[target]

    patched = patching.get_act_patch_resid_pre(variant, corrupt, clean_cache, metric)
    assert patched.shape == (3, clean.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(patched[0, -1], metric(variant(clean)), atol=1e-4, rtol=1e-4)


def test_checkpoint_round_trip(variant, tmp_path):
    save_pretrained(variant, tmp_path / "m")
    loaded = HookedIncrementTransformer.from_pretrained(tmp_path / "m")
    assert loaded.cfg == variant.cfg and not loaded.training
    tokens = variant.to_tokens(TEXT)
    with torch.no_grad():
        assert torch.equal(loaded(tokens), variant(tokens))


def test_config_files_from_before_the_variants_load(tmp_path):
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())
    save_pretrained(model, tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["signed"], config["learned_fraction"]
    config.update(device="cuda:0", model_name="lens-positions")  # fields the old files carried
    path.write_text(json.dumps(config))
    loaded = HookedIncrementTransformer.from_pretrained(tmp_path / "old")
    assert not loaded.cfg.signed and loaded.cfg.learned_fraction == 1.0 and loaded.cfg.device == "cpu"
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


def test_bad_settings_get_clear_errors():
    for bad in (1.5, -0.25, float("nan"), "half", True):
        with pytest.raises(ValueError, match="learned_fraction must be a number in \\[0, 1\\]"):
            small_config("per_layer", learned_fraction=bad)
    with pytest.raises(ValueError, match="not a whole number of rotary pairs: each head has 4 pairs"):
        small_config("per_layer", learned_fraction=0.3)
    with pytest.raises(ValueError, match="learned_fraction < 1 needs learned increments"):
        small_config("none", learned_fraction=0.5)
    with pytest.raises(ValueError, match="signed needs learned increments"):
        small_config("none", signed=True)
    with pytest.raises(ValueError, match="signed increments need max_delta > 2"):
        small_config("per_layer", signed=True, max_delta=2.0)
    with pytest.raises(ValueError, match="unknown config keys: sined"):
        IncrementConfig.from_dict({"sined": True})
