"""Tiny random models of every rotary family the graft supports, saved as local folders: real
Hugging Face models that `lens_positions.load_rotary_model` opens offline in about a second
(tests, the family table in ``results/families.md``, examples).

    from lens_positions.tiny_models import save_tiny_family
    folder = save_tiny_family("cohere", "/tmp/tiny-cohere")
    bridge = load_rotary_model(folder, increments="per_layer")
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: family -> (config class, model class, extra config fields)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16, "query_pre_attn_scalar": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"head_dim": 16, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"partial_rotary_factor": 0.5, "pad_token_id": 0}),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", {"partial_rotary_factor": 0.25}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {}),
    "starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM", {}),
}


def save_tiny_family(family: str, folder: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random model of ``family`` (a key of `FAMILIES`: 64d, 4 heads, 2 key/value heads,
    2 layers) with the tiny Llama's byte-level BPE tokenizer, saved to ``folder``."""
    import transformers

    from lens_positions.rotary_models import save_tiny_llama

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    folder = Path(folder)
    cfg_name, model_name, extra = FAMILIES[family]
    tokenizer_folder = save_tiny_llama(folder.parent / f".{folder.name}-tokenizer")
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    cfg = getattr(transformers, cfg_name)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=0, eos_token_id=0, **extra,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(cfg)
    with torch.no_grad():  # sharper attention than the init's, so that positions visibly matter
        for name, p in model.named_parameters():
            if any(k in name for k in ("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                p.mul_(8)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
