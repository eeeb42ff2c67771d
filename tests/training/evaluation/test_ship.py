"""Shipping a trained model: bf16 weights, a card that describes the shipped file, re-runnable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lens_positions import HookedIncrementTransformer
from training.evaluation.ship import ship
from training.tokens.byte_tokens import prepare_tokens
from training.train.configs import named_config
from training.train.trainer import RunOptions, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ship")
    docs = [f"line {i}: the cat sat on the mat. 她每天早上喝绿茶。" * 3 for i in range(40)]
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    prepare_tokens(f"local:{root / 'docs.jsonl'}", root / "tokens", val_docs=5, progress=False)
    cfg = named_config("tiny").replace(threads=1, steps=12, checkpoint_every=6, eval_every=6, log_every=6)
    result = train(cfg, root / "tokens", root / "run", RunOptions(progress=False, tensorboard=False))
    return result.final_dir, root / "tokens"


def test_ship_stores_bf16_and_measures_the_shipped_weights(trained, tmp_path):
    final, tokens = trained
    result = ship(final, "tiny-model", tokens, pretrained_dir=tmp_path)
    target = tmp_path / "tiny-model"
    with safe_open(str(target / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    model = HookedIncrementTransformer.from_pretrained(target)
    assert model.W_E.dtype == torch.float32  # loads back as float32

    # the measured loss is that of the shipped weights: close to the trained one, not identical
    card = json.loads((target / "card.json").read_text())
    trained_loss = json.loads((final / "card.json").read_text())["final"]["val_loss"]
    assert card["shipped"]["val_loss"] == pytest.approx(result["val_loss"])
    assert result["val_loss"] == pytest.approx(trained_loss, rel=0.02)
    assert (target / "metrics.jsonl").is_file()  # the training curve travels with the model
    # training windows measured too, as many as validation windows (no ood split in this folder)
    assert result["train_windows"] == result["val_windows"] and "ood_loss" not in result
    assert "training windows" in (target / "card.md").read_text()
    assert "validation minus training" in (target / "card.md").read_text()
    assert "epochs of the training split" in (target / "card.md").read_text()  # rendered anew
    assert "shape: d_model" in (target / "card.md").read_text()

    # shipping again (from the shipped folder itself) rewrites the section instead of adding one
    ship(target, "tiny-model", tokens, pretrained_dir=tmp_path)
    text = (target / "card.md").read_text()
    assert text.count("## Shipped weights") == 1 and f"`{target}`" in text
    assert not list(tmp_path.glob(".*"))  # no temporaries left
