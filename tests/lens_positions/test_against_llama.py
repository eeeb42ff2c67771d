"""Independent evidence: the `none` variant equals Hugging Face's LlamaForCausalLM."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lens_positions import HookedIncrementTransformer

from ..conftest import small_config


def deinterleave_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k output rows per head from interleaved pairs (2i, 2i+1) to Llama's halves (i, i+d/2)."""
    d_head = w.shape[0] // n_heads
    order = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])
    idx = torch.cat([h * d_head + order for h in range(n_heads)])
    return w[idx]


def to_llama(model: HookedIncrementTransformer) -> LlamaForCausalLM:
    cfg = model.cfg
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=cfg.d_vocab,
            hidden_size=cfg.d_model,
            intermediate_size=cfg.d_mlp,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_heads,
            head_dim=cfg.d_head,
            max_position_embeddings=cfg.n_ctx,
            rms_norm_eps=cfg.eps,
            rope_theta=cfg.rope_theta,
            tie_word_embeddings=True,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
        )
    ).eval()
    sd = {"model.embed_tokens.weight": model.W_E, "model.norm.weight": model.ln_final.w}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        flat_in = lambda W: W.permute(1, 0, 2).reshape(cfg.d_model, -1).T  # noqa: E731
        sd[p + "self_attn.q_proj.weight"] = deinterleave_rows(flat_in(b.attn.W_Q), cfg.n_heads)
        sd[p + "self_attn.k_proj.weight"] = deinterleave_rows(flat_in(b.attn.W_K), cfg.n_heads)
        sd[p + "self_attn.v_proj.weight"] = flat_in(b.attn.W_V)
        sd[p + "self_attn.o_proj.weight"] = b.attn.W_O.reshape(-1, cfg.d_model).T
        sd[p + "mlp.gate_proj.weight"] = b.mlp.W_gate.T
        sd[p + "mlp.up_proj.weight"] = b.mlp.W_in.T
        sd[p + "mlp.down_proj.weight"] = b.mlp.W_out.T
        sd[p + "input_layernorm.weight"] = b.ln1.w
        sd[p + "post_attention_layernorm.weight"] = b.ln2.w
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return hf


def test_none_variant_matches_llama():
    model = HookedIncrementTransformer(small_config("none", n_layers=2)).eval()
    with torch.no_grad():
        # Sharper attention (bigger q, k) so position errors show in the logits, and norms away
        # from 1 so a mis-mapped norm weight would show.
        for b in model.blocks:
            b.attn.W_Q.mul_(10)
            b.attn.W_K.mul_(10)
            b.ln1.w.uniform_(0.5, 1.5)
            b.ln2.w.uniform_(0.5, 1.5)
        model.ln_final.w.uniform_(0.5, 1.5)
    hf = to_llama(model)
    tokens = model.to_tokens("Marie Curie won two prizes. 人工智能是一个分支。")
    n = tokens.shape[1]
    with torch.no_grad():
        ours = model(tokens)
        # Our positions are 1..n (running sums of δ=1); give Llama the same ones ...
        theirs = hf(tokens, position_ids=torch.arange(1, n + 1)[None]).logits
        # ... and its default 0..n-1, which RoPE's shift invariance makes the same model.
        theirs_default = hf(tokens).logits
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours, theirs_default, atol=2e-5, rtol=1e-4)
    # The comparison is sensitive to the rotary convention: rotating halves instead of
    # interleaved pairs (no row reordering) gives clearly different logits.
    with torch.no_grad():
        for i, b in enumerate(model.blocks):
            flat = b.attn.W_Q.permute(1, 0, 2).reshape(model.cfg.d_model, -1).T
            hf.model.layers[i].self_attn.q_proj.weight.copy_(flat)
            flat = b.attn.W_K.permute(1, 0, 2).reshape(model.cfg.d_model, -1).T
            hf.model.layers[i].self_attn.k_proj.weight.copy_(flat)
        wrong = hf(tokens, position_ids=torch.arange(1, n + 1)[None]).logits
    assert (ours - wrong).abs().max() > 1e-2
