"""Where δ comes from: the increment MLP, the frozen per-token table, and positions from δ.

A token's position is the running sum of increments up to and including it,
``p_t = sum_{s<=t} δ_s``, so with every δ = 1 the positions are 1, 2, 3, ... (RoPE only ever sees
differences of positions, so the offset of 1 against the usual 0, 1, 2, ... changes nothing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from lens_positions.components import RMSNorm, use_fused_nodes
from lens_positions.config import IncrementConfig

#: softplus^-1(1) = log(e - 1): the shared MLP's output bias that makes δ exactly 1 at init.
SOFTPLUS_BIAS_FOR_ONE = math.log(math.expm1(1.0))


def sigmoid_bias_for_one(max_delta: float) -> float:
    """Bias b with ``max_delta * sigmoid(b) == 1``: the per-layer MLP's output bias at init."""
    return -math.log(max_delta - 1.0)


def signed_squash(raw: Tensor, max_delta: float) -> Tensor:
    """``1 + (max_delta - 1) * tanh(raw / max_delta)``: δ in (2 - max_delta, max_delta).

    Centred on 1, so that δ = 1 at a raw value of exactly 0 (tanh(0) = 0 on every backend): a zero
    output bias starts the model as exact integer RoPE with no float rounding to hope for (an
    offset tanh such as ``max_delta * tanh(b)`` hits 1 exactly for some bounds and misses by an ulp
    for others). The upper bound is the per-layer variant's; the lower one, -8 at the default 10,
    leaves room for the clearly negative δ of the post. The 1 / max_delta inside makes the slope
    at δ = 1 equal 1 - 1/max_delta, the slope of the positive ``max_delta * sigmoid`` there, so
    a signed model's increments move as fast per update as the positive model's: the two differ
    in the sign range, not in an effective learning rate.
    """
    return 1.0 + (max_delta - 1.0) * torch.tanh(raw / max_delta)


def signed_range(max_delta: float) -> tuple[float, float]:
    """The bounds of `signed_squash` (reached in float32, where tanh saturates to ±1)."""
    return 2.0 - max_delta, max_delta


class DeltaMLP(nn.Module):
    """The increment MLP: Linear(d_model -> d_delta) -> GELU -> Linear(-> 1 or n_heads) -> squash.

    ``per_layer=False`` (shared variant): reads the token embedding, ``δ = softplus(x)``.
    ``per_layer=True`` (per-layer variant): RMSNorm on the residual stream first, then
    ``δ = max_delta * sigmoid(x)``; the norm keeps the residual's growing magnitude from driving δ.
    With ``cfg.signed`` either one squashes by `signed_squash` instead, δ in (2 - max_delta,
    max_delta), with a zero output bias: a bound is needed (unbounded δ exploded in the reference
    runs), and a signed model keeps the per-layer variant's upper bound and initial slope.

    The output layer's weight starts at zero and its bias at the value that gives δ = 1, so every
    model starts as exact integer RoPE; gradients reach the first layer once the output weight moves.

    Hooks: ``ln.hook_scale`` / ``ln.hook_normalized`` (per-layer only), ``hook_pre`` [batch, pos,
    d_delta] before GELU, ``hook_post`` after it, ``hook_raw`` [batch, pos, n_out] before the squash.
    The normalised stream exists only while something hooks ``ln.hook_normalized``; otherwise the
    norm is folded into ``W_in`` (as attention skips its pattern unless it is hooked).
    In eager float32 training with none of these hooks in use, the per-layer MLP runs as one
    autograd node, `_DeltaMLPFunction` (same values to rounding, a fraction of the small ops).
    """

    def __init__(self, cfg: IncrementConfig, per_layer: bool):
        super().__init__()
        self.squash = "tanh" if cfg.signed else "sigmoid" if per_layer else "softplus"
        self.max_delta = cfg.max_delta
        self.n_out = cfg.n_delta_outputs
        self.ln = RMSNorm(cfg.d_model, cfg.delta_eps) if per_layer else None
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_delta))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_delta))
        self.W_out = nn.Parameter(torch.zeros(cfg.d_delta, self.n_out))
        self.b_out = nn.Parameter(torch.full((self.n_out,), self.bias_for_one()))
        nn.init.normal_(self.W_in, std=cfg.initializer_range)
        self.hook_pre = HookPoint()  # [batch, pos, d_delta]
        self.hook_post = HookPoint()  # [batch, pos, d_delta]
        self.hook_raw = HookPoint()  # [batch, pos, n_out]

    def bias_for_one(self) -> float:
        """The output bias that makes δ exactly 1 while the output weight is zero."""
        if self.squash == "tanh":
            return 0.0
        if self.squash == "sigmoid":
            return sigmoid_bias_for_one(self.max_delta)
        return SOFTPLUS_BIAS_FOR_ONE

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], mean_sq: Tensor | None = None,
        stream: tuple[Tensor, Tensor, float] | None = None,
    ) -> Float[Tensor, "batch pos *heads"]:
        """δ for every token, float32: [batch, pos], or [batch, pos, n_heads] with per-head rates.

        mean_sq: [batch, pos, 1] ``mean(x^2)`` when the caller has it (the block's own norm reads
        the same stream: one reduction serves both norms). stream: ``(x / rms_1, mean(x^2),
        eps_1)`` from another norm of x (the block's ln1, `RMSNorm.normalize_and_mean_square`);
        in training the fused node then reads that stream instead of x, rescaled to this norm's
        eps, so that backward needs no copy of x."""
        if self.ln is not None and self._fusable(x):
            if stream is None:
                normalized, mean_sq = self.ln.normalize_and_mean_square(x)
                stream = (normalized, mean_sq, self.ln.eps_for(x))
            delta = _DeltaMLPFunction.apply(
                *stream[:2], self.ln.w, self.W_in, self.b_in, self.W_out, self.b_out,
                stream[2], self.ln.eps_for(x), self.squash, self.max_delta,
            )
            return delta.squeeze(-1) if self.n_out == 1 else delta
        if self.ln is None:
            pre = x @ self.W_in + self.b_in
        elif self.ln.hook_normalized.has_hooks():
            pre = self.ln(x, mean_sq) @ self.W_in + self.b_in
        else:
            # The norm folded into the first matmul: (x / rms) * w @ W_in = (x @ (w * W_in)) / rms.
            # Same values (to rounding), but backward keeps only x (which the block's own norm keeps
            # anyway), rms and the [.., d_delta] product, not two [.., d_model] copies of the
            # normalised stream: most of what the per-layer variant added to training memory.
            pre = (x @ (self.ln.w[:, None] * self.W_in)) / self.ln.rms(x, mean_sq) + self.b_in
        pre = self.hook_pre(pre)
        post = self.hook_post(F.gelu(pre))
        raw = self.hook_raw(post @ self.W_out + self.b_out)
        raw = raw.float()  # squash in float32 so δ keeps its precision under bf16 autocast
        if self.squash == "tanh":
            delta = signed_squash(raw, self.max_delta)
        elif self.squash == "sigmoid":
            delta = self.max_delta * torch.sigmoid(raw)
        else:
            delta = F.softplus(raw)
        return delta.squeeze(-1) if self.n_out == 1 else delta

    def _fusable(self, x: Tensor) -> bool:
        """True when the whole MLP may run as `_DeltaMLPFunction`: eager float32 training and no
        hook on any of its intermediates."""
        hooks = (self.hook_pre, self.hook_post, self.hook_raw, self.ln.hook_scale, self.ln.hook_normalized)
        return use_fused_nodes(x, self.W_in) and not any(h.has_hooks() for h in hooks)


class _DeltaMLPFunction(torch.autograd.Function):
    """The per-layer increment MLP, norm folded in, as one autograd node (eager float32 training).

    Reads x as another norm's output ``n = x / rms_1`` with ``rms_1 = sqrt(mean_sq + eps_1)``
    (the block's ln1, or its own norm when called alone, eps_1 = eps): since
    ``x / rms = n * (rms_1 / rms)``, ``δ = squash(gelu((n @ (w * W_in)) * s + b_in) @ W_out +
    b_out)`` with ``s = sqrt((mean_sq + eps_1) / (mean_sq + eps))``, 1 when the eps agree. The
    gradients of n and mean_sq [batch, pos, 1] flow back to the norm that made them. Autograd
    would record some twenty small nodes per layer for this; backward here is written out: two
    [tokens, d_delta] x [d_delta, d_model] products for n and the folded weight, the rest on
    [tokens, d_delta] or smaller. The values are `DeltaMLP`'s unfused ones to rounding
    (tests/lens_positions/test_model.py). Saves n (which its norm keeps anyway), the product
    n @ (w * W_in), s, the GELU's output and δ; no copy of x.
    """

    @staticmethod
    def forward(ctx, normalized, mean_sq, w, W_in, b_in, W_out, b_out, eps_stream: float, eps: float,
                squash: str, max_delta: float):
        flat = normalized.reshape(-1, normalized.shape[-1])
        ms = mean_sq.reshape(-1, 1)
        scale = ((ms + eps_stream) / (ms + eps)).sqrt()
        folded = w[:, None] * W_in
        h = flat @ folded
        post = F.gelu(torch.addcmul(b_in, h, scale))
        raw = torch.addmm(b_out, post, W_out)
        delta = _squash(raw, squash, max_delta)
        ctx.consts = (squash, max_delta, eps_stream, eps, normalized.shape)
        ctx.save_for_backward(flat, ms, scale, h, post, delta, w, W_in, b_in, W_out, folded)
        return delta.view(*normalized.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad_delta: Tensor) -> tuple[Tensor | None, ...]:
        flat, ms, scale, h, post, delta, w, W_in, b_in, W_out, folded = ctx.saved_tensors
        squash, m, eps_stream, eps, shape = ctx.consts
        if squash == "sigmoid":  # δ = m sigmoid(raw): dδ/draw = δ (1 - δ / m)
            slope = delta * (1.0 - delta / m)
        else:  # tanh: δ = 1 + (m - 1) tanh(raw / m): dδ/draw = (1 - 1/m)(1 - tanh²)
            t = (delta - 1.0) / (m - 1.0)
            slope = (1.0 - 1.0 / m) * (1.0 - t * t)
        g_raw = grad_delta.reshape(slope.shape) * slope  # [tokens, n_out]
        pre = torch.addcmul(b_in, h, scale)  # recomputed: cheaper than keeping it; gelu is not
        # g_raw @ W_out.T, as a broadcast product when there is one output (a depth-1 matrix
        # product costs more than the multiplication it is)
        g_post = g_raw * W_out[:, 0] if W_out.shape[1] == 1 else g_raw @ W_out.T
        g_pre = torch.ops.aten.gelu_backward(g_post, pre)  # [tokens, d_delta]
        g_h = g_pre * scale  # the gradient of n @ folded
        grad_folded = flat.T @ g_h  # [d_model, d_delta]
        grad_normalized = (g_h @ folded.T).view(shape)
        # s = sqrt((ms + eps_1) / (ms + eps)): ds/dms = (eps - eps_1) / (2 s (ms + eps)^2)
        grad_scale = (g_pre * h).sum(-1, keepdim=True)
        grad_mean_sq = (grad_scale * (eps - eps_stream) / (2 * scale * (ms + eps) ** 2)).view(*shape[:-1], 1)
        grad_w = (grad_folded * W_in).sum(-1)
        grad_W_in = grad_folded * w[:, None]
        grad_W_out = post.T @ g_raw
        return (grad_normalized, grad_mean_sq, grad_w, grad_W_in, g_pre.sum(0), grad_W_out, g_raw.sum(0),
                None, None, None, None)


def _squash(raw: Tensor, squash: str, max_delta: float) -> Tensor:
    """The per-layer MLP's output squash of raw [.., n_out], float32 (as `DeltaMLP.forward`)."""
    if squash == "tanh":
        return signed_squash(raw, max_delta)
    return max_delta * torch.sigmoid(raw)


def check_delta_table(table: Tensor, cfg: IncrementConfig) -> None:
    """Raise ValueError unless ``table`` holds increments this config allows.

    Unsigned: finite and positive (positions only move forward). Signed: finite and inside
    `signed_range`, the values a signed shared MLP can produce.
    """
    if not torch.isfinite(table).all():
        raise ValueError("delta table must be finite")
    if cfg.signed:
        lo, hi = signed_range(cfg.max_delta)
        if (table < lo).any() or (table > hi).any():
            raise ValueError(
                f"signed delta table must lie in [{lo:g}, {hi:g}] (max_delta {cfg.max_delta:g}); "
                f"got values in [{table.min().item():g}, {table.max().item():g}]"
            )
    elif (table <= 0).any():
        raise ValueError(
            f"delta table must be positive ({int((table <= 0).sum())} entries are <= 0, the smallest "
            f"{table.min().item():g}); build the model with signed=True to allow negative increments"
        )


class DeltaTable(nn.Module):
    """Frozen per-token increments: a [d_vocab] (or [d_vocab, n_heads]) buffer, not trained."""

    def __init__(self, cfg: IncrementConfig):
        super().__init__()
        shape = (cfg.d_vocab,) if cfg.n_delta_outputs == 1 else (cfg.d_vocab, cfg.n_delta_outputs)
        self.register_buffer("deltas", torch.ones(shape, dtype=torch.float32))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos *heads"]:
        return self.deltas[tokens]


def positions_from_deltas(
    delta: Float[Tensor, "batch pos *heads"], start: Tensor | float = 0.0
) -> Float[Tensor, "batch pos *heads"]:
    """Running sum of increments along the sequence, float32, offset by ``start``.

    ``start`` is the position of the token before the first one (0 for a fresh sequence; the last
    cached position when generating with a key/value cache): [batch] or [batch, n_heads].
    """
    with torch.autocast(device_type=delta.device.type, enabled=False):
        positions = torch.cumsum(delta.float(), dim=1)
        if isinstance(start, Tensor):
            start = start.unsqueeze(1)
        return positions + start
