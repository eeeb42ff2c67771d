"""Importing reference-experiment checkpoints.

The reference code cannot be installed here, so this file holds a small independent
re-implementation of its forward pass, written from its conventions: ``nn.Linear`` weights,
torch's ``nn.RMSNorm``, RoPE as complex multiplication (``torch.polar`` / ``view_as_complex``) at
integer positions 0..n-1 for plain RoPE and at running sums of δ otherwise. Our model shares none
of that code path.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lens_positions import HookedIncrementTransformer
from lens_positions.checkpoints import CheckpointError

DIM, HEADS, LAYERS, FFN = 32, 4, 2, 64


class RefDelta(nn.Module):
    def __init__(self, bounded: bool, n_out: int):
        super().__init__()
        self.bounded = bounded
        self.norm = nn.RMSNorm(DIM) if bounded else None
        self.fc1 = nn.Linear(DIM, DIM // 4)
        self.fc2 = nn.Linear(DIM // 4, n_out)

    def forward(self, x):
        if self.norm is not None:
            x = self.norm(x)
        raw = self.fc2(F.gelu(self.fc1(x)))
        if raw.shape[-1] == 1:
            raw = raw.squeeze(-1)
        return 10.0 * torch.sigmoid(raw) if self.bounded else F.softplus(raw)


class RefLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm = nn.RMSNorm(DIM, eps=1e-5)
        self.ffn_norm = nn.RMSNorm(DIM, eps=1e-5)
        self.attn = nn.Module()
        for n in ("wq", "wk", "wv", "wo"):
            setattr(self.attn, n, nn.Linear(DIM, DIM, bias=False))
        self.ffn = nn.Module()
        self.ffn.w_gate = nn.Linear(DIM, FFN, bias=False)
        self.ffn.w_up = nn.Linear(DIM, FFN, bias=False)
        self.ffn.w_down = nn.Linear(FFN, DIM, bias=False)

    def forward(self, x, positions):
        b, s, _ = x.shape
        h = self.attn_norm(x)
        q, k, v = (getattr(self.attn, n)(h).view(b, s, HEADS, -1) for n in ("wq", "wk", "wv"))
        hd = DIM // HEADS
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        pos = positions if positions.dim() == 3 else positions.unsqueeze(-1)  # [b, s, heads or 1]
        rot = torch.polar(torch.ones(1), pos.unsqueeze(-1) * inv)  # [b, s, heads or 1, hd/2]

        def rope(t):
            c = torch.view_as_complex(t.float().reshape(b, s, HEADS, -1, 2))
            return torch.view_as_real(c * rot).flatten(-2)

        q, k = rope(q), rope(k)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.attn.wo(o.transpose(1, 2).reshape(b, s, DIM))
        h = self.ffn_norm(x)
        return x + self.ffn.w_down(F.silu(self.ffn.w_gate(h)) * self.ffn.w_up(h))


class RefModel(nn.Module):
    def __init__(self, selective: bool, per_layer: bool, per_head: bool, frozen: bool = False):
        super().__init__()
        self.tok_emb = nn.Embedding(257, DIM)
        self.layers = nn.ModuleList(RefLayer() for _ in range(LAYERS))
        self.final_norm = nn.RMSNorm(DIM, eps=1e-5)
        n_out = HEADS if per_head else 1
        self.per_layer = per_layer
        self.selective = selective
        if frozen:
            self.frozen_delta = nn.Module()
            self.frozen_delta.register_buffer("deltas", 0.3 + 2 * torch.rand(257))
        elif selective and per_layer:
            self.delta_mlps = nn.ModuleList(RefDelta(True, n_out) for _ in range(LAYERS))
        elif selective:
            self.delta_mlp = RefDelta(False, n_out)
        for p in self.parameters():  # well away from init values, so any mix-up shows
            nn.init.normal_(p, std=0.3)

    def forward(self, ids):
        x = self.tok_emb(ids)
        integer = torch.arange(ids.shape[1]).float().expand(ids.shape)
        shared = None
        if hasattr(self, "frozen_delta"):
            shared = torch.cumsum(self.frozen_delta.deltas[ids], 1)
        elif hasattr(self, "delta_mlp"):
            shared = torch.cumsum(self.delta_mlp(x), 1)
        for i, layer in enumerate(self.layers):
            pos = shared if shared is not None else integer
            if self.selective and self.per_layer:
                pos = torch.cumsum(self.delta_mlps[i](x), 1)
            x = layer(x, pos)
        return F.linear(self.final_norm(x), self.tok_emb.weight)


def reference_config(**kw):
    base = dict(dim=DIM, n_heads=HEADS, n_layers=LAYERS, intermediate_dim=FFN, vocab_size=257,
                max_seq_len=64, rope_theta=10000.0, norm_eps=1e-5, pos_encoding="rope",
                norm_type="rmsnorm", activation="swiglu", init_std=0.02, dropout=0.0,
                delta_hidden_dim=None, per_layer_delta=False, per_head_delta=False, decay="none")
    base.update(kw)
    return base


CASES = {
    "rope": (dict(), dict(selective=False, per_layer=False, per_head=False), "none"),
    "shared": (dict(pos_encoding="selective_rope"), dict(selective=True, per_layer=False, per_head=False), "shared"),
    "shared-per-head": (dict(pos_encoding="selective_rope", per_head_delta=True), dict(selective=True, per_layer=False, per_head=True), "shared"),
    "per-layer": (dict(pos_encoding="selective_rope", per_layer_delta=True), dict(selective=True, per_layer=True, per_head=False), "per_layer"),
    "per-layer-per-head": (dict(pos_encoding="selective_rope", per_layer_delta=True, per_head_delta=True), dict(selective=True, per_layer=True, per_head=True), "per_layer"),
    "frozen": (dict(pos_encoding="selective_rope"), dict(selective=True, per_layer=False, per_head=False, frozen=True), "shared"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_imported_logits_match_the_reference_forward(tmp_path, case):
    cfg_kw, model_kw, increments = CASES[case]
    torch.manual_seed(0)
    ref = RefModel(**model_kw).eval()
    path = tmp_path / "ref.pt"
    torch.save({"model_config": reference_config(**cfg_kw), "model_state_dict": ref.state_dict(), "step": 10}, path)
    ours = HookedIncrementTransformer.from_reference_checkpoint(path)
    assert ours.cfg.increments == increments
    ids = torch.tensor([list("Marie Curie, 人工智能".encode())])
    with torch.no_grad():
        expected = ref(ids)
        got = ours(ids)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, atol=2e-4 * max(1.0, scale), rtol=1e-4)
    if increments != "none":  # the increments really mattered in this comparison
        with torch.no_grad():
            flat = ours.run_with_hooks(ids, fwd_hooks=[(f"blocks.{i}.hook_delta", lambda d, hook: torch.ones_like(d)) for i in range(LAYERS)])
        assert (flat - expected).abs().max() > 1e-2 * max(1.0, scale)


@pytest.mark.parametrize(
    ("cfg_kw", "message"),
    [
        (dict(pos_encoding="selective_pope"), "PoPE"),
        (dict(pos_encoding="pope"), "PoPE"),
        (dict(decay="alibi"), "ALiBi"),
        (dict(decay="learned"), "learned decay"),
        (dict(activation="gelu"), "GELU MLPs"),
    ],
)
def test_unsupported_reference_options_are_refused(tmp_path, cfg_kw, message):
    path = tmp_path / "ref.pt"
    torch.save({"model_config": reference_config(**cfg_kw), "model_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=message):
        HookedIncrementTransformer.from_reference_checkpoint(path)


def test_broken_reference_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such reference checkpoint"):
        HookedIncrementTransformer.from_reference_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.pt: cannot read the torch checkpoint"):
        HookedIncrementTransformer.from_reference_checkpoint(junk)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": {}}, wrong)
    with pytest.raises(CheckpointError, match="expected a dict with 'model_config'"):
        HookedIncrementTransformer.from_reference_checkpoint(wrong)
    partial = tmp_path / "partial.pt"
    sd = RefModel(selective=True, per_layer=True, per_head=False).state_dict()
    del sd["delta_mlps.1.fc2.bias"]
    torch.save({"model_config": reference_config(pos_encoding="selective_rope", per_layer_delta=True), "model_state_dict": sd}, partial)
    with pytest.raises(CheckpointError, match="lacks 'delta_mlps.1.fc2.bias'"):
        HookedIncrementTransformer.from_reference_checkpoint(partial)
