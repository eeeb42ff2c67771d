"""What researchers would use instead: Hugging Face's `LlamaForCausalLM` and TransformerLens 4.3's
`TransformerBridge` around it, built with the same shape and the same weights as our ``none``
variant, so that every peer benchmark compares two implementations of one computation.

- `llama_config` / `llama_from_hooked`: a Llama of our shape (vocab 257, tied embeddings, no
  biases, RMSNorm eps and rope theta as ours). Llama rotates half-split pairs (i, i + d_head/2)
  where we rotate interleaved pairs (2i, 2i+1), so the query and key rows of each head are
  reordered; with that, its logits equal ours (tests/benchmarks/test_peers.py).
- `bridge_from_hooked`: ``TransformerBridge`` around such a Llama (its own copy: the bridge
  replaces the Llama's submodules in place). The bridge switches the Llama to eager attention,
  so that ``hook_pattern`` and ``hook_attn_scores`` fire, as ``boot_transformers`` does.
- `rotary_graft_loader`: ``lens_positions.load_rotary_model`` when this checkout has it (the
  pretrained-rotary work), else None.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lens_positions import HookedIncrementTransformer, IncrementConfig


def llama_config(cfg: IncrementConfig, attn_implementation: str = "sdpa"):
    """A `transformers.LlamaConfig` of our architecture (multi-head, SwiGLU, tied, no biases)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.d_vocab, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads, head_dim=cfg.d_head, max_position_embeddings=cfg.n_ctx,
        rms_norm_eps=cfg.eps, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        attention_bias=False, mlp_bias=False, hidden_act="silu",
        initializer_range=cfg.initializer_range, attn_implementation=attn_implementation,
    )


def _half_split_rows(w: Tensor, n_heads: int) -> Tensor:
    """Reorder the output rows [n_heads * d_head, d_model] of each head from interleaved pairs
    (2i, 2i+1) to Llama's half-split pairs (i, i + d_head/2)."""
    d_head = w.shape[0] // n_heads
    order = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])
    rows = torch.cat([h * d_head + order for h in range(n_heads)])
    return w[rows.to(w.device)]


@torch.no_grad()
def llama_from_hooked(model: HookedIncrementTransformer, attn_implementation: str = "sdpa"):
    """A `LlamaForCausalLM` holding copies of a ``none``-variant model's weights (same device,
    float32, training mode off)."""
    from transformers import LlamaForCausalLM

    cfg = model.cfg
    if cfg.increments != "none":
        raise ValueError("Llama has integer RoPE: build the peer from an increments='none' model")
    hf = LlamaForCausalLM(llama_config(cfg, attn_implementation)).to(model.W_E.device).eval()

    def flat(W: Tensor) -> Tensor:  # W_Q [n_heads, d_model, d_head] -> Linear weight [n_heads*d_head, d_model]
        return W.permute(0, 2, 1).reshape(-1, cfg.d_model)

    state = {"model.embed_tokens.weight": model.W_E, "model.norm.weight": model.ln_final.w}
    for i, block in enumerate(model.blocks):
        p, attn, mlp = f"model.layers.{i}.", block.attn, block.mlp
        state[p + "self_attn.q_proj.weight"] = _half_split_rows(flat(attn.W_Q), cfg.n_heads)
        state[p + "self_attn.k_proj.weight"] = _half_split_rows(flat(attn.W_K), cfg.n_heads)
        state[p + "self_attn.v_proj.weight"] = flat(attn.W_V)
        state[p + "self_attn.o_proj.weight"] = attn.W_O.reshape(-1, cfg.d_model).T
        state[p + "mlp.gate_proj.weight"] = mlp.W_gate.T
        state[p + "mlp.up_proj.weight"] = mlp.W_in.T
        state[p + "mlp.down_proj.weight"] = mlp.W_out.T
        state[p + "input_layernorm.weight"] = block.ln1.w
        state[p + "post_attention_layernorm.weight"] = block.ln2.w
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # lm_head is tied to the embedding
        raise RuntimeError(f"weight copy into Llama failed: missing {missing}, unexpected {unexpected}")
    return hf


def bridge_from_hooked(model: HookedIncrementTransformer):
    """TransformerLens 4.3's `TransformerBridge` around a Llama copy of a ``none`` model."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    hf = llama_from_hooked(model, attn_implementation="eager")
    bridge = build_bridge_from_module(hf, "LlamaForCausalLM", hf_config=hf.config)
    return bridge.eval()


def llama_loss(hf) -> Callable[[Tensor], Tensor]:
    """Mean next-token cross-entropy of a Llama, as ``model(tokens, return_type="loss")``."""

    def loss(tokens: Tensor) -> Tensor:
        return hf(input_ids=tokens, labels=tokens).loss

    return loss


def rotary_graft_loader() -> Callable | None:
    """``lens_positions.load_rotary_model`` if this checkout has it, else None."""
    import lens_positions

    try:
        return lens_positions.load_rotary_model
    except AttributeError:
        return None
