"""Rotary position embedding on real-valued positions.

Positions are running sums of learned increments, so they are floats, not table indices: the
angles are computed on the fly from the positions, always in float32 (in bf16 the spacing between
representable numbers near 1024 is 8, which would erase every increment below that).

Pairs are interleaved, as in the reference experiment: dims (2i, 2i+1) of a head form one complex
number rotated by ``position * theta^(-2i/d_head)``.

Two position axes (``IncrementConfig.learned_fraction`` < 1): the first ``n_fixed`` pairs of each
head (the highest frequencies) turn by the integer position 1, 2, 3, ... and the rest (the lowest
frequencies) by the learned one. The high-frequency pairs are what resolve an offset of one
byte (pair 0 turns a full radian per byte, the last pair of a 32-dim head 1/5600 of one), so
giving them the integer axis is what keeps exact byte order (previous-byte heads, assembling a
UTF-8 character) however δ moves; the learned axis gets the pairs whose wavelengths, hundreds to
tens of thousands of positions, match the word-, clause- and document-scale distances it is
meant to stretch and compress. The other way round the model would lose exact order (slow
integer pairs barely tell offset 1 from 2) and its learned fast pairs would wrap around several
times within a word whenever δ moves.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def inverse_frequencies(d_head: int, theta: float, device: torch.device | None = None) -> Tensor:
    """``theta^(-2i/d_head)`` for i < d_head/2, float32. Shape [d_head/2]."""
    exponent = torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head
    return 1.0 / (theta**exponent)


def rotary_cos_sin(
    positions: Float[Tensor, "batch pos *heads"],
    d_head: int,
    theta: float,
    integer_positions: Float[Tensor, " pos"] | None = None,
    n_fixed: int = 0,
) -> tuple[Float[Tensor, "batch pos heads_or_1 half"], Float[Tensor, "batch pos heads_or_1 half"]]:
    """cos and sin of the rotation angles for every position (float32).

    positions: [batch, pos] (one position per token, broadcast over heads) or
        [batch, pos, n_heads] (per-head positions).
    integer_positions: [pos], the positions the first ``n_fixed`` pairs turn by (two axes only).
    Returns two tensors of shape [batch, pos, 1 or n_heads, d_head/2].
    """
    if positions.ndim == 2:
        positions = positions.unsqueeze(-1)
    inv_freq = inverse_frequencies(d_head, theta, positions.device)
    with torch.autocast(device_type=positions.device.type, enabled=False):
        # [batch, pos, heads_or_1, half - n_fixed]
        angles = positions.float().unsqueeze(-1) * inv_freq[n_fixed:]
        if n_fixed:
            fixed = integer_positions.float()[:, None, None] * inv_freq[:n_fixed]  # [pos, 1, n_fixed]
            angles = torch.cat((fixed.expand(*angles.shape[:-1], n_fixed), angles), dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(
    x: Float[Tensor, "batch pos head_index d_head"],
    cos: Float[Tensor, "batch pos heads_or_1 half"],
    sin: Float[Tensor, "batch pos heads_or_1 half"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Rotate interleaved pairs of ``x`` by the given angles; computed in float32, returned in x's dtype.

    Under autograd (and ``torch.compile``) this is the textbook formula on the even and odd
    halves, the reference the tests hold the fast paths to. Without autograd each pair is one
    complex number multiplied by ``cos + i sin`` (`_turn`): the same products, subtraction and
    addition, in one pass instead of six (benchmarks/RESULTS.md, issue 23).
    """
    xf = x.float()
    tracked = torch.is_grad_enabled() and (xf.requires_grad or cos.requires_grad or sin.requires_grad)
    if tracked or torch.compiler.is_compiling():
        even, odd = xf[..., 0::2], xf[..., 1::2]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)
    return _turn(xf, _rotation(cos, sin, xf)).to(x.dtype)


def _rotation(cos: Tensor, sin: Tensor, x: Tensor, inverse: bool = False) -> Tensor:
    """``cos + i sin`` (``cos - i sin`` with ``inverse``) as a complex tensor of x's full shape
    [..., d/2], heads included.

    Written out over heads even where the angles broadcast over them, so that every model turns
    its pairs through the same flat, vectorised loop: a broadcast operand would send short inner
    loops to ATen's scalar code, whose contracted multiply-adds differ in the last bit, and a
    per-head model at init would no longer equal the one-position model exactly. Built small and
    copied out (a lazily conjugated or broadcast-built complex tensor costs a slower pass)."""
    shape = (*x.shape[:-1], x.shape[-1] // 2)
    return torch.complex(cos, -sin if inverse else sin).expand(shape).contiguous()


def _turn(x: Float[Tensor, "... d"], rotation: Tensor, head_major: bool = False) -> Float[Tensor, "... d"]:
    """``x`` (float32) read as d/2 complex pairs (2i, 2i+1), times ``rotation`` (complex
    [..., d/2], broadcast): a new float32 tensor shaped like ``x``, contiguous, or with
    ``head_major`` (x [batch, pos, head_index, d_head]) laid out as [batch, head_index, pos,
    d_head] in memory, the layout attention's batched products read without a copy.

    Complex multiplication computes ``(a c - b d) + (a d + b c) i`` from separate products, as
    the real formula does: bit for bit the even/odd formula wherever ATen's vectorised loop runs
    (everything but a tail of fewer elements than a register holds)."""
    strides_even = x.stride(-1) == 1 and x.storage_offset() % 2 == 0 and all(s % 2 == 0 for s in x.stride()[:-1])
    pairs = torch.view_as_complex((x if strides_even else x.contiguous()).unflatten(-1, (-1, 2)))
    if not head_major:
        return torch.view_as_real(pairs * rotation).flatten(-2)
    b, n, h, half = pairs.shape
    out = torch.empty((b, h, n, half), dtype=pairs.dtype, device=pairs.device).transpose(1, 2)
    return torch.view_as_real(torch.mul(pairs, rotation, out=out)).flatten(-2)


def rotate_queries_keys(
    q: Float[Tensor, "batch pos head_index d_head"],
    k: Float[Tensor, "batch pos head_index d_head"],
    positions: Float[Tensor, "batch pos *heads"],
    theta: float,
    integer_positions: Float[Tensor, " pos"] | None = None,
    n_fixed: int = 0,
) -> tuple[Float[Tensor, "batch pos head_index d_head"], Float[Tensor, "batch pos head_index d_head"]]:
    """`apply_rotary` of queries and keys at ``positions``: the same values, less memory in training.

    With two axes the first ``n_fixed`` pairs turn by ``integer_positions`` [pos] instead (see the
    module docstring); the gradient reaches ``positions`` through the other pairs only.

    Whenever autograd records (training, with learned or fixed positions), this runs as
    `_RotaryQK`. With learned positions its backward keeps only the positions and the rotated
    queries and keys (which attention keeps anyway) instead of autograd's angles, cos, sin and
    unrotated queries and keys. With fixed positions (``none``, frozen tables) it saves no more
    than autograd, and under ``torch.compile`` it keeps inductor from re-deriving the angles
    inside every element of the fused backward kernel (at paper size on CPU that kernel took
    19.4 ms per layer through plain autograd, 5.0 ms through this path). Without autograd the
    plain functions run.
    """
    needs_grad = positions.requires_grad or q.requires_grad or k.requires_grad
    if torch.is_grad_enabled() and needs_grad:
        return _RotaryQK.apply(q, k, positions, theta, integer_positions, n_fixed)
    cos, sin = rotary_cos_sin(positions, q.shape[-1], theta, integer_positions, n_fixed)
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


class _RotaryQK(torch.autograd.Function):
    """`rotary_cos_sin` + `apply_rotary` of q and k, with a backward written for memory.

    Saved: the positions ([batch, pos, *heads], tiny) and, per rotated tensor, the rotated output
    when it is float32 (attention keeps that tensor anyway, so it costs nothing) or else the
    unrotated input (bf16 under autocast: half the bytes of the float32 copy plain autograd would
    keep). cos and sin are recomputed from the positions by the same code, so they are
    bit-identical. The gradient with respect to the angle of each pair is taken from the rotated
    pair itself: d(r_even, r_odd)/dθ = (-r_odd, r_even).

    In eager mode q and k turn as complex pairs (`_turn`), one pass each way instead of six. The
    outputs and the gradients with respect to q and k are plain autograd's bit for bit wherever
    ATen's vectorised loop runs (every head size the shipped models use; a tail shorter than a
    register may differ in the last bit); the gradient with respect to the positions is the same
    sum, in another order, and agrees to float32 rounding.
    """

    @staticmethod
    def forward(
        ctx, q: Tensor, k: Tensor, positions: Tensor, theta: float, integer_positions: Tensor | None, n_fixed: int
    ) -> tuple[Tensor, Tensor]:
        cos, sin = rotary_cos_sin(positions, q.shape[-1], theta, integer_positions, n_fixed)
        if torch.compiler.is_compiling():
            q_rot, k_rot = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        else:  # one complex product per tensor (`_turn`): one pass instead of six, written
            # head-major, the layout attention's training node (`components._CausalAttention`)
            # reads in place
            rotation = _rotation(cos, sin, q)
            q_rot, k_rot = (_turn(x.float(), rotation, head_major=True).to(x.dtype) for x in (q, k))
        ctx.theta, ctx.n_fixed, ctx.dtypes = theta, n_fixed, (q.dtype, k.dtype)
        ctx.from_output = tuple(x.dtype == torch.float32 for x in (q, k))
        kept = [r if out else x for x, r, out in zip((q, k), (q_rot, k_rot), ctx.from_output, strict=True)]
        ctx.save_for_backward(positions, integer_positions, *kept)
        return q_rot, k_rot

    @staticmethod
    def backward(ctx, grad_q_rot: Tensor, grad_k_rot: Tensor) -> tuple[Tensor | None, ...]:
        positions, integer_positions, q_kept, k_kept = ctx.saved_tensors
        d_head, n_fixed = q_kept.shape[-1], ctx.n_fixed
        cos, sin = rotary_cos_sin(positions, d_head, ctx.theta, integer_positions, n_fixed)
        compiling = torch.compiler.is_compiling()
        # Eager: the input gradient turns each pair back by the conjugate as one complex product,
        # g (cos - i sin) = (g_e cos + g_o sin) + (g_o cos - g_e sin) i: autograd's sums exactly.
        back_turn = None if compiling else _rotation(cos, sin, q_kept, inverse=True)
        grads: list[Tensor | None] = [None, None]
        grad_angles = None
        for i, (grad, kept) in enumerate(((grad_q_rot, q_kept), (grad_k_rot, k_kept))):
            if grad is None:
                continue
            g = grad.float()
            g_even, g_odd = g[..., 0::2], g[..., 1::2]
            if ctx.needs_input_grad[i] and compiling:  # inductor does not lower complex tensors
                back = torch.stack((g_even * cos + g_odd * sin, g_odd * cos - g_even * sin), dim=-1)
                grads[i] = back.flatten(-2).to(ctx.dtypes[i])
            elif ctx.needs_input_grad[i]:
                grads[i] = _turn(g, back_turn).to(ctx.dtypes[i])
            if ctx.needs_input_grad[2]:
                rotated = kept if ctx.from_output[i] else apply_rotary(kept.float(), cos, sin)
                r_even, r_odd = rotated[..., 0::2], rotated[..., 1::2]
                # d(r_e, r_o)/dθ = (-r_o, r_e): the angle's gradient is g_o r_e - g_e r_o. q's and
                # k's accumulate in one buffer, reduced once over heads: 4 multiply-adds and one
                # sum instead of 6 passes, 2 sums and an add.
                if grad_angles is None:
                    grad_angles = torch.mul(g_odd, r_even)
                else:
                    grad_angles.addcmul_(g_odd, r_even)
                grad_angles.addcmul_(g_even, r_odd, value=-1.0)
        grad_positions = None
        if grad_angles is not None:
            grad_angles = grad_angles.sum_to_size(cos.shape)
            inv_freq = inverse_frequencies(d_head, ctx.theta, positions.device)[n_fixed:]
            # only the learned pairs' angles depend on the positions: [batch, pos, heads_or_1]
            grad_positions = (grad_angles[..., n_fixed:] * inv_freq).sum(-1)
            if positions.ndim == 2:
                grad_positions = grad_positions.squeeze(-1)
            grad_positions = grad_positions.to(positions.dtype)
        return grads[0], grads[1], grad_positions, None, None, None
