"""The trainer: learning, resume after SIGKILL, NaN stop, atomic checkpoints, DDP, variants.

Everything runs on CPU with the ``tiny`` preset on a few KB of repetitive synthetic text.
Subprocess tests launch ``python -m training.train`` (and torchrun) exactly as a user would.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lens_positions import HookedIncrementTransformer
from lens_positions.atomic import atomic_path
from training.runs import checkpointing
from training.runs.metrics import read_metrics
from training.runs.schedule import WarmupCosine
from training.tokens.byte_tokens import load_tokens, prepare_tokens
from training.train.configs import TrainConfig, named_config
from training.train.trainer import RunOptions, build_model, train

REPO = Path(__file__).resolve().parents[3]
SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran to the park and back.",
    "we drink green tea in the morning.",
    "她每天早上喝绿茶。",
]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 8 KB of repetitive bilingual sentences, tokenised by the data module."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(3, 7))) for _ in range(90)]
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    prepare_tokens(f"local:{source}", root / "tokens", val_docs=10, progress=False)
    return root / "tokens"


def tiny(**changes) -> TrainConfig:
    base = dict(threads=1, steps=40, checkpoint_every=10, eval_every=20, log_every=5)
    base.update(changes)
    return named_config("tiny").replace(**base)


def quiet(**kw) -> RunOptions:
    return RunOptions(progress=False, tensorboard=False, **kw)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "training.train", "--config", "tiny", "--data", str(data),
        "--out", str(out), "--threads", "1", "--no-progress", "--no-tensorboard", *extra,
    ]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def unigram_entropy_nats(tokens: np.ndarray) -> float:
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=257).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# ------------------------------------------------------------------------------------ units
def test_schedule_warms_up_then_decays_to_zero():
    f = WarmupCosine(warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert 0 < f(109) < 1e-3
    assert f(110) == pytest.approx(0.0)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_named_configs():
    paper = named_config("paper")
    assert (paper.model.d_model, paper.model.n_heads, paper.model.n_layers, paper.model.d_mlp, paper.model.n_ctx) == (256, 8, 6, 1024, 512)
    assert (paper.batch_size, paper.steps, paper.lr, paper.warmup_steps) == (64, 50_000, 1e-3, 500)
    assert (paper.weight_decay, paper.grad_clip) == (0.01, 1.0)
    cpu = named_config("cpu")
    assert (cpu.model.d_model, cpu.model.n_heads, cpu.model.n_layers, cpu.model.d_mlp, cpu.model.n_ctx) == (128, 4, 4, 512, 256)
    assert named_config("paper") is not named_config("paper")  # fresh copies
    with pytest.raises(ValueError, match="unknown config"):
        named_config("huge")
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(batch_size=10, grad_accum=3)


def test_paired_init_shares_the_common_weights():
    none = build_model(tiny(increments="none")).state_dict()
    for increments in ("shared", "per_layer"):
        other = build_model(tiny(increments=increments)).state_dict()
        common = [k for k in none if k in other]
        assert len(common) == len(none)
        assert all(torch.equal(none[k], other[k]) for k in common)


# ------------------------------------------------------------------------------------ learning
def test_training_beats_the_unigram_entropy(token_dir: Path, tmp_path: Path):
    entropy = unigram_entropy_nats(load_tokens(token_dir, "train"))
    result = train(tiny(increments="per_layer", steps=200, eval_every=80, checkpoint_every=100),
                   token_dir, tmp_path / "run", quiet())
    # A model that learnt only byte frequencies would sit at the entropy; ~0.2x is typical here.
    assert result.val_loss < 0.5 * entropy, (result.val_loss, entropy)
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2))

    records = read_metrics(tmp_path / "run")
    trains = [r for r in records if r["kind"] == "train"]
    assert trains[0]["loss"] > entropy > trains[-1]["loss"]
    for key in ("loss", "bpb", "lr", "grad_norm", "tokens", "tokens_per_s"):
        assert all(math.isfinite(r[key]) for r in trains), key
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [80, 160]
    for record in evals:
        assert len(record["delta"]) == 2
        assert {"mean", "std", "min", "max"} <= set(record["delta"][0])
    # δ moved away from the integer-RoPE start
    assert any(abs(d["mean"] - 1.0) > 1e-3 for d in evals[-1]["delta"])

    card = json.loads((tmp_path / "run" / "final" / "card.json").read_text())
    assert card["steps"] == 200 and card["tokens_seen"] == 200 * 8 * 32
    assert card["final"]["val_loss"] == pytest.approx(result.val_loss)
    assert card["data"]["meta"]["train"]["tokens"] == len(load_tokens(token_dir, "train"))
    assert (tmp_path / "run" / "final" / "card.md").read_text().startswith("# lens_positions")
    model = HookedIncrementTransformer.from_pretrained(tmp_path / "run" / "final")
    assert model.cfg.increments == "per_layer"


def test_grad_accumulation_matches_the_full_batch(token_dir: Path, tmp_path: Path):
    train(tiny(steps=15), token_dir, tmp_path / "full", quiet())
    train(tiny(steps=15, grad_accum=4), token_dir, tmp_path / "accum", quiet())
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "accum")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_training_matches_eager(token_dir: Path, tmp_path: Path):
    """``--compile`` (inductor) trains the same model as eager and saves plain, loadable weights."""
    changes = dict(increments="per_layer", steps=4, checkpoint_every=2, eval_every=4)
    eager = train(tiny(**changes), token_dir, tmp_path / "eager", quiet())
    compiled = train(tiny(compile=True, **changes), token_dir, tmp_path / "compiled", quiet())
    a, b = final_weights(tmp_path / "eager"), final_weights(tmp_path / "compiled")
    assert sorted(a) == sorted(b)  # no "_orig_mod." prefixes from the compiled wrapper
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4, msg=k)
    assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-4)
    model = HookedIncrementTransformer.from_pretrained(compiled.final_dir)
    assert model.cfg.increments == "per_layer"


def test_frozen_variant_uses_the_shared_models_table(token_dir: Path, tmp_path: Path):
    train(tiny(increments="shared", steps=30), token_dir, tmp_path / "shared", quiet())
    source = HookedIncrementTransformer.from_pretrained(tmp_path / "shared" / "final")
    result = train(tiny(increments="shared", frozen_from=str(tmp_path / "shared"), steps=10),
                   token_dir, tmp_path / "frozen", quiet())
    frozen = HookedIncrementTransformer.from_pretrained(result.final_dir)
    assert frozen.cfg.frozen_deltas and result.card["variant"] == "frozen"
    assert torch.equal(frozen.byte_deltas(), source.byte_deltas())
    assert not torch.allclose(source.byte_deltas(), torch.ones(257))


# ------------------------------------------------------------------------------------ robustness
def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch):
    path = tmp_path / checkpointing.CHECKPOINT_NAME
    checkpointing.save_checkpoint(path, {"step": 1, "weights": torch.arange(4.0)})

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        checkpointing.save_checkpoint(path, {"step": 2, "weights": torch.zeros(4)})
    monkeypatch.undo()
    kept = checkpointing.load_checkpoint(path)
    assert kept["step"] == 1 and torch.equal(kept["weights"], torch.arange(4.0))
    assert checkpointing.stale_temp_files(tmp_path) == []
    # what a writer killed mid-write leaves is found (and removed at the next start)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"partial")
        assert checkpointing.stale_temp_files(tmp_path) == [tmp]
        assert checkpointing.remove_stale_temp_files(tmp_path) == [tmp] and not tmp.exists()
        tmp.write_bytes(b"partial")  # the block ends normally: renamed over the checkpoint
    assert path.read_bytes() == b"partial"

    path.write_bytes(path.read_bytes()[:50])  # what a non-atomic writer could leave
    with pytest.raises(checkpointing.TrainCheckpointError, match="unreadable"):
        checkpointing.load_checkpoint(path)


def test_rng_states_round_trip():
    state = checkpointing.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpointing.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# ------------------------------------------------------------------------------------ DDP
@pytest.mark.slow
def test_two_process_ddp_trains_one_model(token_dir: Path, tmp_path: Path):
    settings = ["--steps", "20", "--grad-accum", "2", "--eval-every", "10"]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *cli_args(token_dir, tmp_path / "ddp", *settings)[1:]],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    records = read_metrics(tmp_path / "ddp")
    check = next(r for r in records if r.get("event") == "ranks_consistent")
    assert len(check["digests"]) == 2 and len(set(check["digests"])) == 1
    assert records[0]["world_size"] == 2

    # One process with the same global batch (16 sequences per update) trains the same model.
    train(tiny(steps=20, grad_accum=2, eval_every=10), token_dir, tmp_path / "single", quiet())
    a, b = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses[-1] < losses[0]


def test_dataloader_workers_give_the_same_run(token_dir: Path, tmp_path: Path):
    train(tiny(steps=12), token_dir, tmp_path / "inline", quiet())
    train(tiny(steps=12, workers=2), token_dir, tmp_path / "workers", quiet())
    a, b = final_weights(tmp_path / "inline"), final_weights(tmp_path / "workers")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_throughput_measures_every_variant(token_dir: Path):
    from training.train.throughput import measure

    result = measure(tiny(), ["none", "per_layer+per_head"], seconds=0.2, data=str(token_dir))
    assert set(result) == {"none", "per-layer-per-head"}
    assert all(r["tokens_per_s_median"] > 0 and r["turns"] >= 1 for r in result.values())
