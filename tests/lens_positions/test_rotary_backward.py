"""The memory-saving rotary backward and the in-place attention pattern compute what plain
autograd computes (benchmarks/ measures what they save)."""

from __future__ import annotations

import pytest
import torch

from lens_positions import HookedIncrementTransformer
from lens_positions.rotary import apply_rotary, rotary_cos_sin, rotate_queries_keys

from ..conftest import perturb_deltas, small_config


def _plain(q, k, positions, theta):
    cos, sin = rotary_cos_sin(positions, q.shape[-1], theta)
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


def _run(fn, q, k, positions, grads):
    for t in (q, k, positions):
        t.grad = None
    outs = fn(q, k, positions, 10_000.0)
    torch.autograd.backward(list(outs), list(grads))
    return [o.detach() for o in outs], [t.grad.clone() for t in (q, k, positions)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("heads", [0, 1, 4], ids=["one-position", "broadcast-head", "per-head"])
def test_rotary_backward_matches_autograd(dtype, heads):
    g = torch.Generator().manual_seed(heads)
    q = torch.randn(2, 40, 4, 16, generator=g).to(dtype).requires_grad_()
    k = torch.randn(2, 40, 4, 16, generator=g).to(dtype).requires_grad_()
    shape = (2, 40) + ((heads,) if heads else ())
    positions = (0.1 + 3 * torch.rand(shape, generator=g)).cumsum(1).requires_grad_()
    grads = [torch.randn(2, 40, 4, 16, generator=g).to(dtype) for _ in range(2)]
    (q_ref, k_ref), (gq_ref, gk_ref, gp_ref) = _run(_plain, q, k, positions, grads)
    (q_new, k_new), (gq_new, gk_new, gp_new) = _run(rotate_queries_keys, q, k, positions, grads)
    for ref, new in ((q_ref, q_new), (k_ref, k_new), (gq_ref, gq_new), (gk_ref, gk_new)):
        assert torch.equal(ref, new)  # values and input gradients: bit for bit
    assert gp_new.shape == positions.shape and gp_new.dtype == torch.float32
    torch.testing.assert_close(gp_new, gp_ref, rtol=1e-5, atol=1e-5 * gp_ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fixed_positions_take_the_same_backward(dtype):
    """Integer (or frozen) positions need no gradient; training still rotates through the
    custom backward (its gain there is transient memory inside backward, measured by
    benchmarks/train_step.py), bit for bit the same as autograd."""
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 40, 4, 16, generator=g).to(dtype).requires_grad_()
    k = torch.randn(2, 40, 4, 16, generator=g).to(dtype).requires_grad_()
    positions = torch.arange(1, 41, dtype=torch.float32).expand(2, 40)
    grads = [torch.randn(2, 40, 4, 16, generator=g).to(dtype) for _ in range(2)]
    results = []
    for fn in (_plain, rotate_queries_keys):
        q.grad = k.grad = None
        outs = fn(q, k, positions, 10_000.0)
        custom = type(outs[0].grad_fn).__name__ == "_RotaryQKBackward"
        assert custom == (fn is rotate_queries_keys)  # the library takes the custom backward
        torch.autograd.backward(list(outs), grads)
        results.append([*outs, q.grad.clone(), k.grad.clone()])
    for ref, new in zip(*results, strict=True):
        assert torch.equal(ref, new)
    if dtype == torch.float32:  # nothing kept beyond the outputs, which attention keeps anyway
        assert _saved_bytes(lambda: rotate_queries_keys(q, k, positions, 1e4)) <= 2 * q.numel() * 4 + positions.numel() * 4


def _saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_rotary_backward_keeps_less_than_autograd():
    q = torch.randn(2, 64, 4, 16, requires_grad=True)
    k = torch.randn(2, 64, 4, 16, requires_grad=True)
    positions = torch.rand(2, 64, 4).cumsum(1).requires_grad_()
    plain = _saved_bytes(lambda: _plain(q, k, positions, 1e4))
    ours = _saved_bytes(lambda: rotate_queries_keys(q, k, positions, 1e4))
    q_bytes = q.numel() * 4
    # plain autograd keeps q, k, angles, cos, sin; ours keeps the positions and the outputs,
    # which attention keeps anyway
    assert plain >= 2 * q_bytes + 3 * positions.numel() * 8 * 4
    assert ours <= 2 * q_bytes + positions.numel() * 4


@pytest.mark.parametrize(("increments", "per_head"), [("none", False), ("per_layer", True)])
def test_training_gradients_are_the_same_with_and_without_sdpa(increments, per_head):
    model = perturb_deltas(HookedIncrementTransformer(small_config(increments, per_head)))
    tokens = torch.randint(0, 257, (2, 48), generator=torch.Generator().manual_seed(0))
    grads = []
    for use_sdpa in (True, False):  # False: materialised pattern, scaled and masked in place
        model.cfg.use_sdpa = use_sdpa
        model.zero_grad()
        model(tokens, return_type="loss").backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    model.cfg.use_sdpa = True
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)


def test_a_hook_masking_whole_rows_gives_zero_pattern_rows():
    model = HookedIncrementTransformer(small_config("none")).eval()
    tokens = torch.randint(0, 257, (1, 12), generator=torch.Generator().manual_seed(1))

    def mask_row(scores, hook):
        scores[:, :, 5, :] = float("-inf")
        return scores

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern"])
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", mask_row)]):
            _, masked = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern"])
    pattern = masked["blocks.0.attn.hook_pattern"]
    assert not pattern.isnan().any()
    assert (pattern[:, :, 5] == 0).all()
    torch.testing.assert_close(pattern[:, :, 4], cache["blocks.0.attn.hook_pattern"][:, :, 4])


@pytest.mark.parametrize("d_head", [16, 32, 10], ids=["8-pairs", "16-pairs", "5-pairs"])
def test_untracked_rotation_equals_the_tracked_one(d_head):
    """Without autograd, `apply_rotary` multiplies complex pairs instead of stacking the halves:
    the same products and sums, bit for bit where the pairs fill whole vector registers (every
    head size the shipped models use); an odd number of pairs takes ATen's scalar loop, whose
    contracted multiply-adds may differ in the last bit."""
    from lens_positions.rotary import apply_rotary, rotary_cos_sin

    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, d_head)
    cos, sin = rotary_cos_sin(torch.rand(2, 7).cumsum(1) * 3, d_head, 10_000.0)
    with torch.no_grad():
        untracked = apply_rotary(x, cos, sin)
    tracked = apply_rotary(x.clone().requires_grad_(), cos, sin)
    assert tracked.requires_grad and not untracked.requires_grad
    if d_head % 16 == 0:
        assert torch.equal(untracked, tracked.detach())
    else:
        torch.testing.assert_close(untracked, tracked.detach(), rtol=1e-6, atol=1e-6)


def test_rotation_of_a_strided_tensor():
    """A tensor whose pairs cannot be viewed as complex numbers in place (an odd offset) is
    copied first: the same values as a contiguous one."""
    from lens_positions.rotary import apply_rotary, rotary_cos_sin

    torch.manual_seed(1)
    wide = torch.randn(2, 5, 3, 17)
    x = wide[..., 1:]  # storage offset 1: not a complex view
    cos, sin = rotary_cos_sin(torch.rand(2, 5).cumsum(1), 16, 10_000.0)
    with torch.no_grad():
        torch.testing.assert_close(apply_rotary(x, cos, sin), apply_rotary(x.contiguous(), cos, sin), rtol=0, atol=0)
