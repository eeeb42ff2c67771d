"""The loss-comparison table and curves, on two tiny real training runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from analyses.loss_comparison import compare_runs, curves, format_table, main
from training.tokens.byte_tokens import prepare_tokens
from training.train.configs import named_config
from training.train.trainer import RunOptions, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/none and runs/per-layer: 30 tiny steps each on the same synthetic text."""
    root = tmp_path_factory.mktemp("comparison")
    source = root / "docs.jsonl"
    docs = [f"line {i % 7}: the quick brown fox jumps over the lazy dog. 狐狸跳过了狗。" for i in range(60)]
    source.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    prepare_tokens(f"local:{source}", root / "tokens", val_docs=6, progress=False)
    base = named_config("tiny").replace(steps=30, eval_every=10, log_every=5, checkpoint_every=30, threads=1)
    for increments in ("none", "per_layer"):
        cfg = base.replace(increments=increments)
        train(cfg, root / "tokens", root / "runs" / cfg.variant_name,
              RunOptions(progress=False, tensorboard=False))
    return root / "runs"


def test_table_has_final_losses_and_differences_from_none(runs: Path):
    df = compare_runs([runs / "per-layer", runs / "none"])
    assert list(df["variant"]) == ["none", "per-layer"]  # canonical order, not argument order
    cards = {v: json.loads((runs / v / "final" / "card.json").read_text()) for v in ("none", "per-layer")}
    for _, row in df.iterrows():
        final = cards[row["variant"]]["final"]
        assert row["val_loss"] == pytest.approx(final["val_loss"])
        assert row["val_bpb"] == pytest.approx(final["val_loss"] / math.log(2))
        assert row["finished"] and row["steps"] == 30
    none_loss = df.loc[df["variant"] == "none", "val_loss"].item()
    per_layer = df.loc[df["variant"] == "per-layer"].iloc[0]
    assert per_layer["delta_loss_vs_none"] == pytest.approx(per_layer["val_loss"] - none_loss)
    assert per_layer["delta_bpb_vs_none"] == pytest.approx(per_layer["delta_loss_vs_none"] / math.log(2))
    text = format_table(df)
    assert text.splitlines()[0].startswith("| run") and "per-layer" in text


def test_unfinished_run_reports_its_latest_evaluation(runs: Path, tmp_path: Path):
    partial = tmp_path / "partial"
    shutil.copytree(runs / "none", partial)
    shutil.rmtree(partial / "final")
    row = compare_runs([partial]).iloc[0]
    assert not row["finished"]
    assert row["variant"] == "none" and row["steps"] == 30  # the final record in the metrics
    assert math.isnan(compare_runs([runs / "per-layer"]).iloc[0]["delta_loss_vs_none"])


def test_curves_and_command(runs: Path, tmp_path: Path, capsys):
    data = curves([runs / "none", runs / "per-layer"])
    assert set(data["split"]) == {"train", "val"}
    assert list(data[(data["run"] == "none") & (data["split"] == "val")]["step"]) == [10, 20, 30]

    (runs / "notes.md").write_text("not a run")  # matched by the glob, skipped
    result = main(["--runs", str(runs / "*"), "--out", str(tmp_path / "figs")])
    assert list(result.tables["loss_comparison"].variant) == ["none", "per-layer"]
    out = capsys.readouterr().out
    assert "| none" in out and "| per-layer" in out
    png = tmp_path / "figs" / "loss_curves.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figs" / "loss_comparison.md").read_text().strip() == out.strip()


def test_out_of_domain_column_when_a_run_measured_it(runs: Path, tmp_path: Path):
    with_ood = tmp_path / "ood"
    shutil.copytree(runs / "per-layer", with_ood)
    card_path = with_ood / "final" / "card.json"
    card = json.loads(card_path.read_text())
    card["final"].update(ood_loss=1.5, ood_bpb=1.5 / math.log(2), ood_tokens=1000)
    card_path.write_text(json.dumps(card))
    df = compare_runs([runs / "none", with_ood])
    assert list(df.columns[-2:]) == ["ood_loss", "ood_bpb"]
    assert math.isnan(df.ood_loss.iloc[0]) and df.ood_loss.iloc[1] == 1.5
    assert "ood_loss" in format_table(df)
    assert "ood_loss" not in compare_runs([runs / "none"]).columns  # no column without the split
    # an unfinished run: from its latest evaluation record that has the split
    partial = tmp_path / "partial"
    shutil.copytree(runs / "none", partial)
    shutil.rmtree(partial / "final")
    with (partial / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"kind": "eval", "step": 31, "val_loss": 2.0, "ood_loss": 3.0}) + "\n")
    row = compare_runs([partial]).iloc[0]
    assert row.ood_loss == 3.0 and row.ood_bpb == pytest.approx(3.0 / math.log(2))


def test_no_run_folder_is_a_usage_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--runs", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "figs")])
    assert e.value.code == 2 and "no run folders found" in capsys.readouterr().err


def test_default_runs_are_the_shipped_models():
    from analyses.loss_comparison import shipped_runs

    df = compare_runs(shipped_runs())
    assert set(df.variant) >= {"none", "per-layer"} and df.finished.all()
    assert (df.val_loss > 0).all()
