"""The graft on every rotary family of the bridge, each on a tiny random local folder, against
Hugging Face's own model: at init, at ``position_ids = c * arange`` and at arbitrary real positions.
Pair order (half-split or interleaved), partial rotary and one table per layer type are read
from the model (`lens_positions.rotary_layout`); a layout the graft cannot build is refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from lens_positions.rotary_layout import RotaryTable
from lens_positions.rotary_models import RotaryModelError, load_rotary_model, save_tiny_llama
from lens_positions.tiny_models import FAMILIES, save_tiny_family

IDS = torch.tensor([[0, 5, 9, 20, 33, 41, 7, 12, 3]])


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tok") / "llama")


def tiny_family(family: str, folder: Path, tokenizer_folder: Path):
    """``family``'s tiny model saved to ``folder``, and the same model loaded by HF (eval mode)."""
    import transformers

    save_tiny_family(family, folder)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_graft_equals_hf_on_every_family(family, tmp_path, tokenizer_folder):
    hf = tiny_family(family, tmp_path / family, tokenizer_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = load_rotary_model(tmp_path / family, increments="per_layer")
    n = IDS.shape[1]
    with torch.no_grad():
        assert relative(bridge(IDS, return_type="logits"), hf(IDS).logits) < 1e-5  # at init (δ = 1)
        for c in (1.7, 0.4):
            got = bridge.run_with_hooks(IDS, return_type="logits", fwd_hooks=[
                (lambda name: name.endswith("hook_delta"), lambda d, hook, c=c: torch.full_like(d, c))])
            assert relative(got, hf(IDS, position_ids=c * torch.arange(n)[None].float()).logits) < 1e-5
        g = torch.Generator().manual_seed(1)
        positions = torch.cumsum(torch.rand(1, n, generator=g) * 3, dim=1)  # arbitrary real positions
        got = bridge.run_with_hooks(IDS, return_type="logits", fwd_hooks=[
            (lambda name: name.endswith("hook_position"), lambda p, hook: positions.clone())])
        assert relative(got, hf(IDS, position_ids=positions).logits) < 1e-5


def test_gemma3_has_one_table_per_layer_type(tmp_path, tokenizer_folder):
    tiny_family("gemma3", tmp_path / "g3", tokenizer_folder)
    bridge = load_rotary_model(tmp_path / "g3", increments="none")
    tables = bridge.increment_graft.tables
    assert [t.layer_type for t in tables] == ["sliding_attention", "full_attention"]
    assert not torch.equal(tables[0].inv_freq, tables[1].inv_freq)  # θ 10,000 and 1,000,000


def test_cohere_rotates_interleaved_pairs_and_llama_half_split(tmp_path, tokenizer_folder):
    tiny_family("cohere", tmp_path / "c", tokenizer_folder)
    assert all(t.interleaved for t in load_rotary_model(tmp_path / "c").increment_graft.tables)
    assert not any(t.interleaved for t in load_rotary_model(tokenizer_folder).increment_graft.tables)


def test_a_layout_matching_neither_pair_order_is_refused(tmp_path, tokenizer_folder, monkeypatch):
    import transformers

    tiny_family("llama", tmp_path / "l", tokenizer_folder)
    real = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding.forward

    def shuffled(self, x, position_ids):  # a rotary whose pairs follow some other order
        cos, sin = real(self, x, position_ids)
        return cos.flip(-1), sin.flip(-1)

    monkeypatch.setattr(transformers.models.llama.modeling_llama.LlamaRotaryEmbedding, "forward", shuffled)
    with pytest.raises(RotaryModelError, match="match neither half-split nor interleaved"):
        load_rotary_model(tmp_path / "l")


def test_a_graft_that_does_not_reproduce_the_base_model_is_refused(tmp_path, tokenizer_folder, monkeypatch):
    """The load-time check: a wrong table (here: the other pair order) never reaches a user."""
    from lens_positions import rotary_models

    tiny_family("cohere", tmp_path / "c", tokenizer_folder)
    real = rotary_models.rotary_tables

    def wrong(hf_model, name):
        return [RotaryTable(t.inv_freq, t.scaling, not t.interleaved, t.layer_type) for t in real(hf_model, name)]

    monkeypatch.setattr(rotary_models, "rotary_tables", wrong)
    with pytest.raises(RotaryModelError, match="refused rather than answered wrongly"):
        load_rotary_model(tmp_path / "c")
