"""Training and validation windows over a token array.

Training windows are `n_ctx + 1` tokens (input + next-token target) starting at random offsets;
they may cross document boundaries. A batch is a pure function of (seed, step, rank,
world_size), with no generator state carried between steps, so a resumed run only needs the step:

- the GLOBAL batch of step s (batch_size * world_size start offsets, drawn without replacement)
  comes from `np.random.default_rng(SeedSequence([seed, s]))`;
- rank r takes rows [r * batch_size, (r + 1) * batch_size) of it, so ranks never share a window
  of the same step, and the stream does not depend on how the global batch is divided;
- DataLoader worker w of W (see `TrainWindows`) produces the steps s with s % W == w, so workers
  never produce the same batch and the DataLoader, which polls workers round-robin, returns the
  batches in step order, identical to calling `train_batch` for each step in the main process.

Worker and rank ids thus select disjoint parts of one stream instead of seeding separate
streams; the reference's bug (two workers seeded alike, every window seen twice) cannot occur.

Validation windows are fixed: window k covers tokens [k * n_ctx, k * n_ctx + n_ctx + 1), so
consecutive windows share one token and every token after the first is a target exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from training.tokens.byte_tokens import load_tokens


def _check_fits(n_tokens: int, n_ctx: int) -> None:
    if n_tokens < n_ctx + 1:
        raise ValueError(f"{n_tokens} tokens cannot hold one window of n_ctx + 1 = {n_ctx + 1}")


def global_batch_starts(
    step: int, global_batch: int, n_tokens: int, n_ctx: int, seed: int
) -> np.ndarray:
    """Start offsets of all ranks' windows at `step`: int64 [global_batch], distinct if possible."""
    _check_fits(n_tokens, n_ctx)
    n_starts = n_tokens - n_ctx  # window [s, s + n_ctx] must end inside the array
    rng = np.random.default_rng(np.random.SeedSequence([seed, step]))
    replace = global_batch > n_starts  # only on toy corpora smaller than one global batch
    return rng.choice(n_starts, size=global_batch, replace=replace).astype(np.int64)


def batch_starts(
    step: int,
    batch_size: int,
    n_tokens: int,
    n_ctx: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Start offsets of this rank's windows at `step`: int64 [batch_size]."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    starts = global_batch_starts(step, batch_size * world_size, n_tokens, n_ctx, seed)
    return starts[rank * batch_size : (rank + 1) * batch_size]


def gather_windows(
    tokens: np.ndarray, starts: np.ndarray, n_ctx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows at `starts` as (x, y): int64 tensors [len(starts), n_ctx], y = x shifted by one."""
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(n_ctx + 1)
    windows = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # [B, n_ctx + 1]
    # Contiguous copies, so callers may .view(-1) them (nanoGPT-style loss code does).
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def train_batch(
    tokens: np.ndarray,
    step: int,
    batch_size: int,
    n_ctx: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's training batch for `step`: (x, y) int64 [batch_size, n_ctx].

    tokens: uint16 [n_tokens], e.g. `load_tokens(data_dir, "train")`.
    Deterministic in (seed, step, rank, world_size, batch_size, n_ctx, tokens).
    """
    starts = batch_starts(
        step, batch_size, len(tokens), n_ctx, seed=seed, rank=rank, world_size=world_size
    )
    return gather_windows(tokens, starts, n_ctx)


def worker_steps(
    start_step: int, end_step: int | None, worker_id: int, num_workers: int
) -> Iterator[int]:
    """Steps that DataLoader worker `worker_id` of `num_workers` produces, in order."""
    step = start_step + worker_id
    while end_step is None or step < end_step:
        yield step
        step += num_workers


class TrainWindows(IterableDataset):
    """Training batches for steps [start_step, end_step) as an IterableDataset.

    Use with `DataLoader(ds, batch_size=None, num_workers=W)`: each item is one batch
    (x, y) int64 [batch_size, n_ctx], equal to `train_batch(tokens, step, ...)` for consecutive
    steps from `start_step`; to resume at step k, build it with `start_step=k`.
    The token file is opened in each worker (a memmap must not be pickled into workers).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        batch_size: int,
        n_ctx: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        end_step: int | None = None,
        split: str = "train",
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size, self.n_ctx, self.seed = batch_size, n_ctx, seed
        self.rank, self.world_size = rank, world_size
        self.start_step, self.end_step, self.split = start_step, end_step, split

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        tokens = load_tokens(self.data_dir, self.split)
        for step in worker_steps(self.start_step, self.end_step, worker_id, num_workers):
            yield train_batch(
                tokens,
                step,
                self.batch_size,
                self.n_ctx,
                seed=self.seed,
                rank=self.rank,
                world_size=self.world_size,
            )


def val_starts(
    n_tokens: int, n_ctx: int, max_windows: int | None = None, spread: bool = False
) -> np.ndarray:
    """Start offsets of the fixed validation windows: int64 [K], K = min(max_windows, fit).

    The windows are the first K of the tiling, or with `spread` K tiles evenly spaced over all
    of it (the same tiles every time: a subset of the full evaluation's windows).
    """
    _check_fits(n_tokens, n_ctx)
    fit = (n_tokens - 1) // n_ctx
    count = fit if max_windows is None else min(fit, max_windows)
    if spread and count < fit:
        return (np.arange(count, dtype=np.int64) * fit // count) * n_ctx
    return np.arange(count, dtype=np.int64) * n_ctx


def val_batches(
    tokens: np.ndarray,
    n_ctx: int,
    batch_size: int,
    *,
    max_windows: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    spread: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validation batches (x, y) int64 [<= batch_size, n_ctx] over the fixed windows.

    tokens: uint16 [n_tokens], e.g. `load_tokens(data_dir, "val")`. With world_size > 1 rank r
    takes windows r, r + world_size, ...; together the ranks cover each window once.
    """
    starts = val_starts(len(tokens), n_ctx, max_windows, spread)[rank::world_size]
    for i in range(0, len(starts), batch_size):
        yield gather_windows(tokens, starts[i : i + batch_size], n_ctx)
