"""Attention's materialised scores: the one-GEMM scale and mask written for speed gives
TransformerLens's masked scores (scaled q·k to float32 rounding, -inf exactly above the causal
diagonal), with and without autograd and with a key/value cache."""

from __future__ import annotations

import math

import pytest
import torch

from lens_positions import HookedIncrementTransformer, IncrementKVCache

from ..conftest import perturb_deltas, small_config


def _by_hand(q: torch.Tensor, k: torch.Tensor, past: int) -> torch.Tensor:
    """Masked scores [batch, head, q, k] from rotated q [batch, q, head, d] and k [batch, k, head, d]."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    allowed = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool).tril(past)
    return scores.masked_fill(~allowed, float("-inf"))


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_cached_scores_are_the_masked_scaled_products(grad):
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")))
    tokens = torch.randint(0, 257, (2, 17), generator=torch.Generator().manual_seed(0))
    names = ["blocks.1.attn.hook_rot_q", "blocks.1.attn.hook_rot_k", "blocks.1.attn.hook_attn_scores"]
    with torch.set_grad_enabled(grad):
        _, cache = model.run_with_cache(tokens, names_filter=names)
    scores = cache["blocks.1.attn.hook_attn_scores"]
    expected = _by_hand(cache[names[0]], cache[names[1]], past=0)
    assert torch.equal(torch.isneginf(scores), torch.isneginf(expected))
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-6)
    assert torch.isneginf(scores[:, :, 0, 1:]).all() and torch.isfinite(scores[:, :, -1]).all()


def test_cached_scores_with_a_key_value_cache_keep_the_past_visible():
    model = perturb_deltas(HookedIncrementTransformer(small_config("none"))).eval()
    tokens = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(2))
    kv = IncrementKVCache(model.cfg.n_layers)
    names = ["blocks.0.attn.hook_rot_q", "blocks.0.attn.hook_attn_scores"]
    with torch.no_grad():
        model(tokens[:, :8], past_kv_cache=kv)
        _, cache = model.run_with_cache(tokens[:, 8:], past_kv_cache=kv, names_filter=names)
        _, full = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_rot_k"])
    keys = full["blocks.0.attn.hook_rot_k"]
    expected = _by_hand(cache["blocks.0.attn.hook_rot_q"], keys, past=8)
    torch.testing.assert_close(cache["blocks.0.attn.hook_attn_scores"], expected, rtol=1e-5, atol=1e-5)
    scores = cache["blocks.0.attn.hook_attn_scores"]
    assert torch.isneginf(scores[0, :, 0, 9:]).all() and torch.isfinite(scores[0, :, 0, :9]).all()


def _plain_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return (x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()) * w


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("hooked", [False, True], ids=["fused", "hooked"])
@pytest.mark.parametrize("with_mean_square", [False, True], ids=["norm", "norm-and-mean-square"])
def test_rms_norm_values_and_gradients_are_autograds(dtype, hooked, with_mean_square):
    """Values bit for bit; gradients bit for bit on the hooked (plain autograd) path and to
    rounding through the fused node, also when the mean square is a second output (the
    per-layer δ-MLP reads it) whose gradient flows back through the same node."""
    from lens_positions.components import RMSNorm

    g = torch.Generator().manual_seed(5)
    norm = RMSNorm(48, eps=1e-5)
    with torch.no_grad():
        norm.w.copy_(torch.rand(48, generator=g) + 0.5)
    norm = norm.to(dtype)
    x = (3 * torch.randn(2, 9, 48, generator=g)).to(dtype).requires_grad_()
    grad = torch.randn(2, 9, 48, generator=g).to(dtype)
    grad_ms = torch.randn(2, 9, 1, generator=g).to(dtype)
    if hooked:  # a caching hook keeps the plain path (a hook may edit the tensor in place)
        norm.hook_normalized.add_hook(lambda t, hook: None)
    normalized, mean_sq = norm.normalize_and_mean_square(x)
    assert (type(normalized.grad_fn).__name__ == "_NormalizeBackward") == (not hooked)
    outs, grads = [normalized * norm.w], [grad]
    if with_mean_square:
        outs, grads = [*outs, mean_sq], [grad, grad_ms]
    gx, gw = torch.autograd.grad(outs, (x, norm.w), grads)
    assert torch.equal(norm(x), outs[0])
    x_ref = x.detach().clone().requires_grad_()
    w_ref = norm.w.detach().clone().requires_grad_()
    refs = [_plain_norm(x_ref, w_ref, 1e-5), x_ref.pow(2).mean(-1, keepdim=True)][: len(outs)]
    gx_ref, gw_ref = torch.autograd.grad(refs, (x_ref, w_ref), grads)
    assert all(torch.equal(o, r) for o, r in zip(outs, refs, strict=True))
    if hooked:
        assert torch.equal(gw, gw_ref)
        if not with_mean_square:  # with it, plain autograd sums two paths through one mean square
            assert torch.equal(gx, gx_ref)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gx, gx_ref, **tol)
    torch.testing.assert_close(gw, gw_ref, **tol)


def test_shared_input_products_equal_separate_products():
    from lens_positions.components import shared_input_products

    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 7, 12, generator=g, requires_grad=True)
    weights = [torch.randn(12, n, generator=g, requires_grad=True) for n in (5, 12, 3)]
    outs = shared_input_products(x, *weights)
    assert type(outs[0].grad_fn).__name__ == "_SharedInputProductsBackward"  # one node
    grads = [torch.randn(o.shape, generator=g) for o in outs]
    fused = torch.autograd.grad(outs[:2], (x, *weights[:2]), grads[:2])  # one output unused
    refs = [x @ W for W in weights]
    plain = torch.autograd.grad(refs[:2], (x, *weights[:2]), grads[:2])
    for a, b in zip(outs, refs, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # outside training: plain products
        assert all(o.grad_fn is None for o in shared_input_products(x, *weights))


def test_model_gradients_equal_plain_autograds(monkeypatch):
    import lens_positions.components as components

    monkeypatch.setattr(components, "MIN_BLOCKED_TOKENS", 8)  # blocked attention in the fast run
    monkeypatch.setattr(components, "QUERY_BLOCK", 8)
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")))
    tokens = torch.randint(0, 257, (2, 20), generator=torch.Generator().manual_seed(3))
    grads = []
    for fast in (True, False):
        monkeypatch.setattr(components, "_tracked", lambda *t, fast=fast: fast and torch.is_grad_enabled())
        model.zero_grad()
        loss = model(tokens, return_type="loss")
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    # the same forward to rounding (blocked attention sums in another order than SDPA's)
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-6, atol=1e-6)
    for name, grad in grads[0][1].items():  # the fused nodes' gradients, to rounding
        torch.testing.assert_close(grad, grads[1][1][name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_rows_a_hook_masks_entirely_get_a_zero_pattern(grad):
    """A hook that sets a query row of the scores to -inf (or puts a NaN in it) leaves that row of
    the pattern all zeros and every other row a distribution, as TransformerLens does."""
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")))
    tokens = torch.randint(0, 257, (2, 9), generator=torch.Generator().manual_seed(3))

    def edit(scores, hook):
        scores = scores.clone()
        scores[0, 1, 4] = float("-inf")
        scores[1, 0, 6, 2] = float("nan")
        return scores

    with torch.set_grad_enabled(grad):
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", edit)]):
            _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert not pattern.isnan().any()
    assert (pattern[0, 1, 4] == 0).all() and (pattern[1, 0, 6] == 0).all()
    sums = pattern.sum(-1)
    sums[0, 1, 4] = sums[1, 0, 6] = 1.0
    torch.testing.assert_close(sums, torch.ones_like(sums))


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "training"])
def test_a_norm_weight_folded_into_the_products_equals_the_weighted_input(grad):
    """Blocks hand `RMSNorm.normalize`'s output and the norm's weight to attention and the MLP,
    which fold the weight into W_Q/W_K/W_V and W_gate/W_in: the same outputs and gradients as
    feeding them the weighted stream."""
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")))
    block = model.blocks[0]
    g = torch.Generator().manual_seed(8)
    normalized = torch.randn(2, 11, 32, generator=g, requires_grad=grad)
    w = (torch.rand(32, generator=g) + 0.5).requires_grad_(grad)
    positions = torch.rand(2, 11, generator=g).cumsum(1)
    with torch.set_grad_enabled(grad):
        for part, args in ((block.attn, (positions,)), (block.mlp, ())):
            folded = part(normalized, *args, in_scale=w)
            weighted = part(normalized * w, *args)
            torch.testing.assert_close(folded, weighted, rtol=1e-5, atol=1e-6)
            if grad:
                out = torch.randn(folded.shape, generator=g)
                a = torch.autograd.grad(folded, (normalized, w), out)
                b = torch.autograd.grad(weighted, (normalized, w), out)
                for x, y in zip(a, b, strict=True):
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [2, 15, 16, 40], ids=["2-tokens", "one-short-block", "one-block", "three-blocks"])
@pytest.mark.parametrize("head_major", [False, True], ids=["token-major", "head-major"])
def test_causal_attention_node_equals_sdpa(n, head_major, monkeypatch):
    """The blocked training attention (`_CausalAttention`) gives scaled_dot_product_attention's
    causal output and gradients to float32 rounding, whether q, k and v are laid out token-major
    (as the products make them) or head-major (as the rotary writes q and k in training), with
    blocks of 16 query rows and of two (batch x head) slices out of six."""
    import torch.nn.functional as F

    import lens_positions.components as components
    from lens_positions.components import _attention_blocks, _CausalAttention

    monkeypatch.setattr(components, "QUERY_BLOCK", 16)
    monkeypatch.setattr(components, "SCORE_BLOCK_BYTES", 2 * 16 * n * 4)  # per thread
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    blocks = _attention_blocks(6, n, torch.float32, torch.device("cpu"))
    assert {(b[0].start, b[0].stop) for b in blocks} == {(0, 2), (2, 4), (4, 6)}
    assert [b[1:3] for b in blocks[: -(-n // 16)]] == [(lo, min(lo + 16, n)) for lo in range(0, n, 16)]
    g = torch.Generator().manual_seed(n)
    shape = (2, n, 3, 16)

    def make() -> torch.Tensor:
        if head_major:
            return torch.randn(2, 3, n, 16, generator=g).transpose(1, 2).requires_grad_()
        return torch.randn(shape, generator=g).requires_grad_()

    q, k, v = make(), make(), make()
    grad_z = torch.randn(shape, generator=g)
    z = _CausalAttention.apply(q, k, v, 0.25)
    assert z.shape == shape and type(z.grad_fn).__name__ == "_CausalAttentionBackward"
    ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True, scale=0.25)
    ref = ref.transpose(1, 2)
    torch.testing.assert_close(z, ref, rtol=1e-5, atol=1e-6)
    ours = torch.autograd.grad(z, (q, k, v), grad_z)
    theirs = torch.autograd.grad(ref, (q, k, v), grad_z)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_in_place_softmax_equals_softmax_bit_for_bit():
    from lens_positions.components import _softmax_backward_in_place, _softmax_in_place

    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 5, 70, generator=g)
    scores[..., 40:] = float("-inf")  # masked keys, as a causal block has them
    pattern = torch.softmax(scores, -1)
    assert torch.equal(_softmax_in_place(scores.clone()), pattern)
    grad = torch.randn(3, 5, 70, generator=g)
    expected = torch.ops.aten._softmax_backward_data(grad, pattern, -1, pattern.dtype)
    assert torch.equal(_softmax_backward_in_place(grad.clone(), pattern), expected)


def test_training_takes_the_blocked_attention_unless_the_pattern_is_needed(monkeypatch):
    """Eager float32 training on CPU runs attention as `_CausalAttention`, with the rotary
    writing q and k head-major for it; a hook on the pattern, no-grad inference, autocast and
    sequence lengths outside [`MIN_BLOCKED_TOKENS`, `MAX_BLOCKED_TOKENS`] take their own paths."""
    import lens_positions.components as components

    monkeypatch.setattr(components, "MIN_BLOCKED_TOKENS", 40)
    model = HookedIncrementTransformer(small_config("per_layer"))
    tokens = torch.randint(0, 257, (2, 40), generator=torch.Generator().manual_seed(5))
    seen: list[tuple[str | None, bool]] = []

    def grab(z, hook):
        seen.append((type(z.grad_fn).__name__ if z.grad_fn is not None else None, False))
        return z

    def grab_q(q, hook):
        seen.append(("rot_q", q.transpose(1, 2).is_contiguous()))
        return q

    model.blocks[0].attn.hook_z.add_hook(grab)
    model.blocks[0].attn.hook_rot_q.add_hook(grab_q)
    model(tokens, return_type="loss")
    assert seen == [("rot_q", True), ("_CausalAttentionBackward", False)]
    seen.clear()
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: p)]):
        model(tokens, return_type="loss")
    assert seen[1][0] != "_CausalAttentionBackward"  # the materialised pattern
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(tokens, return_type="loss")
    assert seen[1][0] != "_CausalAttentionBackward"
    seen.clear()
    with torch.no_grad():
        model(tokens)
    assert seen[1] == (None, False)
    seen.clear()
    model(tokens[:, :39], return_type="loss")  # one token short: SDPA
    assert seen[1][0] != "_CausalAttentionBackward"
    seen.clear()
    monkeypatch.setattr(components, "MAX_BLOCKED_TOKENS", 39)  # one token too many: SDPA
    model(tokens, return_type="loss")
    assert seen[1][0] != "_CausalAttentionBackward"
    model.reset_hooks()
