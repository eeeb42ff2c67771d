"""The yardstick: the `none` variant's architecture written as plain PyTorch, no hooks.

Byte vocabulary 257, tied input/output embeddings, pre-norm RMSNorm blocks, causal multi-head
attention through ``scaled_dot_product_attention`` with integer RoPE on interleaved pairs (theta
10,000; cos/sin tables precomputed once for every position), SwiGLU MLP, final RMSNorm, no biases.
Weights are ``nn.Linear`` / ``nn.Embedding`` / ``nn.RMSNorm`` modules; ``fused=True`` (default)
fuses the query/key/value and the gate/up projections into one matrix each, as efficient plain
implementations do; ``fused=False`` keeps five separate projections.

`BaselineTransformer.from_hooked` copies the weights of a `HookedIncrementTransformer` of the
``none`` variant, after which both compute the same logits (tests/benchmarks/test_baseline.py):
the benchmarks' ratios then compare two implementations of one computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lens_positions import HookedIncrementTransformer, IncrementConfig


def rope_tables(n_ctx: int, d_head: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin [n_ctx, 1, d_head/2] of integer positions 0..n_ctx-1, float32."""
    inv_freq = 1.0 / theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)
    angles = torch.arange(n_ctx, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos()[:, None, :], angles.sin()[:, None, :]


def rotate_interleaved(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (2i, 2i+1) of x [batch, pos, heads, d_head] by the angles in cos/sin [pos, 1, d_head/2]."""
    xf = x.float()
    even, odd = xf[..., 0::2], xf[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).type_as(x)


class BaselineBlock(nn.Module):
    def __init__(self, cfg: IncrementConfig, fused: bool = True):
        super().__init__()
        d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
        self.n_heads, self.d_head, self.fused = h, dh, fused
        self.attn_norm = nn.RMSNorm(d, eps=cfg.eps)
        if fused:
            self.qkv = nn.Linear(d, 3 * h * dh, bias=False)
            self.gate_up = nn.Linear(d, 2 * cfg.d_mlp, bias=False)
        else:
            self.q, self.k, self.v = (nn.Linear(d, h * dh, bias=False) for _ in range(3))
            self.gate, self.up = nn.Linear(d, cfg.d_mlp, bias=False), nn.Linear(d, cfg.d_mlp, bias=False)
        self.out = nn.Linear(h * dh, d, bias=False)
        self.mlp_norm = nn.RMSNorm(d, eps=cfg.eps)
        self.down = nn.Linear(cfg.d_mlp, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        batch, pos, _ = x.shape
        normed = self.attn_norm(x)
        if self.fused:
            q, k, v = self.qkv(normed).view(batch, pos, 3, self.n_heads, self.d_head).unbind(2)
        else:
            q, k, v = (f(normed).view(batch, pos, self.n_heads, self.d_head) for f in (self.q, self.k, self.v))
        q, k = rotate_interleaved(q, cos, sin), rotate_interleaved(k, cos, sin)
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        ).transpose(1, 2)
        x = x + self.out(z.reshape(batch, pos, -1))
        normed = self.mlp_norm(x)
        if self.fused:
            gate, up = self.gate_up(normed).chunk(2, dim=-1)
        else:
            gate, up = self.gate(normed), self.up(normed)
        return x + self.down(F.silu(gate) * up)


class BaselineTransformer(nn.Module):
    """Plain PyTorch byte transformer with integer RoPE; ``forward(tokens) -> logits``."""

    def __init__(self, cfg: IncrementConfig, fused: bool = True):
        super().__init__()
        if cfg.increments != "none":
            raise ValueError("the baseline is integer RoPE: build it from an increments='none' config")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.blocks = nn.ModuleList(BaselineBlock(cfg, fused) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.eps)
        cos, sin = rope_tables(cfg.n_ctx, cfg.d_head, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=cfg.initializer_range)

    def forward(self, tokens: Tensor) -> Tensor:
        pos = tokens.shape[1]
        if pos > self.cfg.n_ctx:
            raise ValueError(f"{pos} tokens exceed the context (n_ctx={self.cfg.n_ctx})")
        cos, sin = self.rope_cos[:pos], self.rope_sin[:pos]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x), self.embed.weight)

    def loss(self, tokens: Tensor) -> Tensor:
        """Mean next-byte cross-entropy (nats), as `HookedIncrementTransformer(..., return_type="loss")`."""
        logits = self(tokens)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())

    @classmethod
    @torch.no_grad()
    def from_hooked(cls, model: HookedIncrementTransformer, fused: bool = True) -> BaselineTransformer:
        """A baseline holding copies of a ``none``-variant model's weights (same device)."""
        cfg = model.cfg
        base = cls(cfg, fused).to(model.W_E.device)
        base.embed.weight.copy_(model.W_E)
        base.norm.weight.copy_(model.ln_final.w)
        for block, src in zip(base.blocks, model.blocks, strict=True):
            attn = src.attn
            # W_Q [n_heads, d_model, d_head] -> Linear weight [n_heads * d_head, d_model]
            q, k, v = (W.permute(0, 2, 1).reshape(-1, cfg.d_model) for W in (attn.W_Q, attn.W_K, attn.W_V))
            if fused:
                block.qkv.weight.copy_(torch.cat([q, k, v]))
                block.gate_up.weight.copy_(torch.cat([src.mlp.W_gate.T, src.mlp.W_in.T]))
            else:
                for linear, weight in zip((block.q, block.k, block.v), (q, k, v), strict=True):
                    linear.weight.copy_(weight)
                block.gate.weight.copy_(src.mlp.W_gate.T)
                block.up.weight.copy_(src.mlp.W_in.T)
            block.out.weight.copy_(attn.W_O.reshape(-1, cfg.d_model).T)  # [d_model, n_heads * d_head]
            block.attn_norm.weight.copy_(src.ln1.w)
            block.mlp_norm.weight.copy_(src.ln2.w)
            block.down.weight.copy_(src.mlp.W_out.T)
        return base
