"""Run metrics: the JSON-lines log, optional TensorBoard mirror, and increment statistics.

Every record in ``metrics.jsonl`` is one JSON object with a ``kind`` and a ``step`` (optimizer
updates completed when it was written):

- ``train``: loss (nats/byte, mean over the updates since the previous record, all ranks),
  ``bpb`` (= loss / ln 2), ``lr`` and ``grad_norm`` (pre-clipping, of the latest update),
  ``tokens`` (seen so far, all ranks), ``tokens_per_s`` (since the previous record, training
  time only), ``elapsed_s``;
- ``eval``: ``val_loss``, ``val_bpb``, ``val_tokens``, ``val_windows`` and ``delta``: one entry
  per layer with the mean / std / min / max of δ over a fixed validation sample (and, with
  per-head rates, ``head_mean``); with an out-of-domain split in the token folder also
  ``ood_loss`` (nats/byte), ``ood_bpb``, ``ood_tokens``, ``ood_windows`` (periodic evaluations
  take their windows evenly spaced over that split);
- ``final``: the final evaluation (all windows unless configured otherwise);
- ``event``: start, resume, stop (with a ``message``).

On resume the log is cut back to the checkpoint's step, so the file always describes one
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lens_positions.atomic import write_text_atomic
from lens_positions.runs import LN2, bits_per_byte, read_metrics
from lens_positions.runs import METRICS_FILE as METRICS_NAME

__all__ = [
    "LN2", "METRICS_NAME", "MetricsLog", "bits_per_byte", "delta_stats", "read_metrics", "say",
    "truncate_metrics",
]  # fmt: skip


class MetricsLog:
    """Appends records to ``metrics.jsonl`` (and TensorBoard scalars when enabled)."""

    def __init__(self, folder: str | os.PathLike, tensorboard: bool | None = None):
        """tensorboard: True = required, None = use it if installed, False = off."""
        self.path = Path(folder) / METRICS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = (
            _open_tensorboard(Path(folder) / "tensorboard") if tensorboard is not False else None
        )
        if tensorboard and self._tb is None:
            raise RuntimeError("TensorBoard was requested but `tensorboard` is not installed")

    def write(self, record: dict[str, Any]) -> None:
        # One write per line plus flush: a kill mid-run loses at most the line being written,
        # which `truncate_metrics` drops on resume.
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            self._write_tensorboard(record)

    def _write_tensorboard(self, record: dict[str, Any]) -> None:
        step, kind = record.get("step", 0), record.get("kind")
        for key, value in record.items():
            if (
                key not in ("step", "kind")
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                self._tb.add_scalar(f"{kind}/{key}", value, step)
        for layer in record.get("delta", []):
            for stat in ("mean", "std", "min", "max"):
                self._tb.add_scalar(f"delta/L{layer['layer']}_{stat}", layer[stat], step)
        self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _open_tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(folder))


def truncate_metrics(folder: str | os.PathLike, step: int) -> int:
    """Drop records written after ``step`` (work lost with a killed process) and any ``final``
    record; return how many were dropped."""
    path = Path(folder) / METRICS_NAME
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        # A final evaluation is redone by the resumed run, so an earlier one would be a duplicate.
        if record.get("step", 0) <= step and record.get("kind") != "final":
            kept.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in kept))
    return len(lines) - len(kept)


@torch.no_grad()
def delta_stats(deltas: Tensor) -> list[dict[str, Any]]:
    """Per-layer statistics of δ [n_layers, batch, pos(, heads)] as JSON-ready dicts."""
    out = []
    for layer, d in enumerate(deltas.float()):
        entry = {
            "layer": layer,
            "mean": d.mean().item(),
            "std": d.std().item() if d.numel() > 1 else 0.0,
            "min": d.min().item(),
            "max": d.max().item(),
        }
        if d.ndim == 3:  # per-head rates: [batch, pos, heads]
            entry["head_mean"] = [round(v, 6) for v in d.mean(dim=(0, 1)).tolist()]
        out.append(entry)
    return out


def say(message: str) -> None:
    """Print a status line without breaking an active progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
