"""One transformer block: its increments, its positions, attention and MLP.

Every block owns ``hook_delta`` and ``hook_position``, whatever the variant: for ``none`` δ is all
ones, for ``shared`` it is the one δ computed from the embedding, for ``per_layer`` the block's own
increment MLP reads its residual stream. Editing ``hook_delta`` changes this layer's positions
only; editing ``hook_position`` sets them directly.

Two-axis models (``learned_fraction`` < 1) also turn part of each head's rotary pairs by the integer
position 1, 2, 3, ... (continuing the cached count when generating); that axis is not learned and
has no hook, ``hook_position`` carries the learned one.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from lens_positions.components import Attention, GatedMLP, RMSNorm, mean_square
from lens_positions.config import IncrementConfig
from lens_positions.increments import DeltaMLP, positions_from_deltas
from lens_positions.kv_cache import LayerKVCache


class TransformerBlock(nn.Module):
    def __init__(self, cfg: IncrementConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.ln1 = RMSNorm(cfg.d_model, cfg.eps)
        self.attn = Attention(cfg)
        self.ln2 = RMSNorm(cfg.d_model, cfg.eps)
        self.mlp = GatedMLP(cfg)
        self.delta_mlp = DeltaMLP(cfg, per_layer=True) if cfg.increments == "per_layer" else None
        self.two_axes = cfg.n_learned_pairs < cfg.d_head // 2
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_delta = HookPoint()  # [batch, pos] or [batch, pos, head_index], float32
        self.hook_position = HookPoint()  # same shape as hook_delta, float32
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def increments(
        self, resid_pre: Float[Tensor, "batch pos d_model"], shared_delta: Tensor | None,
        mean_sq: Tensor | None = None, stream: tuple[Tensor, Tensor, float] | None = None,
    ) -> Float[Tensor, "batch pos *heads"]:
        """This layer's δ before its hook (``mean_sq``: [batch, pos, 1] mean square of resid_pre;
        ``stream``: ln1's normalised resid_pre, its mean square and eps, see `DeltaMLP`)."""
        if self.delta_mlp is not None:
            return self.delta_mlp(resid_pre, mean_sq, stream)
        if shared_delta is not None:
            return shared_delta
        return torch.ones(resid_pre.shape[:2], dtype=torch.float32, device=resid_pre.device)

    def forward(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        shared_delta: Tensor | None = None,
        cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid)
        # The increment MLP's norm and ln1 read the same stream: one mean square serves both
        # (each adds its own eps and has its own hook_scale), one pass fewer each way. In
        # training with ln1 unhooked the δ-MLP even reads ln1's normalised stream, so that
        # nothing keeps resid_pre itself for backward.
        mean_sq = stream = None
        if self.delta_mlp is not None and self.ln1.fused(resid_pre):
            normalized, mean_sq = self.ln1.normalize_and_mean_square(resid_pre)
            stream = (normalized, mean_sq, self.ln1.eps_for(resid_pre))
        elif self.delta_mlp is not None:
            mean_sq = mean_square(resid_pre)
        delta = self.hook_delta(self.increments(resid_pre, shared_delta, mean_sq, stream))
        start = 0.0 if cache is None else cache.start_position()
        position = self.hook_position(positions_from_deltas(delta, start))
        integer_position = None
        if self.two_axes:
            past = 0 if cache is None else cache.n_tokens
            n = resid.shape[1]
            integer_position = torch.arange(past + 1, past + n + 1, dtype=torch.float32, device=resid.device)
        if cache is not None:
            cache.record_positions(position)
        # Each norm's weight is folded into the products that read it (one pass fewer each way).
        if stream is None:
            normalized = self.ln1.normalize(resid_pre, mean_sq)
        attn_out = self.hook_attn_out(self.attn(normalized, position, cache, integer_position, self.ln1.w))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2.normalize(resid_mid), self.ln2.w))
        return self.hook_resid_post(resid_mid + mlp_out)
