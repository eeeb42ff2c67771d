"""Rotary position embedding on real-valued positions.

Positions are running sums of learned increments, so they are floats, not table indices: the
angles are computed on the fly from the positions, always in float32 (in bf16 the spacing between
representable numbers near 1024 is 8, which would erase every increment below that).

Pairs are interleaved, as in the reference experiment: dims (2i, 2i+1) of a head form one complex
number rotated by ``position * theta^(-2i/d_head)``.
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
    positions: Float[Tensor, "batch pos *heads"], d_head: int, theta: float
) -> tuple[Float[Tensor, "batch pos heads_or_1 half"], Float[Tensor, "batch pos heads_or_1 half"]]:
    """cos and sin of the rotation angles for every position (float32).

    positions: [batch, pos] (one position per token, broadcast over heads) or
        [batch, pos, n_heads] (per-head positions).
    Returns two tensors of shape [batch, pos, 1 or n_heads, d_head/2].
    """
    if positions.ndim == 2:
        positions = positions.unsqueeze(-1)
    inv_freq = inverse_frequencies(d_head, theta, positions.device)
    with torch.autocast(device_type=positions.device.type, enabled=False):
        angles = positions.float().unsqueeze(-1) * inv_freq  # [batch, pos, heads_or_1, half]
        return angles.cos(), angles.sin()


def apply_rotary(
    x: Float[Tensor, "batch pos head_index d_head"],
    cos: Float[Tensor, "batch pos heads_or_1 half"],
    sin: Float[Tensor, "batch pos heads_or_1 half"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Rotate interleaved pairs of ``x`` by the given angles; computed in float32, returned in x's dtype."""
    xf = x.float()
    even, odd = xf[..., 0::2], xf[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
