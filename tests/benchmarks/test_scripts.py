"""The benchmark scripts run (``--quick``, tiny config) and report what they should. Behaviour
only: no test here depends on how fast anything ran."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks import analysis, common, run_all, scaling, train_step
from lens_positions import HookedIncrementTransformer


def _table_rows(report: common.Report, column: int = 0) -> list[str]:
    return [row[column] for row in report.rows]


def _check_table(report: common.Report) -> None:
    table = report.table().splitlines()
    assert len(table) == 2 + len(report.rows)
    assert all(line.startswith("| ") and line.endswith(" |") for line in table[:1] + table[2:])
    assert all(line.count("|") == len(report.headers) + 1 for line in table)


def test_train_step_quick_reports_every_candidate():
    report = train_step.main(["--quick"])
    _check_table(report)
    expected = ["baseline-fused", "baseline-separate", *common.VARIANTS]
    assert _table_rows(report) == expected
    speed = report.headers.index("speed vs baseline")
    assert any(row[speed] == "1.000" for row in report.rows[:2])  # the reference baseline
    described = {t.description for t in report.targets}
    assert "per-layer tokens/s vs none" in described and "per-layer peak memory vs baseline" in described
    assert all(float(row[report.headers.index("peak MiB")]) > 0 for row in report.rows)
    assert "MFU" not in report.headers  # CPU: no accelerator peak to compare with


def test_analysis_quick_reports_three_calls_per_variant():
    report = analysis.main(["--quick", "--variants", "none", "per-layer"])
    _check_table(report)
    assert [(r[0], r[1]) for r in report.rows] == [
        (v, m) for v in ("none", "per-layer") for m in analysis.MODES
    ]
    assert [r[4] for r in report.rows[::3]] == ["1.000", "1.000"]  # forward is its own reference
    assert len(report.targets) == 4


def test_analysis_few_hooks_exist_and_keep_attention_fast():
    model = HookedIncrementTransformer(common.model_config("per-layer", common.TINY_DIMS, 16)).eval()
    names = analysis.few_hook_names(model.cfg.n_layers)
    _, cache = model.run_with_cache(torch.zeros(1, 8, dtype=torch.long), names_filter=names)
    assert sorted(cache.keys()) == sorted(names)
    assert not any("pattern" in n or "attn_scores" in n for n in names)


def test_scaling_quick_reports_each_length():
    report = scaling.main(["--quick", "--seqs", "16", "32", "48"])
    _check_table(report)
    assert _table_rows(report) == ["16", "32", "48"]
    assert report.targets[0].description.startswith("per-layer/none time ratio at 48")


def test_run_all_appends_a_dated_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    for _ in range(2):
        text = run_all.main(["--quick", "--results", str(results), "--only", "scaling"])
    assert text.startswith("## ") and "### Sequence-length scaling (forward)" in text
    written = results.read_text()
    assert written.startswith("# Benchmark results")
    sections = [line for line in written.splitlines() if line.startswith("## ")]
    assert len(sections) == 2 and all(line.endswith("· cpu · quick") for line in sections)
    assert written.count("Command: `python -m benchmarks.run_all --quick --results") == 2
    assert written.rstrip().endswith(text.rstrip())  # the newest section comes last


def test_run_all_forwards_its_options():
    args = run_all.parse_args(["--quick", "--device", "cuda", "--compile", "--repeats", "3"])
    forwarded = run_all.forwarded_args(args)
    parsed = train_step.parse_args(forwarded)
    assert (parsed.device, parsed.quick, parsed.compile, parsed.repeats) == ("cuda", True, True, 3)
    assert analysis.parse_args(forwarded).device == scaling.parse_args(forwarded).device == "cuda"


def test_flop_count_matches_the_models_matrices():
    for variant in common.VARIANTS:
        model = HookedIncrementTransformer(common.model_config(variant, common.PAPER_DIMS, 512))
        matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
        assert common.matmul_params(model.cfg) == matrices, variant
    cfg = common.model_config("none", common.PAPER_DIMS, 512)
    n = common.matmul_params(cfg)
    assert common.flops_per_token(cfg, 512, training=True) == 6 * n + 12 * 6 * 8 * 32 * 512
    assert common.flops_per_token(cfg, 512, training=False) == 2 * n + 4 * 6 * 8 * 32 * 512
    rate = 1e6
    assert common.mfu(cfg, 512, rate, True, 989.0) == pytest.approx(
        common.flops_per_token(cfg, 512, True) * rate / 989e12
    )


def test_cpu_peak_memory_counts_live_tensors():
    setup = common.Setup(torch.device("cpu"), 1)

    def allocate():
        a = torch.ones(1_000_000)  # 4 MB
        b = torch.ones(500_000)  # 2 MB, both alive: 6 MB
        del a
        c = torch.ones(250_000)  # 1 MB after a was freed: still 6 MB at most
        return b, c

    peak = common.peak_memory_bytes(allocate, setup)
    assert 6_000_000 <= peak < 6_100_000


def test_interleaved_timing_rotates_the_order():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = common.interleaved_times(candidates, repeats=3, setup=common.Setup(torch.device("cpu"), 1), warmup=1)
    assert calls == list("abc" + "abc" + "bca" + "cab")
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert common.paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == 3.0


def test_cuda_mode_refuses_cleanly_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        train_step.run(train_step.parse_args(["--device", "cuda", "--quick"]))


def test_first_touch_quick_compares_plain_and_hinted_memory():
    """Both allocators and both attention candidates are timed; the attention output is the same
    with and without the hint (the note says so); a GPU run is skipped with the reason."""
    from benchmarks import first_touch
    from lens_positions import components, memory

    report = first_touch.main(["--quick"])
    _check_table(report)
    assert _table_rows(report) == ["torch.empty + fill", "large_empty + fill",
                                   "attention layer, plain memory", "attention layer, hinted memory"]
    assert report.notes == ["the attention layer's output is bit-identical with and without the hint"]
    assert components.large_empty is memory.large_empty  # restored after the plain candidate
    with pytest.raises(common.Skipped, match="--device cpu"):
        first_touch.run(argparse.Namespace(device="cuda", quick=True, repeats=1, threads=1, compile=False,
                                           peak_tflops=1.0, seed=0, clock="auto"))


def test_step_profile_quick_lists_ops_and_totals():
    from benchmarks import step_profile

    report = step_profile.main(["--quick", "--steps", "1", "--rows", "5", "--a", "per-layer", "--b", "hf-llama"])
    _check_table(report)
    assert len(report.rows) == 6 and report.rows[-1][0] == "total"
    assert report.headers[2:4] == ["per-layer", "hf-llama"]
    assert all(float(r[2]) >= 0 and float(r[3]) >= 0 for r in report.rows)
    with pytest.raises(SystemExit):
        step_profile.parse_args(["--a", "none", "--b", "none"])


def test_training_attention_quick_compares_the_blocked_node_with_sdpa():
    """One shape (several query blocks), both candidates timed, their results agreeing to
    float32 rounding, and whole training steps with each; a GPU run is skipped with the reason."""
    from benchmarks import training_attention

    report = training_attention.main(["--quick"])
    _check_table(report)
    assert [r[0] for r in report.rows] == ["2 x 160 x 2 x 16"]
    assert float(report.notes[0].split("agree to ")[1].split(" of")[0]) < 1e-5
    assert "| tiny, batch 2 x 160 |" in report.notes[1]  # the whole-step comparison
    from lens_positions import components

    assert components.MIN_BLOCKED_TOKENS == 128  # restored after the SDPA candidate
    with pytest.raises(common.Skipped, match="--device cpu"):
        training_attention.run(argparse.Namespace(device="cuda", quick=True, repeats=1, threads=1, compile=False,
                                                  peak_tflops=1.0, seed=0, clock="auto"))
