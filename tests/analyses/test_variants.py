"""analyses.variants on tiny models whose answers are known: a signed frozen table with negative
δ at chosen bytes, losses recomputed by hand, boundary tables as word_boundaries gives them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses import variants
from analyses.word_boundaries import word_boundary_table
from lens_positions import HookedIncrementTransformer
from training.tokens.byte_tokens import load_tokens, prepare_tokens

from ..conftest import small_config
from .conftest import EN_TEXT, ZH_TEXT, make_model


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("variants")
    docs = [f"{ZH_TEXT} 第{i}个。" if i % 2 else f"{EN_TEXT} It's Curie's {i}th prize." for i in range(24)]
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    prepare_tokens(f"local:{source}", root / "tokens", val_docs=8, progress=False)
    return root / "tokens"


def signed_table_model() -> HookedIncrementTransformer:
    """Signed frozen δ: -2 at 的's last byte (0x84), -1 at the apostrophe, 1 elsewhere."""
    model = HookedIncrementTransformer(small_config("shared", frozen=True, signed=True)).eval()
    table = torch.ones(257)
    table["的".encode()[-1]] = -2.0
    table[ord("'")] = -1.0
    model.set_frozen_deltas(table)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    models = {
        "none": HookedIncrementTransformer(small_config("none")).eval(),
        "signed": signed_table_model(),
        "half": make_model("per_layer", learned_fraction=0.5),
    }
    for label, model in models.items():
        model.save_pretrained(root / label)
    return {label: root / label for label in models}


def hand_loss(model: HookedIncrementTransformer, tokens: np.ndarray, max_windows: int | None = None) -> float:
    """Mean next-byte loss over windows [k n_ctx, k n_ctx + n_ctx + 1), computed directly."""
    n = model.cfg.n_ctx
    total, count = 0.0, 0
    starts = list(range(0, len(tokens) - n, n))[:max_windows]
    with torch.no_grad():
        for start in starts:
            window = torch.as_tensor(tokens[start : start + n + 1].astype(np.int64))[None]
            logits = model(window[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits[0].double(), window[0, 1:], reduction="sum")
            total, count = total + loss.item(), count + n
    return total / count


def test_variants_finds_the_known_answers(token_dir: Path, saved: dict[str, Path], tmp_path: Path):
    params = variants.Params(
        runs=saved, data=token_dir, ood_data=token_dir, ood_split="val", max_gaps=300, n_boot=20, top=3,
        min_count=5, progress=False,
    )
    models = {label: variants._common.load_model(path) for label, path in saved.items()}
    result = variants.compare(models, params)

    losses = result.tables["losses"].set_index("run")
    val = load_tokens(token_dir, "val")
    for label, model in models.items():
        expected = hand_loss(model, np.asarray(val))
        assert losses.loc[label, "val_loss"] == pytest.approx(expected, rel=1e-5)
        assert losses.loc[label, "ood_loss"] == pytest.approx(expected, rel=1e-5)
    assert losses.loc["none", "d_val"] == 0 and losses.loc["half", "variant"] == "per-layer-learned-0.5"

    # signed: the frozen table's negative bytes, in every layer, and nothing else below 0
    neg = result.tables["negative"]
    assert set(neg["run"]) == {"signed"}
    for layer in ("L0", "L1", "L2"):
        rows = neg[neg["layer"] == layer].reset_index(drop=True)
        assert (rows.loc[0, "char"], rows.loc[0, "byte"], rows.loc[0, "mean_delta"]) == ("的", 3, -2.0)
        assert (rows.loc[1, "char"], rows.loc[1, "mean_delta"], rows.loc[1, "frac_negative"]) == ("'", -1.0, 1.0)
        assert rows.loc[2, "mean_delta"] == 1.0
    probes = result.tables["probes"].set_index(["layer", "probe"])
    assert probes.loc[("L1", "的 last byte"), "mean_delta"] == -2.0
    assert probes.loc[("L1", "' of 's"), "mean_delta"] == -1.0
    assert probes.loc[("L1", "s of 's"), "mean_delta"] == 1.0
    assert probes.loc[("L1", "' of 's"), "n"] == 4 * 2  # It's and Curie's in each of 4 English docs

    # boundaries: the two learned-δ models, as word_boundaries computes them; `none` left out
    boundaries = result.tables["boundaries"]
    assert set(boundaries["run"]) == {"signed", "half"}
    texts = variants.held_out_documents(token_dir, params.max_docs)
    assert len(texts["zh"]) == 4 and len(texts["en"]) == 4
    direct = word_boundary_table(models["half"], texts["zh"], texts["en"], max_gaps=300, n_boot=20, progress=False)
    direct = direct[direct["head"] == "mean"].reset_index(drop=True)
    mine = boundaries[boundaries["run"] == "half"].reset_index(drop=True)
    np.testing.assert_allclose(mine["auc"], direct["auc"])
    assert list(mine["layer"]) == ["L0", "L1", "L2"] * 2

    assert result.pages["command.txt"].startswith("python -m analyses.variants --data")
    result.save(tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "的 last byte" in report and "Word-boundary ROC-AUC" in report
    for name in ("losses.csv", "negative.csv", "probes.csv", "boundaries.csv", "boundaries.png", "boundaries.svg"):
        assert (tmp_path / "out" / name).is_file(), name


def test_command_line(token_dir: Path, saved: dict[str, Path], tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = ["--data", str(token_dir), "--run", f"none={saved['none']}", "--run", f"signed={saved['signed']}",
            "--max-gaps", "100", "--n-boot", "10", "--no-progress", "--out", str(out)]
    result = variants.main(argv)
    losses = result.tables["losses"]
    assert list(losses["run"]) == ["none", "signed"] and losses["ood_loss"].isna().all()
    printed = capsys.readouterr().out
    assert "# Variants" in printed and "python -m analyses.variants --data" in printed
    assert (out / "command.txt").read_text().startswith("python -m analyses.variants --data")
    with pytest.raises(SystemExit):
        variants.main(["--data", str(token_dir), "--run", "no-equals-sign"])
    with pytest.raises(FileNotFoundError, match="neither a finished run"):
        variants.load_run(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the command turns it into a usage error naming the problem
        variants.main(["--data", str(token_dir), "--run", f"x={tmp_path}"])
    assert "neither a finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        variants.main(["--data", str(token_dir)])
    assert "no runs to compare" in capsys.readouterr().err


def test_unfinished_runs_are_read_from_their_checkpoint(token_dir: Path, tmp_path: Path):
    from training.train.configs import named_config
    from training.train.trainer import NonFiniteLossError, RunOptions, train

    cfg = named_config("tiny").replace(
        increments="per_layer", signed=True, steps=20, checkpoint_every=5, eval_every=5, threads=1
    )
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError):  # leaves the step-10 checkpoint and no final/
        train(cfg, token_dir, run_dir, RunOptions(progress=False, tensorboard=False, nan_at_step=12))
    model, step = variants.load_run(run_dir)
    assert step == 10 and model.cfg.signed and not model.training
    params = variants.Params(runs={"signed": run_dir}, data=token_dir, ood_data=token_dir,
                             ood_split="val", eval_windows=3)
    table = variants.loss_table(params.runs, {"signed": model}, params, {"signed": step})
    expected = hand_loss(model, np.asarray(load_tokens(token_dir, "val")), max_windows=3)
    assert table.loc[0, "steps"] == 10
    assert table.loc[0, "val_loss"] == pytest.approx(expected, rel=1e-5)
    assert table.loc[0, "ood_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_missing_ood_split_is_a_usage_error(token_dir: Path, saved: dict[str, Path], capsys):
    """The OOD split is read with `training.tokens.byte_tokens.load_tokens`: a folder without one (or a split
    name it does not know) stops the command with the loader's message."""
    base = ["--data", str(token_dir), "--run", f"none={saved['none']}", "--ood-data", str(token_dir)]
    for split, message in (("ood", "has no 'ood' split"), ("nope", "split must be one of")):
        with pytest.raises(SystemExit):
            variants.main([*base, "--ood-split", split, "--no-progress", "--max-gaps", "10"])
        assert message in capsys.readouterr().err
