"""The peer benchmarks compare like with like (the Llama and the bridge compute our ``none``
model's function) and their scripts run at a tiny size and report the expected rows. Behaviour
only: nothing here depends on how fast anything ran."""

from __future__ import annotations

import pytest
import torch

from benchmarks import common, graft, patching, run_all, scaling, vs_bridge, vs_hf
from benchmarks.peers import bridge_from_hooked, llama_from_hooked, rotary_graft_loader
from lens_positions import HookedIncrementTransformer


def _none_model(n_ctx: int = 32) -> HookedIncrementTransformer:
    model = HookedIncrementTransformer(common.model_config("none", common.TINY_DIMS, n_ctx, seed=3)).eval()
    with torch.no_grad():  # sharper attention, so that a mis-ordered rotary pair would show
        for block in model.blocks:
            block.attn.W_Q.mul_(8)
            block.attn.W_K.mul_(8)
            block.ln1.w.uniform_(0.5, 1.5)
    return model


def test_llama_peer_computes_our_logits_and_loss():
    model = _none_model()
    tokens = torch.randint(0, 257, (2, 24), generator=torch.Generator().manual_seed(0))
    hf = llama_from_hooked(model)
    with torch.no_grad():
        ours_logits, ours_loss = model(tokens, return_type="both")
        out = hf(input_ids=tokens, labels=tokens)
    torch.testing.assert_close(out.logits, ours_logits, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, ours_loss, atol=1e-5, rtol=1e-5)


def test_llama_peer_refuses_learned_positions():
    model = HookedIncrementTransformer(common.model_config("per-layer", common.TINY_DIMS, 16))
    with pytest.raises(ValueError, match="increments='none'"):
        llama_from_hooked(model)


def test_bridge_peer_computes_our_logits_and_caches_the_standard_hooks():
    model = _none_model()
    bridge = bridge_from_hooked(model)
    tokens = torch.randint(0, 257, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, our_cache = model.run_with_cache(tokens)
        theirs, cache = bridge.run_with_cache(tokens)
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-4)
    for name in ("blocks.1.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.hook_resid_post"):
        torch.testing.assert_close(cache[name], our_cache[name], atol=2e-5, rtol=1e-4)


def test_vs_hf_quick_reports_llama_and_each_variant():
    report = vs_hf.main(["--quick"])
    assert [row[0] for row in report.rows] == [vs_hf.PEER, "none", "per-layer"]
    ratio = report.headers.index("time vs HF")
    assert report.rows[0][ratio] == "1.000"
    assert [t.description for t in report.targets] == ["per-layer step time vs HF Llama"]
    assert all(float(row[report.headers.index("peak MiB")]) > 0 for row in report.rows)


def test_vs_bridge_quick_reports_both_calls_for_everyone():
    report = vs_bridge.main(["--quick"])
    keys = [(row[0], row[1]) for row in report.rows]
    expected = [(n, m) for n in (vs_bridge.BRIDGE, "none", "per-layer") for m in vs_bridge.MODES]
    assert keys == expected + [(vs_bridge.HF, "forward")]
    cached = report.headers.index("cached")
    bridge_cache, ours_cache = int(report.rows[1][cached]), int(report.rows[3][cached])
    assert bridge_cache > 0 and ours_cache > 0
    assert report.targets[0].description == "per-layer cache all time vs TransformerBridge"


def test_patching_quick_sweeps_every_layer_and_position_and_agrees_with_the_bridge():
    report = patching.main(["--quick"])
    assert [row[0] for row in report.rows] == [patching.BRIDGE, "none", "per-layer"]
    n_layers, seq = common.TINY_DIMS["n_layers"], 8
    assert all(row[-1] == f"{n_layers}x{seq}" for row in report.rows)
    diff = float(report.notes[0].split("largest difference ")[1].split(" ")[0])
    assert diff < 1e-4


def test_corruption_changes_a_quarter_of_the_positions():
    tokens = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    changed = patching.corrupt(tokens, seed=0) != tokens
    assert changed[:, 1::4].all() and not changed[:, [0, 2, 3]].any()


def test_graft_says_why_it_cannot_run():
    if rotary_graft_loader() is not None:
        pytest.skip("this checkout has load_rotary_model: the slow test below runs the graft")
    with pytest.raises(common.Skipped, match="load_rotary_model"):
        graft.run(graft.parse_args(["--quick"]))
    assert graft.main(["--quick"]) is None


@pytest.mark.slow
def test_graft_quick_reports_both_calls():
    if rotary_graft_loader() is None:
        pytest.skip("lens_positions.load_rotary_model is not in this checkout")
    try:
        graft.gguf_path()
    except common.Skipped as reason:
        pytest.skip(str(reason))
    report = graft.main(["--quick"])
    assert [(row[0], row[1]) for row in report.rows] == [
        (name, mode)
        for name in ("tl-bridge", f"{graft.NAME} none graft", f"{graft.NAME} per-layer graft")
        for mode in graft.MODES
    ]
    assert len(report.targets) == 2


def test_run_all_records_a_skipped_benchmark(tmp_path, monkeypatch):
    def refuse(args):
        raise common.Skipped("not here")

    monkeypatch.setattr(graft, "run", refuse)
    text = run_all.main(["--quick", "--results", str(tmp_path / "R.md"), "--only", "graft"])
    assert "### graft (skipped)" in text and "Skipped: not here" in text


def test_scaling_reports_training_memory_where_asked():
    report = scaling.main(["--quick", "--seqs", "16", "32", "--train-seqs", "32"])
    col = report.headers.index("train memory ratio")
    assert report.rows[0][col] == "-" and float(report.rows[1][col]) > 0
    assert report.targets[-1].description == "per-layer/none peak training memory at 32 tokens"
