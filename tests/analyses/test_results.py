"""The one-command report (`analyses.results`) on tiny random models and a tiny token folder."""

from __future__ import annotations

import json

import pytest

from analyses.results import SECTIONS, run_results

from .conftest import make_model


@pytest.mark.slow
def test_quick_report_on_tiny_models(heldout_token_dir, tmp_path):
    models_dir = tmp_path / "models"
    models = {}
    for variant, (inc, per_head) in {
        "none": ("none", False),
        "shared": ("shared", False),
        "per-layer": ("per_layer", False),
        "per-layer-per-head": ("per_layer", True),
    }.items():
        path = models_dir / f"bilingual-{variant}"
        make_model(inc, per_head, n_ctx=256).save_pretrained(path)
        models[variant] = str(path)
    # a card with a re-measured loss, and a metrics file with δ statistics at the bound
    (models_dir / "bilingual-none" / "card.json").write_text(json.dumps(
        {"steps": 10, "final": {"val_loss": 5.0, "val_bpb": 7.2}, "shipped": {"val_loss": 5.5, "val_bpb": 7.9}}
    ))
    (models_dir / "bilingual-per-layer" / "card.json").write_text(json.dumps(
        {"steps": 10, "final": {"val_loss": 5.25, "val_bpb": 7.5}}
    ))
    final = {"kind": "final", "delta": [{"layer": i, "mean": 9.95, "std": 0.1, "min": 9.0, "max": 10.0} for i in range(3)]}
    (models_dir / "bilingual-per-layer" / "metrics.jsonl").write_text(
        json.dumps({"kind": "train", "step": 10, "loss": 4.0}) + "\n" + json.dumps(final) + "\n"
    )
    out = tmp_path / "results"
    path = run_results(out, quick=True, threads=1, models=models, data_dir=heldout_token_dir,
                       heldout_dir=tmp_path / "heldout")
    text = path.read_text(encoding="utf-8")
    for _, title, _ in SECTIONS:
        assert f"## {title}" in text or f"### {title}" in text, title
    for heading in ("## Held-out text and bounds", "## 6. New analyses", "## Observations"):
        assert heading in text
    assert "RUNNING" not in text and "**Skipped**" not in text, text
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [s["status"] for s in summary["sections"]] == ["ok"] * len(SECTIONS)
    # the loss table prefers the re-measured number and compares with none
    assert "5.5000" in text and "-0.2500" in text
    assert any("δ bound" in o for o in summary["observations"])
    # every table comes with the command that reproduces it, on the quick (held-out) texts
    assert text.count("python -m analyses.word_boundaries") == 3
    assert str(out / "heldout_quick" / "zh.jsonl") in text
    assert (out / "spaced_text" / "per-layer" / "spaced_text_row.png").is_file()
    assert (tmp_path / "heldout" / "zh.jsonl").is_file()
    assert (out / "entities" / "per-layer" / "command.txt").read_text().startswith("python -m analyses.entities")
    # a printed command reproduces its table (here: the word-index probes, run as printed)
    import shlex

    import pandas as pd

    from analyses import word_index_probes

    line = next(x for x in text.splitlines() if x.startswith("python -m analyses.word_index_probes"))
    before = pd.read_csv(out / "word_index_probes" / "per-layer" / "summary.csv")
    word_index_probes.main(shlex.split(line)[3:])
    after = pd.read_csv(out / "word_index_probes" / "per-layer" / "summary.csv")
    pd.testing.assert_frame_equal(before, after)
    # the document's facts come from the models and cards: 3 layers, 10 steps
    assert "3 layers" in text and "10 steps" in text and "`L2`" in text
    # --reuse keeps outputs whose command is unchanged; --only runs the chosen sections
    stamp = (out / "entities" / "per-layer" / "entities.csv").stat().st_mtime_ns
    again = run_results(out, quick=True, threads=1, models=models, data_dir=heldout_token_dir,
                        heldout_dir=tmp_path / "heldout", only=["entities"], reuse=True)
    assert (out / "entities" / "per-layer" / "entities.csv").stat().st_mtime_ns == stamp
    text = again.read_text(encoding="utf-8")
    assert "| 4. Multi-word entities (§3.4) | ok |" in text and "not run (`--only`)" in text
