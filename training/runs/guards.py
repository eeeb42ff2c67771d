"""The guarantees every training run gives, written once for the byte trainer and the graft.

A run lives in one folder: ``checkpoint.pt`` (`training.runs.checkpointing`), ``metrics.jsonl``
and, once finished, its model (``final/`` for the byte trainer, ``adapter/`` for the graft).

- **Resume.** A folder that holds a run is continued only when asked (``--resume``), and only
  with the settings it was started with: `open_run_folder` refuses a folder that is a file, is
  unwritable, holds another kind of run, or holds a run while ``resume`` is false;
  `refuse_differences` names every setting that differs. Batches are a pure function of the step
  (`training.tokens.windows.train_batch`) and the checkpoint holds every RNG state, so a resumed
  run computes what the uninterrupted one does (bit for bit on CPU).
- **Non-finite loss.** `check_finite` stops a run before the optimizer step that a NaN/Inf loss
  or gradient norm would poison, with `NonFiniteLossError` naming the update; the checkpoint on
  disk is then the last good state (`last_good_note` says which).
- **Records.** Each start and resume appends an `invocation` (event, step, time, command) to the
  run's history; the card lists them (`training.runs.cards.invocation_lines`), so a resumed run says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lens_positions.atomic import output_problem
from training.runs import checkpointing
from training.runs.cards import utc_now

__all__ = [
    "NonFiniteLossError", "ResumeError", "check_finite", "differences", "invocation",
    "last_good_note", "open_run_folder", "refuse_differences",
]


class ResumeError(ValueError):
    """A run folder cannot take the requested run (it holds another, or other settings)."""


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/Inf; the run stopped without saving past it."""

    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str):
        self.step = step
        super().__init__(
            f"non-finite loss at step {step} (loss={loss}, grad_norm={grad_norm}); "
            f"training stopped. {checkpoint}"
        )


def open_run_folder(out: Path, *, resume: bool, finished: Path, kind: str,
                    say: Any = print) -> dict[str, Any] | None:
    """Check ``out`` before any work; return the checkpoint to continue from, if any.

    ``finished`` is the file a finished run leaves (its card); ``kind`` tags the checkpoints of
    one trainer (checkpoints without a tag are the byte trainer's, ``"train"``).
    """
    if problem := output_problem(out):
        raise ResumeError(f"--out {out}: {problem}: choose another --out")
    ckpt_path = out / checkpointing.CHECKPOINT_NAME
    if not resume:
        if ckpt_path.is_file() or finished.is_file():
            raise ResumeError(f"{out} already holds a run; pass --resume to continue it "
                              "or choose another --out")
        return None
    if not ckpt_path.is_file():
        say(f"no checkpoint in {out}: starting from step 0")
        return None
    ckpt = checkpointing.load_checkpoint(ckpt_path)
    if ckpt.get("kind", "train") != kind:
        raise ResumeError(f"{ckpt_path} is a checkpoint of a {ckpt.get('kind', 'train')!r} run, "
                          f"not of a {kind!r} run: choose another --out")
    return ckpt


def differences(stored: dict[str, Any], requested: dict[str, Any], runtime: set[str]) -> list[str]:
    """``name: checkpoint X vs requested Y`` for each setting outside ``runtime`` that differs."""
    names = sorted((set(stored) | set(requested)) - runtime)
    return [f"{k}: checkpoint {stored.get(k)!r} vs requested {requested.get(k)!r}"
            for k in names if stored.get(k) != requested.get(k)]


def refuse_differences(path: Path, diffs: list[str], runtime: set[str]) -> None:
    """Raise `ResumeError` naming ``diffs`` (nothing when there are none)."""
    if diffs:
        raise ResumeError(
            f"{path} was written with other settings; resume with the same ones "
            f"(only {', '.join(sorted(runtime))} may change): " + "; ".join(diffs)
        )


def check_finite(step: int, loss: float, grad_norm: float, note: str) -> None:
    """Raise `NonFiniteLossError` for update ``step`` unless both numbers are finite."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise NonFiniteLossError(step, loss, grad_norm, note)


def last_good_note(ckpt_path: Path, step: int | None) -> str:
    """What is kept after a stop: the last checkpoint written, or that none was."""
    if step is None:
        return "No checkpoint was written before it."
    return f"The last good checkpoint (step {step}) is kept at {ckpt_path}."


def invocation(event: str, step: int, command: str, **extra: Any) -> dict[str, Any]:
    """One entry of a run's history: ``start`` or ``resume``, at which step, by which command."""
    return {"event": event, "step": step, "time": utc_now(), "command": command, **extra}
