"""The graft trainer on a tiny random Llama: learning, adapter, resume after SIGKILL, NaN stop."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lens_positions import load_rotary_model
from lens_positions.rotary_models import save_tiny_llama
from training import checkpointing, graft

REPO = Path(__file__).resolve().parents[2]
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
    assert graft.main(argv(setup, out, *opts)) == 0
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
    val = graft.load_split(out, meta, "val")
    again = graft.evaluate(model, val, 32, 8, 2)
    assert abs(again["val_loss"] - card["adapter"]["val_loss"]) < 1e-5
    assert abs(again["val_loss"] - card["final_val_loss"]) < 1e-2
    # A finished run started again does nothing.
    assert graft.main(argv(setup, out, *opts)) == 0


def test_resume_after_sigkill_gives_identical_weights(setup, tmp_path):
    steps = ["--steps", "14", "--checkpoint-every", "3"]
    reference = tmp_path / "reference"
    assert graft.main(argv(setup, reference, *steps)) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.graft", *argv(setup, killed, *steps, "--debug-step-delay", "0.3")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (killed / checkpointing.CHECKPOINT_NAME).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before a checkpoint"
            time.sleep(0.05)
        time.sleep(0.4)  # one more update that no checkpoint holds
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = checkpointing.load_checkpoint(killed / checkpointing.CHECKPOINT_NAME)["step"]
    assert 0 < stopped < 14
    assert graft.main(argv(setup, killed, *steps)) == 0
    a = load_file(str(reference / "adapter" / "adapter.safetensors"))
    b = load_file(str(killed / "adapter" / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((killed / "adapter" / "card.json").read_text())
    assert [inv["event"] for inv in card["invocations"]] == ["start", "resume"]
    # Other options on the same folder are refused.
    with pytest.raises(SystemExit, match="other options"):
        graft.main(argv(setup, killed, "--steps", "20", "--checkpoint-every", "3"))


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(setup, tmp_path, monkeypatch):
    real, calls = graft.lm_loss, []

    def poisoned(bridge, x, y):
        calls.append(1)
        loss = real(bridge, x, y)
        return loss * float("nan") if len(calls) == 8 else loss

    monkeypatch.setattr(graft, "lm_loss", poisoned)
    out = tmp_path / "nan"
    assert graft.main(argv(setup, out, "--steps", "12", "--checkpoint-every", "3")) == 2
    ckpt = checkpointing.load_checkpoint(out / checkpointing.CHECKPOINT_NAME)
    assert ckpt["step"] == 6
    assert all(torch.isfinite(p).all() for p in ckpt["params"].values())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "nonfinite" and records[-1]["step"] == 8
    assert not (out / "adapter").exists()


def test_full_fine_tune_option(setup, tmp_path):
    out = tmp_path / "full"
    assert graft.main(argv(setup, out, "--steps", "3", "--full", "--increments", "shared")) == 0
    card = json.loads((out / "adapter" / "card.json").read_text())
    assert card["trained"].startswith("full fine-tune")
    model = load_rotary_model(setup[0], increments="shared", adapter=out / "adapter")
    meta = json.loads((out / "tokens" / "meta.json").read_text())
    again = graft.evaluate(model, graft.load_split(out, meta, "val"), 32, 8, 2)
    assert abs(again["val_loss"] - card["final_val_loss"]) < 1e-5
