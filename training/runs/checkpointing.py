"""Training checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint is one torch file (``checkpoint.pt`` in the run folder) holding the model,
optimizer and scheduler state dicts, every random-number generator's state (python, numpy,
torch CPU, and CUDA when present), the step (which is also the data position: training batches
are a pure function of the step, see `training.tokens.windows`), and the run's bookkeeping.

Writing goes to a temporary file in the same folder, which is flushed, fsync'ed and then renamed
over the previous checkpoint with `os.replace`; a crash at any moment therefore leaves either the
old complete checkpoint or the new complete one, never a partial file. Loading uses
``torch.load(weights_only=True)``: RNG states are stored as tensors and plain Python values so a
checkpoint cannot run code when it is read.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lens_positions.atomic import atomic_open, temp_files

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "lens_positions.train-checkpoint/v1"


class TrainCheckpointError(RuntimeError):
    """A training checkpoint is missing, unreadable, or from another kind of run."""


# ---------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """States of the python, numpy, torch and (if initialised) CUDA generators."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": _python_state_to_lists(random.getstate()),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states only where CUDA is available)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        # A run resumed on fewer GPUs restores the generators it has.
        for index in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[index], index)


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


# ---------------------------------------------------------------------------------------- files
def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format tag) to ``path`` atomically; return the path."""
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, **payload}, f)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise TrainCheckpointError(f"{path}: no training checkpoint there")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise TrainCheckpointError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise TrainCheckpointError(
            f"{path}: not a training checkpoint of this project (format {found!r})"
        )
    return payload


def stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temporary checkpoint files left in ``folder`` by a process killed while writing."""
    return temp_files(Path(folder) / CHECKPOINT_NAME)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete what `stale_temp_files` finds (call only when no other process writes there)."""
    stale = stale_temp_files(folder)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
