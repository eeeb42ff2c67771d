"""Atomic writes: the target is its old content or its complete new content, never anything else."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from lens_positions.atomic import (
    atomic_open,
    atomic_path,
    temp_files,
    write_json_atomic,
    write_text_atomic,
)


def test_writes_create_folders_and_ordinary_permissions(tmp_path):
    path = write_text_atomic(tmp_path / "a" / "b" / "note.md", "hello\n")
    assert path.read_text() == "hello\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    write_json_atomic(tmp_path / "x.json", {"名": [1, 2]})
    assert (tmp_path / "x.json").read_text(encoding="utf-8") == '{\n  "名": [\n    1,\n    2\n  ]\n}\n'
    with atomic_open(tmp_path / "blob.bin", "wb", fsync=True) as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert not temp_files(path) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "RESULTS.md"
    path.write_text("history\n")
    with pytest.raises(error):
        with atomic_open(path) as f:
            f.write("half of the new")
            raise error("interrupted")
    assert path.read_text() == "history\n"
    assert temp_files(path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.md"]


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_text("old\n")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n" and temp_files(path) == []


def test_the_temporary_keeps_the_suffix_so_writers_pick_the_format(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "figure.png"
    with atomic_path(path) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".figure.")
        fig.savefig(tmp)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode must start with 'w'"):
        with atomic_open(tmp_path / "log.txt", "a"):
            pass


def test_the_module_loads_without_torch():
    """`import lens_positions.atomic` (used by the data pipeline) does not pull in torch/TL."""
    code = "import sys, lens_positions.atomic; print('torch' in sys.modules, 'transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
