"""The checkout fits what travels to the GPU machine: tracked files under 64 MiB in all
(REFERENCE §10; a device call carries the working tree and refuses a larger one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_LIMIT = 64 << 20


def test_tracked_tree_fits_the_device_payload():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / n for n in names.decode().split("\0") if n]
    sizes = {f: f.stat().st_size for f in files if f.is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    assert total < DEVICE_LIMIT, (
        f"tracked files take {total / 2**20:.1f} MiB, over the {DEVICE_LIMIT >> 20} MiB a device call "
        "carries; largest: " + ", ".join(f"{f.relative_to(ROOT)} ({sizes[f] / 2**20:.1f} MiB)" for f in biggest)
    )
