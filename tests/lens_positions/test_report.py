"""The main job: `lens-positions report` and `lens-positions models`, and the HTML in a browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lens_positions import HookedIncrementTransformer
from lens_positions.cli import main

from ..conftest import perturb_deltas, small_config

TEXT = "Marie Curie won two prizes. 人工智能是一个分支。"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    perturb_deltas(HookedIncrementTransformer(small_config("per_layer", n_ctx=64))).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def report_html(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", TEXT, "--model", str(model_dir), "--out", str(out), "--threads", "1"]) == 0
    return out


def test_report_prints_a_summary_per_layer(model_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    main(["report", TEXT, "--model", str(model_dir), "--out", str(out), "--threads", "1"])
    printed = capsys.readouterr().out
    for layer in range(3):
        assert re.search(rf"layer {layer}: mean δ \d\.\d{{3}}", printed)
    assert printed.count("strongest boundaries: …") == 3 and "⟦" in printed
    assert f"report written to {out}" in printed


def test_report_html_is_self_contained(report_html):
    page = report_html.read_text(encoding="utf-8")
    assert "人" in page and "Per-character increments" in page and "δ per layer" in page
    assert page.count("<iframe") == 2 and "&lt;svg" in page  # spaced text and attention sub-pages
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", page)
    assert "unpkg.com" not in page and 'from "http' not in page


def test_stdin_file_and_long_text(model_dir, tmp_path, capsys, monkeypatch):
    text_file = tmp_path / "t.txt"
    text_file.write_text("人工智能是一个分支。" * 5, encoding="utf-8")  # 150 bytes > n_ctx 64
    main(["report", "--file", str(text_file), "--model", str(model_dir), "--out", "", "--threads", "1"])
    captured = capsys.readouterr()
    assert "3 chunks" in captured.out and "split into 3 chunks" in captured.err
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    main(["report", "--model", str(model_dir), "--out", "", "--threads", "1"])
    assert "10 characters" in capsys.readouterr().out


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


def test_models_command_lists_shipped_models(capsys):
    from lens_positions.checkpoints import list_models

    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    for name in list_models():
        assert name in printed


def test_console_script_is_installed():
    exe = shutil.which("lens-positions") or str(Path(sys.executable).parent / "lens-positions")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "report" in result.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(report_html):
    """Open the report in Debian's Chromium: no script errors, every view present, a screenshot."""
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(report_html.as_uri())
        page.wait_for_timeout(1500)
        frames = page.frames
        spaced = next(f for f in frames if f.query_selector("svg.spaced"))
        assert spaced.locator("svg.spaced text.ch").count() > 30  # characters drawn in the SVG
        attention = next(f for f in frames if f.query_selector("text=Head Selector"))
        assert attention.locator("text=L2H3").count() >= 1  # circuitsvis rendered every head
        assert page.locator(".row .c").count() == 3 * 38  # per-character view, 3 layers
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000
