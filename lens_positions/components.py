"""The transformer's parts, with a TransformerLens `HookPoint` on every intermediate.

Weights use TransformerLens's shapes and names (``W_Q`` [n_heads, d_model, d_head], ``W_O``
[n_heads, d_head, d_model], ``W_in``/``W_gate`` [d_model, d_mlp], ``W_out`` [d_mlp, d_model]) so
that `ActivationCache` helpers such as ``stack_head_results`` work on them. There are no biases.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from lens_positions.config import IncrementConfig
from lens_positions.kv_cache import LayerKVCache
from lens_positions.memory import large_empty
from lens_positions.rotary import rotate_queries_keys


class _MeanSquare(torch.autograd.Function):
    """``x.pow(2).mean(-1, keepdim=True)`` with the same values and gradient as autograd's, bit for
    bit: autograd's backward materialises the gradient expanded to x's shape, divides it by the
    width, copies x (``x.pow(1)``) and doubles it, then multiplies (four passes over x's size);
    this divides the small [..., 1] gradient first (the same division of the same numbers),
    doubles it there (exact, as doubling x is) and makes one pass. Saves x, as autograd's pow
    does."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.pow(2).mean(-1, keepdim=True)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return x * ((grad / x.shape[-1]) * 2)


class _Normalize(torch.autograd.Function):
    """``x / sqrt(mean(x^2) + eps)`` and ``mean(x^2)`` [..., 1] as one autograd node, for eager
    float32 training.

    The mean square is the second output so that the per-layer δ-MLP can read the block's ln1
    (its own rms differs only by eps) and its gradient flows back here. Backward is the textbook
    gradient ``(g - n mean(g n)) / rms`` (``n`` the output) plus the mean square's term
    ``2 x g_ms / d = n (2 rms g_ms / d)`` in three passes over x's size, where autograd's chain
    of pow, mean, add, sqrt and div makes seven; so it agrees with plain autograd to float32
    rounding, not bit for bit. Saves the output and rms, not x. Used only while neither
    ``hook_scale`` nor ``hook_normalized`` is hooked (a hook may edit what backward would read).
    """

    @staticmethod
    def forward(ctx, x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        mean_sq = x.pow(2).mean(-1, keepdim=True)
        rms = (mean_sq + eps).sqrt()
        normalized = x / rms
        ctx.save_for_backward(normalized, rms)
        return normalized, mean_sq

    @staticmethod
    def backward(ctx, grad: Tensor, grad_mean_sq: Tensor) -> tuple[Tensor | None, None]:
        normalized, rms = ctx.saved_tensors  # unused outputs' gradients arrive as zeros
        d = normalized.shape[-1]
        # grad_x = grad / rms - n (dot / (d rms) - 2 rms g_ms / d), with dot = sum(grad n)
        coef = (grad * normalized).sum(-1, keepdim=True) / (rms * d) - grad_mean_sq * (2 * rms / d)
        return torch.addcmul(grad / rms, normalized, coef, value=-1.0), None


class RMSNorm(nn.Module):
    """``w * x / sqrt(mean(x^2) + eps)``. Hooks: ``hook_scale`` [batch, pos, 1], ``hook_normalized``.

    ``eps=None`` uses ``torch.finfo(x.dtype).eps`` (torch.nn.RMSNorm's default). `normalize`
    stops before the weight: a block hands its products ``w`` to fold into their own weights,
    ``(x / rms) @ (w[:, None] * W)``, which saves a pass over the stream each way. In eager
    float32 training with neither hook in use the division is one autograd node, `_Normalize`
    (fewer full-size passes, the same gradient to rounding; benchmarks/RESULTS.md, issues 15
    and 23); otherwise plain autograd runs, the mean square through `_MeanSquare`.
    """

    def __init__(self, d_model: int, eps: float | None = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def rms(
        self, x: Float[Tensor, "batch pos d_model"], mean_sq: Tensor | None = None
    ) -> Float[Tensor, "batch pos 1"]:
        """``sqrt(mean(x^2) + eps)``, through ``hook_scale``; ``mean_sq``: `mean_square` of x when
        the caller already has it (two norms reading one stream share it)."""
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        return self.hook_scale(((mean_square(x) if mean_sq is None else mean_sq) + eps).sqrt())

    def normalize(
        self, x: Float[Tensor, "batch pos d_model"], mean_sq: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``x / rms`` through ``hook_scale`` and ``hook_normalized``: the norm before its weight."""
        if mean_sq is None and self.fused(x):
            return _Normalize.apply(x, self.eps_for(x))[0]
        return self.hook_normalized(x / self.rms(x, mean_sq))

    def normalize_and_mean_square(
        self, x: Float[Tensor, "batch pos d_model"]
    ) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos 1"]]:
        """`normalize` and x's mean square [batch, pos, 1], for a second norm reading x."""
        if self.fused(x):
            return _Normalize.apply(x, self.eps_for(x))
        mean_sq = mean_square(x)
        return self.normalize(x, mean_sq), mean_sq

    def fused(self, x: Tensor) -> bool:
        """True when `normalize` runs as the `_Normalize` node (training, neither hook in use)."""
        return use_fused_nodes(x) and not (self.hook_scale.has_hooks() or self.hook_normalized.has_hooks())

    def eps_for(self, x: Tensor) -> float:
        return torch.finfo(x.dtype).eps if self.eps is None else self.eps

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], mean_sq: Tensor | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        return self.normalize(x, mean_sq) * self.w


def mean_square(x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos 1"]:
    """``x.pow(2).mean(-1, keepdim=True)`` (in training through `_MeanSquare`)."""
    return _MeanSquare.apply(x) if _tracked(x) else x.pow(2).mean(-1, keepdim=True)


def _tracked(*tensors: Tensor) -> bool:
    """True when autograd records an op on these tensors (training), so a custom backward counts."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def use_fused_nodes(*tensors: Tensor) -> bool:
    """True where the fused training nodes run: autograd records, eager mode, no autocast (under
    ``torch.compile`` inductor fuses the plain ops itself; autocast keeps its own casts)."""
    return (
        _tracked(*tensors)
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled(tensors[0].device.type)
    )


class _SharedInputProducts(torch.autograd.Function):
    """``x @ W`` for several weights read by one input (queries, keys and values; gate and input
    of the MLP), as one autograd node whose backward sums x's gradient inside the matrix
    products (``addmm_``) instead of in separate full-size additions.

    x: [..., d_in]; each W: [d_in, d_out_i]. Returns one [..., d_out_i] tensor per weight. The
    values are those of separate products; the gradient of x agrees to float32 rounding."""

    @staticmethod
    def forward(ctx, x: Tensor, *weights: Tensor) -> tuple[Tensor, ...]:
        flat = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(flat, *weights)
        ctx.lead = x.shape[:-1]
        return tuple((flat @ W).view(*ctx.lead, W.shape[1]) for W in weights)

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        flat, *weights = ctx.saved_tensors
        grad_x = None
        grad_weights: list[Tensor | None] = []
        for grad, W, needed in zip(grads, weights, ctx.needs_input_grad[1:], strict=True):
            if grad is None:
                grad_weights.append(None)
                continue
            g = grad.reshape(-1, W.shape[1])
            if ctx.needs_input_grad[0]:
                grad_x = g @ W.T if grad_x is None else grad_x.addmm_(g, W.T)
            grad_weights.append(flat.T @ g if needed else None)
        if grad_x is not None:
            grad_x = grad_x.view(*ctx.lead, flat.shape[1])
        return grad_x, *grad_weights


def shared_input_products(x: Tensor, *weights: Tensor) -> tuple[Tensor, ...]:
    """``tuple(x @ W for W in weights)`` for x [..., d_in], through `_SharedInputProducts` in
    eager float32 training."""
    if use_fused_nodes(x, *weights):
        return _SharedInputProducts.apply(x, *weights)
    return tuple(x @ W for W in weights)


def _heads_flat(W: Tensor) -> Tensor:
    """W [n_heads, d_model, d_head] as one matrix [d_model, n_heads * d_head] (head-major columns):
    ``x @ _heads_flat(W)`` unflattened to [..., n_heads, d_head] is every head's ``x @ W[h]``."""
    n_heads, d_model, d_head = W.shape
    return W.permute(1, 0, 2).reshape(d_model, n_heads * d_head)


def causal_bias(n_q: int, n_k: int, past: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[n_q, n_k]: 0 where query i (the ``past + i``-th token) may see key j (j <= past + i), -inf
    above that diagonal."""
    return torch.full((n_q, n_k), float("-inf"), dtype=dtype, device=device).triu_(past + 1)


#: Query rows per block of `_CausalAttention`, and the most bytes of scores one block may hold
#: per thread: (batch x head) slices are grouped so that a block's [slices, rows, keys] scores
#: stay in the caches of the cores working on it (1 MiB of L2 per core on the CPU this project
#: measures on; at 2 threads a 2 MiB block was faster than a 1 MiB one, at 1 thread not).
QUERY_BLOCK = 64
SCORE_BLOCK_BYTES = 1 << 20
#: Sequence lengths outside this range keep scaled_dot_product_attention: below it a handful of
#: blocks' calls cost more than they save; above it, with 2 threads, the many per-block products
#: (each split across the threads, where SDPA gives each thread whole tiles) made the node
#: slower than SDPA at 1024 tokens (benchmarks/training_attention.py, benchmarks/RESULTS.md).
MIN_BLOCKED_TOKENS = 128
MAX_BLOCKED_TOKENS = 512


def _attention_blocks(
    bh: int, n: int, dtype: torch.dtype, device: torch.device
) -> list[tuple[slice, int, int, Tensor]]:
    """(batch x head slice, first query row, end row, causal bias [rows, end row]) of every block
    of `_CausalAttention`: query rows [lo, hi) need keys [0, hi) only (the rest of each row is
    masked anyway), and each slice holds as many of the ``bh`` [pos, d_head] matrices as keep
    the block's scores within `SCORE_BLOCK_BYTES` per torch thread."""
    per_slice = QUERY_BLOCK * n * torch.finfo(dtype).bits // 8
    group = max(1, min(bh, SCORE_BLOCK_BYTES * torch.get_num_threads() // per_slice))
    rows = []
    for lo in range(0, n, QUERY_BLOCK):
        hi = min(lo + QUERY_BLOCK, n)
        rows.append((lo, hi, causal_bias(hi - lo, hi, lo, dtype, device)))
    return [(slice(g, min(g + group, bh)), lo, hi, bias) for g in range(0, bh, group) for lo, hi, bias in rows]


def _softmax_in_place(scores: Tensor) -> Tensor:
    """Softmax over the last dim written over ``scores``: ATen's CPU kernel reads each element
    before writing it, so the result equals ``torch.softmax`` bit for bit (tested) and spares a
    fresh block-sized buffer."""
    return torch.ops.aten._softmax.out(scores, -1, False, out=scores)


def _softmax_backward_in_place(grad_pattern: Tensor, pattern: Tensor) -> Tensor:
    """``pattern * (grad_pattern - sum(grad_pattern * pattern))`` per row, softmax's own backward
    kernel, written over ``grad_pattern`` (the row's sum is taken before any element is
    written)."""
    return torch.ops.aten._softmax_backward_data.out(grad_pattern, pattern, -1, pattern.dtype, grad_input=grad_pattern)


class _CausalAttention(torch.autograd.Function):
    """Causal softmax attention ``softmax(q k^T * scale + causal mask) v`` as one autograd node,
    for eager float32 training on CPU (no key/value cache).

    q, k, v: [batch, pos, head_index, d_head]; returns z in the same layout. The work goes in
    blocks (`_attention_blocks`): a group of (batch x head) slices and `QUERY_BLOCK` query rows
    against the keys those rows may see. Per block: one batched product for the scores (the
    causal bias added in its epilogue), softmax in place, one product for z. Backward recomputes
    each block's pattern from q and k instead of keeping it (as flash attention does: nothing of
    [query, key] size outlives a block), then takes v's, the scores' (softmax's own backward
    kernel), q's and k's gradients block by block. The products are a few large batched calls
    per block, where scaled_dot_product_attention's CPU kernel makes many small per-tile ones:
    at the paper's shape its forward and backward took about 0.75-0.85 of SDPA's time on this
    project's CPU (benchmarks/training_attention.py, benchmarks/RESULTS.md, issue 23). Values
    agree with SDPA to float32 rounding. Saves q, k and v as [batch * heads, pos, d_head]: views
    of q and k when they are laid out head-major (the training rotary writes them so, and keeps
    them anyway), a copy of v (SDPA keeps v too); no pattern.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        b, n, h, dh = q.shape
        q3, k3, v3 = (t.transpose(1, 2).reshape(b * h, n, dh) for t in (q, k, v))
        z = torch.empty_like(q3)
        for g, lo, hi, bias in _attention_blocks(b * h, n, q.dtype, q.device):
            scores = torch.baddbmm(bias, q3[g, lo:hi], k3[g, :hi].transpose(1, 2), alpha=scale)
            z[g, lo:hi] = torch.bmm(_softmax_in_place(scores), v3[g, :hi])
        ctx.save_for_backward(q3, k3, v3)
        ctx.scale = scale
        return z.view(b, h, n, dh).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_z: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        q3, k3, v3 = ctx.saved_tensors
        bh, n, dh = q3.shape
        b = grad_z.shape[0]
        g3 = grad_z.transpose(1, 2).reshape(bh, n, dh)
        grad_q, grad_k, grad_v = torch.empty_like(q3), torch.zeros_like(k3), torch.zeros_like(v3)
        for g, lo, hi, bias in _attention_blocks(bh, n, q3.dtype, q3.device):
            scores = torch.baddbmm(bias, q3[g, lo:hi], k3[g, :hi].transpose(1, 2), alpha=ctx.scale)
            pattern = _softmax_in_place(scores)  # recomputed, bit for bit the forward's
            grad_v[g, :hi].baddbmm_(pattern.transpose(1, 2), g3[g, lo:hi])
            grad_pattern = torch.bmm(g3[g, lo:hi], v3[g, :hi].transpose(1, 2))
            grad_scores = _softmax_backward_in_place(grad_pattern, pattern)
            grad_q[g, lo:hi] = torch.bmm(grad_scores, k3[g, :hi]).mul_(ctx.scale)
            grad_k[g, :hi].baddbmm_(grad_scores.transpose(1, 2), q3[g, lo:hi], alpha=ctx.scale)
        h = bh // b
        return tuple(g.view(b, h, n, dh).transpose(1, 2) for g in (grad_q, grad_k, grad_v)) + (None,)


class Attention(nn.Module):
    """Causal multi-head attention with rotary on real-valued positions.

    Uses ``scaled_dot_product_attention`` unless something needs the scores or the pattern (a hook
    on ``hook_attn_scores`` / ``hook_pattern``, e.g. `run_with_cache`, or ``cfg.use_sdpa=False``);
    then it materialises them as TransformerLens does. Scores are masked with -inf before
    ``hook_attn_scores``, as in TransformerLens. Eager float32 training on CPU without a cache
    takes the blocked `_CausalAttention` node instead of scaled_dot_product_attention where it
    was measured faster (`blocked_training`; the same values to rounding, no pattern kept either).
    """

    def __init__(self, cfg: IncrementConfig):
        super().__init__()
        self.cfg = cfg
        H, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(H, d, dh))
        self.W_K = nn.Parameter(torch.empty(H, d, dh))
        self.W_V = nn.Parameter(torch.empty(H, d, dh))
        self.W_O = nn.Parameter(torch.empty(H, dh, d))
        for W in (self.W_Q, self.W_K, self.W_V, self.W_O):
            nn.init.normal_(W, std=cfg.initializer_range)
        self.attn_scale = math.sqrt(dh)
        self.n_fixed_pairs = dh // 2 - cfg.n_learned_pairs  # pairs turned by the integer position
        self.hook_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_rot_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_rot_k = HookPoint()  # [batch, pos, head_index, d_head] (new keys only with a cache)
        self.hook_attn_scores = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head_index, d_head]

    def needs_pattern(self) -> bool:
        """True when the attention scores or pattern must be materialised."""
        return (
            not self.cfg.use_sdpa
            or self.hook_attn_scores.has_hooks()
            or self.hook_pattern.has_hooks()
        )

    def blocked_training(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> bool:
        """True when attention runs as `_CausalAttention`: eager float32 training on CPU, no
        cache, `MIN_BLOCKED_TOKENS` to `MAX_BLOCKED_TOKENS` tokens (the SDPA branch, so nothing
        hooks the pattern)."""
        return (
            past == 0 and MIN_BLOCKED_TOKENS <= q.shape[1] <= MAX_BLOCKED_TOKENS and q.device.type == "cpu"
            and q.dtype == torch.float32 and use_fused_nodes(q, k, v)
        )

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"],
        positions: Float[Tensor, "batch pos *heads"],
        cache: LayerKVCache | None = None,
        integer_positions: Float[Tensor, " pos"] | None = None,
        in_scale: Float[Tensor, " d_model"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """``integer_positions`` turn the first `n_fixed_pairs` pairs (two-axis models only).
        ``in_scale``: the preceding norm's weight when x is its output before the weight
        (`RMSNorm.normalize`), folded into W_Q, W_K and W_V: the same products to rounding."""
        weights = [_heads_flat(W) for W in (self.W_Q, self.W_K, self.W_V)]
        if in_scale is not None:
            weights = [in_scale[:, None] * W for W in weights]
        q, k, v = shared_input_products(x, *weights)
        q = self.hook_q(q.unflatten(-1, (self.cfg.n_heads, -1)))
        k = self.hook_k(k.unflatten(-1, (self.cfg.n_heads, -1)))
        v = self.hook_v(v.unflatten(-1, (self.cfg.n_heads, -1)))
        q, k = rotate_queries_keys(q, k, positions, self.cfg.rope_theta, integer_positions, self.n_fixed_pairs)
        q, k = self.hook_rot_q(q), self.hook_rot_k(k)
        if cache is not None:
            k, v = cache.append(k, v)
        n_q, n_k = q.shape[1], k.shape[1]
        past = n_k - n_q
        if self.needs_pattern():
            # One GEMM scales and masks: scores = bias + (q k^T) / sqrt(d_head), the causal bias
            # (0 or -inf, [q, k], broadcast over batch x head) added in baddbmm's epilogue. The
            # [batch, head, q, k] tensors are the largest of the model, and every separate pass
            # over them (a division, a masking) costs as much as the product itself on CPU
            # (benchmarks/RESULTS.md, issue 15). The scale multiplies, as in HF's eager attention.
            b, h, dh = q.shape[0], q.shape[2], q.shape[3]
            q_bh = q.transpose(1, 2).reshape(b * h, n_q, dh)
            k_bh = k.permute(0, 2, 3, 1).reshape(b * h, dh, n_k)
            bias = causal_bias(n_q, n_k, past, q.dtype, x.device)
            # Without autograd (analysis: run_with_cache) scores and pattern are written into
            # memory allocated with a huge-page hint (lens_positions.memory: a third of the
            # first-touch cost of fresh 32 MiB blocks on CPU). Same values either way.
            hinted = x.device.type == "cpu" and not (
                torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
                or torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu")
            )
            if hinted:
                scores = large_empty((b * h, n_q, n_k), q.dtype, x.device)
                torch.baddbmm(bias, q_bh, k_bh, alpha=1.0 / self.attn_scale, out=scores)
            else:
                scores = torch.baddbmm(bias, q_bh, k_bh, alpha=1.0 / self.attn_scale)
            scores = self.hook_attn_scores(scores.view(b, h, n_q, n_k))
            if hinted:
                pattern = large_empty(scores.shape, scores.dtype, scores.device)
                torch.ops.aten._softmax.out(scores, -1, False, out=pattern)  # F.softmax's kernel
            else:
                pattern = F.softmax(scores, dim=-1)
            # Rows a hook masked entirely are NaN after softmax: zero them. Softmax's backward
            # needs its output, so only without autograd may this happen in place.
            if pattern.requires_grad:
                pattern = torch.nan_to_num(pattern, nan=0.0)
            elif pattern.device.type != "cpu" or torch.isnan(pattern[..., 0]).any():
                # A row with a NaN anywhere is NaN everywhere (softmax divides by its NaN sum), so
                # on CPU the first key's column tells whether any row needs the full pass.
                pattern.nan_to_num_(nan=0.0)
            pattern = self.hook_pattern(pattern)
            z = torch.einsum("bhqk,bkhd->bqhd", pattern.to(v.dtype), v)
        elif self.blocked_training(q, k, v, past):
            z = _CausalAttention.apply(q, k, v, 1.0 / self.attn_scale)
        else:
            mask = None
            if past and n_q > 1:
                mask = torch.ones(n_q, n_k, dtype=torch.bool, device=x.device).tril(past)
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=mask,
                is_causal=(past == 0 and n_q > 1),
            ).transpose(1, 2)
        z = self.hook_z(z)
        H, dh, d = self.W_O.shape
        return z.flatten(-2) @ self.W_O.reshape(H * dh, d)


class _GatedMLPFunction(torch.autograd.Function):
    """``silu(x W_gate) * (x W_in) @ W_out`` as one autograd node, for eager float32 training.

    The [tokens, d_mlp] intermediates are the largest tensors of a training step, and on CPU
    their elementwise passes run at memory speed: every fresh one costs more than its
    arithmetic. Autograd makes four of them forward (gate, linear, silu, product) and four
    backward; this makes three forward (the product is written over the silu) and two backward
    (silu recomputed from gate, then each gradient written over a buffer it consumes), and sums
    x's gradient inside the products (``addmm_``). Saves x, gate, linear and the product where
    autograd also keeps the silu. The values are plain autograd's to rounding.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W_gate: Tensor, W_in: Tensor, W_out: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        gate, linear = flat @ W_gate, flat @ W_in
        post = F.silu(gate).mul_(linear)
        ctx.save_for_backward(flat, gate, linear, post, W_gate, W_in, W_out)
        ctx.shape = x.shape
        return (post @ W_out).view(*x.shape[:-1], W_out.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, ...]:
        flat, gate, linear, post, W_gate, W_in, W_out = ctx.saved_tensors
        g_out = grad.reshape(-1, grad.shape[-1])
        grad_W_out = post.T @ g_out
        g_post = g_out @ W_out.T
        g_linear = F.silu(gate).mul_(g_post)  # d/d linear = grad * silu(gate)
        g_gate = torch.ops.aten.silu_backward.grad_input(g_post.mul_(linear), gate, grad_input=g_post)
        grad_x = (g_gate @ W_gate.T).addmm_(g_linear, W_in.T)
        return grad_x.view(ctx.shape), flat.T @ g_gate, flat.T @ g_linear, grad_W_out


class GatedMLP(nn.Module):
    """SwiGLU: ``W_out(silu(x W_gate) * (x W_in))``.

    Hooks as TransformerLens's gated MLP: ``hook_pre`` (x W_gate), ``hook_pre_linear`` (x W_in),
    ``hook_post`` (their gated product) [batch, pos, d_mlp]. In eager float32 training with none
    of them hooked the MLP is one node, `_GatedMLPFunction`.
    """

    def __init__(self, cfg: IncrementConfig):
        super().__init__()
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        for W in (self.W_gate, self.W_in, self.W_out):
            nn.init.normal_(W, std=cfg.initializer_range)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], in_scale: Float[Tensor, " d_model"] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``in_scale``: the preceding norm's weight, folded into W_gate and W_in (see `Attention`)."""
        weights = (self.W_gate, self.W_in)
        if in_scale is not None:
            weights = tuple(in_scale[:, None] * W for W in weights)
        hooks = (self.hook_pre, self.hook_pre_linear, self.hook_post)
        if use_fused_nodes(x, *weights) and not any(h.has_hooks() for h in hooks):
            return _GatedMLPFunction.apply(x, *weights, self.W_out)
        gate, linear = shared_input_products(x, *weights)
        pre = self.hook_pre(gate)
        pre_linear = self.hook_pre_linear(linear)
        post = self.hook_post(F.silu(pre) * pre_linear)
        return post @ self.W_out
