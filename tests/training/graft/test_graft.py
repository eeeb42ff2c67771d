"""The graft trainer on a tiny random Llama: learning, the adapter, full fine-tuning.

Resume and the non-finite stop are tested with the byte trainer's in tests/training/runs/test_guards.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lens_positions import load_rotary_model
from lens_positions.rotary_models import save_tiny_llama
from training.graft.command import main as graft_main
from training.graft.data import load_split
from training.graft.loop import evaluate

REPO = Path(__file__).resolve().parents[3]
WORDS = "the quick brown fox jumps over lazy dog when cat sat on mat".split()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("graft")
    model = save_tiny_llama(root / "tiny")
    rng = random.Random(0)
    data = root / "data"
    data.mkdir()
    with (data / "docs.jsonl").open("w") as f:
        for _ in range(80):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(60))}) + "\n")
    return model, data


def argv(setup, out: Path, *extra: str) -> list[str]:
    model, data = setup
    return ["--base", str(model), "--data", str(data), "--out", str(out), "--n-ctx", "32",
            "--batch-size", "2", "--eval-windows", "8", "--log-every", "2", "--delta-lr", "3e-2",
            "--lr", "3e-3", "--warmup-steps", "2", *extra]


def test_graft_learns_and_ships_an_adapter_that_rebuilds_the_model(setup, tmp_path):
    out = tmp_path / "run"
    opts = ["--steps", "16", "--checkpoint-every", "5", "--d-delta", "8", "--adapter-dtype", "float16"]
    assert graft_main(argv(setup, out, *opts)) == 0
    card = json.loads((out / "adapter" / "card.json").read_text())
    assert card["adapter"]["dtype"] == "float16"
    assert load_file(str(out / "adapter" / "adapter.safetensors"))["delta.blocks.0.W_in"].shape == (64, 8)
    assert card["steps"] == 16 and card["tokens_seen"] == 16 * 2 * 32
    assert card["final_val_loss"] < card["base_val_loss"] - 0.05  # repetitive text: it learns
    assert card["command"].startswith("python -m training.graft --base")
    assert len(card["delta_per_layer"]) == 2
    assert all(d["base_mean"] == 1.0 for d in card["delta_per_layer"])  # δ = 1 at step 0
    assert any(abs(d["mean"] - 1) > 1e-4 or d["std"] > 1e-4 for d in card["delta_per_layer"])
    assert "held-out loss" in (out / "adapter" / "card.md").read_text()
    # The adapter rebuilds the trained model (rounded to float16): its held-out loss is the card's.
    model = load_rotary_model(setup[0], increments="per_layer", adapter=out / "adapter")
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    val = load_split(out, meta, "val")
    again = evaluate(model, val, 32, 8, 2)
    assert abs(again["val_loss"] - card["adapter"]["val_loss"]) < 1e-5
    assert abs(again["val_loss"] - card["final_val_loss"]) < 1e-2
    # A finished run started again with --resume does nothing.
    assert graft_main([*argv(setup, out, *opts), "--resume"]) == 0


def test_full_fine_tune_option(setup, tmp_path):
    out = tmp_path / "full"
    assert graft_main(argv(setup, out, "--steps", "3", "--full", "--increments", "shared")) == 0
    card = json.loads((out / "adapter" / "card.json").read_text())
    assert card["trained"].startswith("full fine-tune")
    model = load_rotary_model(setup[0], increments="shared", adapter=out / "adapter")
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    again = evaluate(model, load_split(out, meta, "val"), 32, 8, 2)
    assert abs(again["val_loss"] - card["final_val_loss"]) < 1e-5


class _Tok:
    """A stand-in tokenizer: ``bos_token_id`` and whether it puts the BOS before a text."""

    def __init__(self, bos, adds):
        self.bos_token_id, self.adds = bos, adds

    def __call__(self, text):
        return {"input_ids": ([self.bos_token_id] if self.adds else []) + [7]}


def test_window_start_follows_the_tokenizer_unless_told():
    import torch

    from training.graft.data import start_windows, window_start_id

    assert window_start_id("auto", _Tok(2, True)) == 2  # Gemma: BOS before every text
    assert window_start_id("auto", _Tok(1, False)) is None  # SmolLM2: no BOS of its own
    assert window_start_id("bos", _Tok(1, False)) == 1
    assert window_start_id("none", _Tok(2, True)) is None
    with pytest.raises(SystemExit, match="no BOS"):
        window_start_id("bos", _Tok(None, False))
    x = torch.tensor([[10, 11, 12], [20, 21, 22]])
    y = torch.tensor([[11, 12, 13], [21, 22, 23]])
    sx, sy = start_windows(x, y, 5)
    assert sx.tolist() == [[5, 10, 11], [5, 20, 21]] and sy.tolist() == x.tolist()
    assert start_windows(x, y, None) == (x, y)


def test_bos_windows_are_trained_and_evaluated_with_the_start_token(setup, tmp_path):
    out = tmp_path / "bos"
    assert graft_main(argv(setup, out, "--steps", "2", "--window-start", "bos")) == 0
    card = json.loads((out / "adapter" / "card.json").read_text())
    assert card["window_start_id"] == 0 and "each starting with token id 0" in (out / "adapter" / "card.md").read_text()
    model = load_rotary_model(setup[0], increments="per_layer", adapter=out / "adapter")
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    val = load_split(out, meta, "val")
    with_bos = evaluate(model, val, 32, 8, 2, start=0)["val_loss"]
    assert abs(with_bos - card["final_val_loss"]) < 1e-5
    assert abs(evaluate(model, val, 32, 8, 2)["val_loss"] - with_bos) > 1e-4  # the start token matters
