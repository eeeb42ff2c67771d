"""Page size and headless-Chromium render time of `lens-positions report` for 100 B, 1.2 kB and 5 kB.

    .venv/bin/python scripts/measure_report.py --out out/report_scale [--model NAME] [--timeout 120]

The texts are cut from `lens_positions/assets/example_page.txt` (English and Chinese, 1,206 bytes),
repeated for 5 kB, always at a character boundary. For each size it times the report command, the
page size, and the time from opening the page in Chromium to a finished full-page screenshot
with the attention view drawn (script errors are counted; the screenshots are kept beside the
pages). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "lens_positions" / "assets" / "example_page.txt"
SIZES = {"100B": 100, "1.2kB": 1206, "5kB": 5000}


def cut(text: str, n_bytes: int) -> str:
    """The longest prefix of ``text`` (repeated as needed) of at most ``n_bytes`` UTF-8 bytes."""
    while len(text.encode("utf-8")) < n_bytes:
        text = text + text
    out, size = [], 0
    for ch in text:
        size += len(ch.encode("utf-8"))
        if size > n_bytes:
            break
        out.append(ch)
    return "".join(out)


def render(path: Path, shot: Path, timeout_s: float) -> tuple[float | None, int, str]:
    """Seconds from navigation to a full-page screenshot (None on timeout), script errors, note."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        t0 = time.perf_counter()
        try:
            page.goto(path.as_uri(), wait_until="load", timeout=timeout_s * 1000)
            # The attention view is unpacked asynchronously: wait until it is drawn (older pages
            # have no such view and pass at once).
            page.wait_for_function(
                "!document.getElementById('att-status') || document.getElementById('att-status').textContent === ''",
                timeout=timeout_s * 1000,
            )
            page.screenshot(path=str(shot), full_page=True, timeout=timeout_s * 1000)
        except Exception as e:  # noqa: BLE001 - a timeout is a measurement, not a failure
            browser.close()
            return None, len(errors), type(e).__name__
        seconds = time.perf_counter() - t0
        browser.close()
    return seconds, len(errors), "; ".join(errors[:2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/report_scale")
    parser.add_argument("--model", default=None, help="model for the report (default: the CLI's)")
    parser.add_argument("--timeout", type=float, default=120.0, help="render time-out in seconds")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of " + ",".join(SIZES))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    page_text = PAGE.read_text(encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = ["| text | bytes | report command s | page MB | render s | script errors |", "|---|---|---|---|---|---|"]
    for name in args.sizes.split(","):
        text_file = out / f"text_{name}.txt"
        text_file.write_text(cut(page_text, SIZES[name]), encoding="utf-8")
        html = out / f"report_{name}.html"
        cmd = [sys.executable, "-m", "lens_positions.cli", "report", "--file", str(text_file),
               "--out", str(html), "--threads", "1"] + (["--model", args.model] if args.model else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        gen = time.perf_counter() - t0
        seconds, n_errors, note = render(html, out / f"report_{name}.png", args.timeout)
        shown = f"{seconds:.1f}" if seconds is not None else f"> {args.timeout:.0f} ({note})"
        rows.append(f"| {name} | {len(text_file.read_bytes())} | {gen:.1f} | {html.stat().st_size / 1e6:.2f} | "
                    f"{shown} | {n_errors}{' ' + note if n_errors else ''} |")
        print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
