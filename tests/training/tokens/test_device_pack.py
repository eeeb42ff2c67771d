"""The device pack: token folder -> xz -> token folder, the size budget, and the GPU script on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from training.tokens.byte_tokens import load_tokens, prepare_tokens, read_metadata
from training.tokens.device_pack import bytes_to_tokens, main, pack, tokens_to_bytes, unpack

REPO = Path(__file__).resolve().parents[3]
TEXTS = ["the cat sat on the mat and looked out of the window.", "她每天早上喝一杯绿茶。",
         "a dog ran to the park and back again, twice."]


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    docs = [" ".join(TEXTS[(i + k) % 3] for k in range(i % 5 + 2)) + f" {i}" for i in range(120)]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    ood = tmp_path / "ood.jsonl"
    ood.write_text("".join(json.dumps({"text": f"It was a bright cold day {i}."}) + "\n"
                           for i in range(20)))
    prepare_tokens(f"local:{src}", tmp_path / "tokens", val_docs=10, ood_spec=f"local:{ood}",
                   progress=False)
    return tmp_path / "tokens"


def test_byte_encoding_round_trip_and_nul_check():
    tokens = np.array([104, 105, 256, 228, 184, 173, 256], dtype=np.uint16)
    data = tokens_to_bytes(tokens)
    assert data == b"hi\0\xe4\xb8\xad\0" and np.array_equal(bytes_to_tokens(data), tokens)
    with pytest.raises(ValueError, match="NUL"):
        tokens_to_bytes(np.array([0, 256], dtype=np.uint16))


def test_pack_unpack_gives_identical_token_files(token_dir: Path, tmp_path: Path):
    info = pack(token_dir, tmp_path / "pack")
    assert set(info["splits"]) == {"train", "val", "ood"}
    meta = unpack(tmp_path / "pack", tmp_path / "back")
    assert meta == read_metadata(token_dir)
    for split in ("train", "val", "ood"):
        assert np.array_equal(load_tokens(tmp_path / "back", split), load_tokens(token_dir, split))


def test_pack_cut_keeps_whole_documents(token_dir: Path, tmp_path: Path):
    full = read_metadata(token_dir)["train"]["tokens"]
    pack(token_dir, tmp_path / "pack", max_train_mb=full / 2 / 1e6)
    meta = unpack(tmp_path / "pack", tmp_path / "back")
    train = np.asarray(load_tokens(tmp_path / "back", "train"))
    assert 0 < len(train) <= full / 2 and train[-1] == 256
    assert np.array_equal(train, np.asarray(load_tokens(token_dir, "train"))[: len(train)])
    assert meta["packed_from"]["train_tokens"] == full
    assert meta["train"]["documents"] == int(np.count_nonzero(train == 256))


def test_budget_is_checked(token_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "pack"
    assert main(["pack", "--data", str(token_dir), "--out", str(out), "--repo", str(REPO),
                 "--budget-mib", "1"]) == 3
    assert "over the budget" in capsys.readouterr().err
    assert main(["pack", "--data", str(token_dir), "--out", str(out), "--repo", str(REPO),
                 "--budget-mib", "1000"]) == 0


@pytest.mark.slow
def test_gpu_script_trains_from_a_pack_on_cpu_and_exports(token_dir: Path, tmp_path: Path):
    """scripts/train_comparison_gpu.sh as on the device, at tiny size on CPU, two variants."""
    pack(token_dir, tmp_path / "pack")
    env = dict(os.environ, PACK=str(tmp_path / "pack"), DATA=str(tmp_path / "data"),
               RUNS=str(tmp_path / "runs"), EXPORT=str(tmp_path / "export"), STEPS="6",
               CONFIG="tiny", VARIANTS="none per_layer", PY=sys.executable, OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    subprocess.run(["bash", str(REPO / "scripts/train_comparison_gpu.sh"), "--threads", "1",
                    "--no-tensorboard", "--eval-every", "3"], check=True, env=env, timeout=600)
    for variant in ("none", "per_layer"):
        with tarfile.open(tmp_path / "export" / f"{variant}.tar") as tar:
            names = set(tar.getnames())
        assert {"final/model.safetensors", "final/card.json", "metrics.jsonl"} <= names
        card = json.loads((tmp_path / "runs" / variant / "final" / "card.json").read_text())
        assert "ood_loss" in card["final"] and card["steps"] == 6
