"""Atomic file writes: a file is either its old self or its complete new self, never half-written.

Everything the project writes (checkpoint cards, reports, result tables, figures, benchmark
histories, token metadata) goes through here. Each write goes to a temporary file beside the
target, in the same folder so that the final rename cannot cross filesystems, and is renamed over
the target only once it is complete; an error or an interrupt (Ctrl-C included) removes the
temporary file and leaves the old target as it was.

The temporary name keeps the target's suffix (``.report.k3j9.tmp.png``) because some writers,
matplotlib's ``savefig`` for one, choose the format from the file name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open", "atomic_path", "output_problem", "temp_files", "write_json_atomic",
    "write_text_atomic",
]


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; rename it over ``path`` on success.

    The parent folder is created if missing. With ``fsync`` the data (and then the folder entry)
    are flushed to disk before and after the rename, for files that must survive a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        if fsync:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


@contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", fsync: bool = False
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose result replaces ``path`` only when the block ends without error."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode must start with 'w', got {mode!r}")
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, not ASCII-escaped, trailing newline) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")
    return Path(path)


def output_problem(path: str | os.PathLike, kind: str = "folder") -> str | None:
    """Why ``path`` cannot be written as an output ``kind`` (``"folder"`` or ``"file"``), or None.

    Commands call it before their work starts, so that a bad ``--out`` (an existing file where a
    folder is wanted or the reverse, or a place that cannot be written) fails at once instead of
    after the work is done. The nearest existing folder is tried with a real temporary file:
    permission bits say nothing to root, and pseudo-filesystems such as ``/proc`` refuse files.
    """
    target = Path(path)
    if kind == "folder" and target.exists() and not target.is_dir():
        return "is a file, not a folder"
    if kind == "file" and target.is_dir():
        return "is a folder, not a file"
    probe = target if kind == "folder" else target.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return f"{probe} cannot be written ({e.strerror or e})"
    return None


def temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of ``path`` left behind by a process killed while writing it."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))


def _fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
