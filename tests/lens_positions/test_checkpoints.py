from __future__ import annotations

import json

import pytest
import torch

from lens_positions import HookedIncrementTransformer
from lens_positions.checkpoints import CheckpointError, list_models, save_pretrained

from ..conftest import VARIANT_IDS, VARIANTS, perturb_deltas, small_config


@pytest.mark.parametrize(("increments", "per_head", "frozen"), VARIANTS, ids=VARIANT_IDS)
def test_round_trip(tmp_path, increments, per_head, frozen):
    model = perturb_deltas(HookedIncrementTransformer(small_config(increments, per_head, frozen)).eval())
    model.save_pretrained(tmp_path / "m", card="# card\n")
    loaded = HookedIncrementTransformer.from_pretrained(tmp_path / "m")
    tokens = model.to_tokens("Hello 世界")
    with torch.no_grad():
        assert torch.equal(model(tokens), loaded(tokens))
    assert loaded.cfg == model.cfg and not loaded.training
    assert (tmp_path / "m" / "card.md").read_text() == "# card\n"


def test_bf16_storage_halves_the_file(tmp_path):
    model = HookedIncrementTransformer(small_config("shared"))
    save_pretrained(model, tmp_path / "f32")
    save_pretrained(model, tmp_path / "bf16", dtype=torch.bfloat16)
    big = (tmp_path / "f32" / "model.safetensors").stat().st_size
    small = (tmp_path / "bf16" / "model.safetensors").stat().st_size
    assert small < 0.6 * big
    loaded = HookedIncrementTransformer.from_pretrained(tmp_path / "bf16")
    assert loaded.W_E.dtype == torch.float32


def test_bad_checkpoints_name_the_file_and_the_problem(tmp_path):
    model = HookedIncrementTransformer(small_config("per_layer"))
    good = tmp_path / "good"
    model.save_pretrained(good)
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a shipped model"):
        HookedIncrementTransformer.from_pretrained(tmp_path / "nope")

    (tmp_path / "noconf").mkdir()
    with pytest.raises(CheckpointError, match=r"noconf/config.json: missing config file"):
        HookedIncrementTransformer.from_pretrained(tmp_path / "noconf")

    bad_json = tmp_path / "badjson"
    model.save_pretrained(bad_json)
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"badjson/config.json: not valid JSON"):
        HookedIncrementTransformer.from_pretrained(bad_json)

    unknown = tmp_path / "unknown"
    model.save_pretrained(unknown)
    cfg = json.loads((unknown / "config.json").read_text())
    cfg["increments"] = "per_token"
    (unknown / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown increments variant 'per_token'"):
        HookedIncrementTransformer.from_pretrained(unknown)

    corrupt = tmp_path / "corrupt"
    model.save_pretrained(corrupt)
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt/model.safetensors: corrupt or unreadable"):
        HookedIncrementTransformer.from_pretrained(corrupt)

    missing = tmp_path / "missing"
    model.save_pretrained(missing)
    (missing / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing weights file"):
        HookedIncrementTransformer.from_pretrained(missing)

    mismatched = tmp_path / "mismatched"
    model.save_pretrained(mismatched)
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["increments"], cfg["d_mlp"] = "shared", 128
    (mismatched / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing tensors: delta_mlp.W_in.*unexpected tensors: blocks.0.delta_mlp.*shape mismatches: blocks.0.mlp.W_gate"):
        HookedIncrementTransformer.from_pretrained(mismatched)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = HookedIncrementTransformer(small_config("shared"))
    target = tmp_path / "ckpt"
    model.save_pretrained(target, card="old")
    before = (target / "model.safetensors").read_bytes()

    import lens_positions.checkpoints as ck

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(target, card="new")
    assert (target / "model.safetensors").read_bytes() == before
    assert (target / "card.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp folder left behind


def test_list_models_returns_shipped_names():
    models = list_models()
    assert {"bilingual-none", "bilingual-shared", "bilingual-per-layer", "bilingual-per-layer-per-head"} <= set(models)
    for name, path in models.items():
        assert (path / "config.json").is_file() and name == path.name
