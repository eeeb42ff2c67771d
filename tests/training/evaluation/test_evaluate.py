"""The out-of-domain split: token files, the trainer's ood records and cards, training.evaluation.evaluate.

The loss is checked against a direct computation (the model's logits on hand-cut windows and
torch's cross-entropy), not against the evaluation code itself.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lens_positions import HookedIncrementTransformer
from training.evaluation.evaluate import evaluate_model
from training.evaluation.evaluate import main as evaluate_main
from training.runs.metrics import read_metrics
from training.tokens.byte_tokens import (
    decode_documents,
    has_split,
    load_tokens,
    prepare_tokens,
    read_metadata,
)
from training.tokens.windows import val_starts
from training.train.configs import named_config
from training.train.trainer import RunOptions, train

TRAIN = ["the cat sat on the mat.", "a dog ran to the park.", "她每天早上喝绿茶。"]
OOD_EN = ["It is a truth universally acknowledged, that a single man must be in want of a wife."]
OOD_ZH = ["这家酒店的服务很好，房间干净，下次还会再来。"]


def write_jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
                    encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def ood_tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ood")
    rng = random.Random(1)
    docs = [" ".join(rng.choice(TRAIN) for _ in range(rng.randint(3, 6))) for _ in range(80)]
    train = write_jsonl(root / "docs.jsonl", docs + [OOD_ZH[0] * 2])  # one copy of an ood text
    en = write_jsonl(root / "en-novel.jsonl", [f"{OOD_EN[0]} ({i})" for i in range(30)])
    zh = write_jsonl(root / "zh-reviews.jsonl", [OOD_ZH[0] * 2] + [f"{OOD_ZH[0]}{i}" for i in range(30)])
    prepare_tokens(f"local:{train}", root / "tokens", val_docs=8, progress=False,
                   ood_spec=f"local:{en},local:{zh}", ood_max_bytes_per_source=1200)
    return root / "tokens"


def test_ood_split_files_and_metadata(ood_tokens: Path):
    meta = read_metadata(ood_tokens)
    assert has_split(ood_tokens, "ood")
    docs = decode_documents(np.asarray(load_tokens(ood_tokens, "ood")))
    assert meta["ood"]["documents"] == len(docs)
    assert set(meta["ood"]["bytes_by_source"]) == {"en-novel", "zh-reviews"}
    # Capped per source and spread over it: every k-th document, first and later ones.
    for name in ("en-novel", "zh-reviews"):
        assert 600 <= meta["ood"]["bytes_by_source"][name] <= 1800
    assert any("(0)" in d for d in docs) and any("(2" in d or "(1" in d for d in docs)
    # The training copy of an out-of-domain text is dropped, and nothing else overlaps.
    assert meta["dropped_duplicates_of_ood"] == 1
    train = set(decode_documents(np.asarray(load_tokens(ood_tokens, "train"))))
    assert not train & set(docs)


def test_ood_errors(tmp_path: Path, ood_tokens: Path):
    src = write_jsonl(tmp_path / "a.jsonl", TRAIN * 5)
    with pytest.raises(ValueError, match="both the training and the ood spec"):
        prepare_tokens(f"local:{src}", tmp_path / "t", val_docs=2, ood_spec=f"local:{src}",
                       progress=False)
    prepare_tokens(f"local:{src}", tmp_path / "t", val_docs=2, progress=False)
    with pytest.raises(ValueError, match="no 'ood' split"):
        load_tokens(tmp_path / "t", "ood")
    # A rebuild without an ood split removes an earlier ood.bin.
    prepare_tokens(f"local:{src}", tmp_path / "u", val_docs=2, progress=False,
                   ood_spec=f"local:{write_jsonl(tmp_path / 'b.jsonl', OOD_ZH)}")
    assert (tmp_path / "u" / "ood.bin").exists()
    prepare_tokens(f"local:{src}", tmp_path / "u", val_docs=2, progress=False)
    assert not (tmp_path / "u" / "ood.bin").exists() and not has_split(tmp_path / "u", "ood")


def test_val_starts_spread_is_a_subset_of_the_tiling():
    full = val_starts(1001, 10)
    spread = val_starts(1001, 10, max_windows=7, spread=True)
    assert len(spread) == 7 and set(spread) <= set(full) and spread[-1] > full[len(full) // 2]
    assert list(val_starts(1001, 10, max_windows=7)) == list(full[:7])


def direct_loss(model: torch.nn.Module, tokens: np.ndarray, n_ctx: int) -> tuple[float, int]:
    """Mean cross-entropy (nats/byte) over consecutive n_ctx windows, computed by hand."""
    total, count = 0.0, 0
    for start in range(0, len(tokens) - n_ctx, n_ctx):
        window = torch.from_numpy(np.asarray(tokens[start : start + n_ctx + 1], dtype=np.int64))
        with torch.no_grad():
            logits = model(window[None, :-1])[0]
        total += F.cross_entropy(logits.float(), window[1:], reduction="sum").item()
        count += n_ctx
    return total / count, count


def test_trainer_logs_ood_and_evaluate_matches_a_direct_computation(
    ood_tokens: Path, tmp_path: Path, capsys
):
    cfg = named_config("tiny").replace(threads=1, steps=20, eval_every=10, log_every=5,
                                       checkpoint_every=10, eval_windows=4)
    run = tmp_path / "run"
    train(cfg, ood_tokens, run, RunOptions(progress=False, tensorboard=False))
    records = read_metrics(run)
    evals = [r for r in records if r["kind"] in ("eval", "final")]
    assert [r["kind"] for r in evals] == ["eval", "final"]
    for r in evals:
        assert {"ood_loss", "ood_bpb", "ood_tokens"} <= set(r)
        assert math.isclose(r["ood_bpb"], r["ood_loss"] / math.log(2))
    final = evals[-1]
    card = json.loads((run / "final" / "card.json").read_text())
    assert card["final"]["ood_loss"] == final["ood_loss"]
    assert "out-of-domain loss" in (run / "final" / "card.md").read_text()

    model = HookedIncrementTransformer.from_pretrained(run / "final")
    ood = load_tokens(ood_tokens, "ood")
    expected, count = direct_loss(model, ood, cfg.model.n_ctx)
    assert final["ood_tokens"] == count
    assert math.isclose(final["ood_loss"], expected, rel_tol=1e-5)
    # training.evaluation.evaluate: run folder or model folder, full split, same figure.
    result = evaluate_model(str(run), ood_tokens, "ood")
    assert result["tokens"] == count and math.isclose(result["loss"], expected, rel_tol=1e-5)
    out_json = tmp_path / "r.json"
    assert evaluate_main(["--model", str(run / "final"), "--data", str(ood_tokens),
                          "--split", "ood", "--max-windows", "3", "--json", str(out_json)]) == 0
    assert "bits/byte" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["windows"] == 3
    assert evaluate_main(["--model", str(tmp_path / "nothing"), "--data", str(ood_tokens)]) == 2


def test_corpus_table_lists_evaluations_and_runs(tmp_path: Path):
    from training.evaluation.corpus_table import main as table_main

    for model, bpb in (("old", 2.5), ("new", 2.0)):
        (tmp_path / f"{model}.json").write_text(json.dumps({
            "model": model, "data": "/d/tokens-v2", "split": "ood", "bpb": bpb, "loss": bpb * 0.69,
            "tokens": 25600, "windows": 100, "max_windows": 100, "n_ctx": 256}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"kind": "train", "step": 10, "tokens_per_s": 900.0},
        {"kind": "train", "step": 20, "tokens_per_s": 1100.0},
        {"kind": "eval", "step": 20, "val_bpb": 2.1, "ood_bpb": 2.6},
    ]))
    out = tmp_path / "t.md"
    assert table_main([str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--runs", str(run),
                       "--out", str(out)]) == 0
    text = out.read_text()
    assert "| old | 2.5000 (25k tok) |" in text and "| new | 2.0000 (25k tok) |" in text
    assert "--split ood --max-windows 100`" in text
    assert "| run | 20 | 2.1000 | 2.6000 | 1,000 |" in text
