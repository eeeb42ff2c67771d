"""The main job: `lens-positions report` and `lens-positions models`, and the HTML in a browser."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_positions import HookedIncrementTransformer
from lens_positions.cli import main
from lens_positions.plots import spaced_text_data, spaced_text_from_deltas
from lens_positions.report import AttentionPacker, build_report, unpack_attention
from lens_positions.summary import compute_increments, terminal_summary
from lens_positions.tokenizer import encode

from ..conftest import perturb_deltas, small_config

TEXT = "Marie Curie won two prizes. 人工智能是一个分支。"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
EXAMPLE_PAGE = ROOT / "lens_positions" / "assets" / "example_page.txt"


def _save(tmp_path_factory, increments: str = "per_layer", per_head: bool = False, **kw) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    model = HookedIncrementTransformer(small_config(increments, per_head, n_ctx=64, **kw))
    perturb_deltas(model).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _save(tmp_path_factory)


@pytest.fixture(scope="module")
def report_html(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", TEXT, "--model", str(model_dir), "--out", str(out), "--threads", "1"]) == 0
    return out


def _page_data(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_report_prints_a_summary_per_layer(model_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    main(["report", TEXT, "--model", str(model_dir), "--out", str(out), "--threads", "1"])
    printed = capsys.readouterr().out
    for layer in range(3):
        assert re.search(rf"layer {layer}: mean δ \d\.\d{{3}}", printed)
    assert printed.count("strongest boundaries: …") == 3 and "⟦" in printed
    assert re.search(r"prediction: \d+\.\d\d bits/byte on this text", printed)
    # Every listed boundary lies above the layer mean.
    assert all(float(r) > 1.0 for r in re.findall(r"⟧[^×]*×(\d\.\d\d)", printed))
    assert f"report written to {out}" in printed


def test_report_html_is_self_contained(report_html):
    page = report_html.read_text(encoding="utf-8")
    assert "人" in page and "Per-character increments" in page and "δ per layer" in page
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", page)
    assert "unpkg.com" not in page and 'from "http' not in page and "<iframe" not in page
    data = _page_data(page)
    assert data["rows"] == ["L0", "L1", "L2"] and len(data["att"]) == 1 and len(data["att"][0]) == 3
    assert len(data["bytes"]) == len(encode(TEXT)) and len(data["delta"][0]) == len(data["bytes"])


def test_one_definition_of_a_characters_increment(tmp_path_factory):
    """δ set through hooks: a character's increment is the sum of its bytes' δ in the summary, the
    report's spaced view and `plots.spaced_text_data`; relative = increment / (bytes × mean δ)."""
    model = HookedIncrementTransformer.from_pretrained(_save(tmp_path_factory))
    text = "ab 中文. xy"
    ids = torch.tensor(encode(text))

    def known(layer: int) -> torch.Tensor:  # [pos]: 3 at spaces, 0.5 at Chinese bytes, else 1; × (layer+1)
        d = torch.where(ids == ord(" "), 3.0, torch.where(ids >= 0x80, 0.5, 1.0))
        return d * (layer + 1)

    hooks = [(f"blocks.{layer}.hook_delta", lambda d, hook, layer=layer: known(layer)[None].to(d)) for layer in range(3)]
    with model.hooks(fwd_hooks=hooks):
        result = compute_increments(model, text)
    spans = [s for s in result.chars if s.text != "<sep>"]
    assert [s.text for s in spans] == list(text)
    for layer in range(3):
        d = known(layer)
        expected = torch.tensor([float(d[s.start : s.end].sum()) for s in result.chars])
        torch.testing.assert_close(result.char_increments[layer], expected)
        mean = float(d[1:].mean())  # over the text's bytes, not the separator
        sizes = torch.tensor([s.end - s.start for s in result.chars], dtype=torch.float32)
        torch.testing.assert_close(result.relative[layer], expected / (sizes * mean))
        # "中" is 3 bytes of 0.5: increment 1.5 × (layer+1), spaced like 3 average bytes would be.
        zh = next(i for i, s in enumerate(result.chars) if s.text == "中")
        assert result.char_increments[layer, zh].item() == pytest.approx(1.5 * (layer + 1))
        torch.testing.assert_close(result.positions[layer], torch.cumsum(d, 0))
    spaced = spaced_text_from_deltas(text, result.deltas.numpy(), ["L0", "L1", "L2"])
    direct = spaced_text_data(model, text, fwd_hooks=hooks)
    np.testing.assert_allclose(spaced.char_increments, result.char_increments[:, 1:].numpy(), rtol=1e-6)
    np.testing.assert_allclose(direct.char_increments, spaced.char_increments, rtol=1e-6)
    # The top boundary is a space (3 per byte against a mean near 1), never a Chinese character.
    assert result.chars[result.layers[0].boundaries[0][0]].text == " "


def test_per_head_model_summarises_head_means(tmp_path_factory):
    model = HookedIncrementTransformer.from_pretrained(_save(tmp_path_factory, "per_layer", per_head=True))
    heads = torch.arange(1, model.cfg.n_heads + 1, dtype=torch.float32)  # head h gets δ = h + 1
    hooks = [(f"blocks.{layer}.hook_delta", lambda d, hook: heads.expand_as(d).clone()) for layer in range(3)]
    with model.hooks(fwd_hooks=hooks):
        result = compute_increments(model, "abc")
    assert result.layers[0].mean_delta == pytest.approx(float(heads.mean()))
    assert "means over the 4 heads" in terminal_summary(result)


def test_shared_and_no_increment_models_print_one_block(tmp_path_factory, capsys):
    for increments, expected in [("shared", "one δ shared by every layer"), ("none", "no learned increments")]:
        path = _save(tmp_path_factory, increments)
        main(["report", TEXT, "--model", str(path), "--out", "", "--threads", "1"])
        printed = capsys.readouterr().out
        assert expected in printed
        assert "layer 1:" not in printed and "layer 2:" not in printed
        if increments == "shared":
            assert printed.count("all layers: mean δ") == 1
        else:
            assert "strongest boundaries" not in printed and "×1.00" not in printed


def test_out_of_domain_text_is_flagged(tmp_path_factory, capsys):
    path = _save(tmp_path_factory)
    (path / "card.json").write_text(json.dumps({"val_bits_per_byte": 0.5}))
    main(["report", TEXT, "--model", str(path), "--out", "", "--threads", "1"])
    printed = capsys.readouterr().out
    assert "the model's validation text: 0.50" in printed and "warning: that is over 1.5x" in printed


def test_readme_example_is_in_domain_for_the_default_model():
    """The README's example text is one the default model predicts about as well as its validation text."""
    from lens_positions.summary import validation_bits_per_byte

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.search(r'bash scripts/report\.sh "([^"]+)"', readme).group(1)
    model = HookedIncrementTransformer.from_pretrained("bilingual-per-layer")
    result = compute_increments(model, example)
    result.val_bits_per_byte = validation_bits_per_byte("bilingual-per-layer")
    assert result.val_bits_per_byte is not None and not result.out_of_domain, result.bits_per_byte


def test_stdin_file_and_long_text(model_dir, tmp_path, capsys, monkeypatch):
    text_file = tmp_path / "t.txt"
    text_file.write_text("人工智能是一个分支。" * 5, encoding="utf-8")  # 150 bytes > n_ctx 64
    main(["report", "--file", str(text_file), "--model", str(model_dir), "--out", "", "--threads", "1"])
    captured = capsys.readouterr()
    assert "3 chunks" in captured.out and "split into 3 chunks" in captured.err
    # echo's final newline is not part of the text (so it cannot be the top boundary).
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\n"), encoding="utf-8"))
    main(["report", "--model", str(model_dir), "--out", "", "--threads", "1"])
    assert "10 characters, 10 bytes" in capsys.readouterr().out


def test_undecodable_bytes_get_the_same_error_from_every_source(model_dir, tmp_path, monkeypatch):
    bad = b"caf\xe9 au lait"  # Latin-1, not UTF-8
    expected = "not UTF-8 text (byte 0xe9 at offset 3"
    path = tmp_path / "latin1.txt"
    path.write_bytes(bad)
    with pytest.raises(SystemExit, match=re.escape(f"cannot read {path}: it is " + expected)):
        main(["report", "--file", str(path), "--model", str(model_dir)])
    # Python hands undecodable argv bytes over as lone surrogates; the CLI gets the bytes back.
    with pytest.raises(SystemExit, match=re.escape("cannot read TEXT: it is " + expected)):
        main(["report", os.fsdecode(bad), "--model", str(model_dir)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bad), encoding="utf-8"))
    with pytest.raises(SystemExit, match=re.escape("cannot read stdin: it is " + expected)):
        main(["report", "--model", str(model_dir)])
    with pytest.raises(SystemExit, match="lone surrogate"):
        main(["report", "ab\ud800", "--model", str(model_dir)])


def test_bad_input_gets_a_clear_error(model_dir, tmp_path):
    with pytest.raises(SystemExit, match="empty text"):
        main(["report", "   ", "--model", str(model_dir)])
    with pytest.raises(SystemExit, match="neither a checkpoint folder nor a shipped model"):
        main(["report", "hi", "--model", str(tmp_path / "absent")])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["report", "--file", str(tmp_path / "absent.txt"), "--model", str(model_dir)])
    existing = tmp_path / "keep.html"
    existing.write_text("old report")
    with pytest.raises(SystemExit):
        main(["report", "", "--model", str(model_dir), "--out", str(existing)])
    assert existing.read_text() == "old report"


def test_page_is_written_when_stdout_is_closed(model_dir, tmp_path):
    """`lens-positions report ... | head`: the reader may be gone before the summary is printed."""
    out = tmp_path / "piped.html"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lens_positions.cli", "report", TEXT, "--model", str(model_dir), "--out", str(out),
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )
    proc.stdout.close()  # the pipe is closed before the program writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert out.is_file() and "report-data" in out.read_text(encoding="utf-8")


def test_attention_round_trips_within_rounding(model_dir):
    model = HookedIncrementTransformer.from_pretrained(model_dir)
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    patterns = torch.stack([cache["pattern", layer][0] for layer in range(3)])
    packer = AttentionPacker()
    packer(0, patterns)
    for layer in range(3):
        back = unpack_attention(packer.blobs[0][layer], model.cfg.n_heads, tokens.shape[1])
        err = (back - patterns[layer]).abs()
        assert float(err.max()) <= 0.01 + 1e-6  # weights below the floor are dropped
        assert float(err[patterns[layer] >= 0.01].max()) <= 0.5 / 255 + 1e-6
        assert float(back.triu(1).abs().max()) == 0.0


def test_page_size_grows_linearly_beyond_one_context(model_dir):
    model = HookedIncrementTransformer.from_pretrained(model_dir)
    sizes = []
    for n in (2, 4, 8):  # contexts' worth of text (n_ctx 64)
        text = TEXT * (n + 1)  # 58 bytes a copy, 63 bytes a chunk
        packer = AttentionPacker()
        result = compute_increments(model, text, on_pattern=packer)
        assert result.n_chunks >= n
        sizes.append(len(build_report(model, result, "m", attention=packer.blobs).encode("utf-8")))
    fixed = sizes[0] - (sizes[1] - sizes[0])  # what does not grow with the text (script, style)
    assert sizes[2] - fixed <= 2.3 * (sizes[1] - fixed), sizes


def test_models_command_lists_shipped_models(capsys):
    from lens_positions.checkpoints import list_models

    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    for name in list_models():
        assert name in printed
    # variant names as the model names spell them; per_layer appears only as a Python argument
    assert "per_layer" not in printed.replace("increments='per_layer'", "") and "per-layer" in printed


def test_console_script_is_installed():
    exe = shutil.which("lens-positions") or str(Path(sys.executable).parent / "lens-positions")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "report" in result.stdout
    from lens_positions.cli import build_parser

    assert "``" not in build_parser().format_help()  # plain text, not reStructuredText


def test_generate_accepts_verbose_like_transformer_lens(model_dir):
    model = HookedIncrementTransformer.from_pretrained(model_dir)
    out = model.generate("ab", max_new_tokens=3, temperature=0, verbose=False, stop_at_separator=False)
    assert isinstance(out, str) and out.startswith("ab")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_a_page_of_text_renders_in_headless_chromium(tmp_path):
    """A page of English and Chinese (1.2 kB, several chunks) on the default model: at most 5 MB, drawn
    by Chromium in under 20 s with no script errors, every view present and answering the mouse."""
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "page.html"
    assert main(["report", "--file", str(EXAMPLE_PAGE), "--out", str(out), "--threads", "1"]) == 0
    assert out.stat().st_size <= 5_000_000, out.stat().st_size
    text = EXAMPLE_PAGE.read_text(encoding="utf-8").rstrip("\n")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(out.as_uri(), wait_until="load", timeout=90_000)
        page.wait_for_function("document.getElementById('att-status').textContent === ''", timeout=90_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True, timeout=90_000)
        assert page.locator("#chars .c").count() == len(text)  # the whole text, every chunk
        first = page.locator("#spaced text.ch").count()
        assert first > 6 * 200  # 6 layers of the first chunk (at least 200 characters each)
        # The per-character view wraps inside the page instead of running off it.
        assert page.evaluate("document.getElementById('chars').scrollWidth") <= 1300
        page.locator("#chars .c").nth(5).hover()
        assert "δ" in page.locator("#tip").inner_text() and "surprisal" in page.locator("#tip").inner_text()
        n_chunks = page.locator("#spaced-chunk option").count()
        assert n_chunks >= 3
        page.select_option("#spaced-chunk", str(n_chunks - 1))
        assert page.locator("#spaced text.ch").count() < first  # the short last chunk
        page.select_option("#att-layer", "3")
        page.select_option("#att-head", str(page.locator("#att-head option").count() - 1))  # mean of heads
        page.wait_for_function("document.getElementById('att-status').textContent === ''", timeout=90_000)
        drawn = page.evaluate(
            "(() => { const c = document.getElementById('att-canvas'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4)"
            " { if (d[i] < 200) n++; } return [c.width, n]; })()"
        )
        assert drawn[0] >= 200 and drawn[1] > drawn[0], drawn  # at least the diagonal is coloured
        page.locator("#att-text .a").nth(40).hover()
        assert page.locator("#att-text .a[style*='rgba']").count() > 10
        browser.close()
    assert not errors, errors
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_no_attention_leaves_the_view_out(model_dir, tmp_path):
    out = tmp_path / "small.html"
    main(["report", TEXT, "--model", str(model_dir), "--out", str(out), "--no-attention", "--threads", "1"])
    page = out.read_text(encoding="utf-8")
    assert _page_data(page)["att"] is None and "Attention patterns" not in page
