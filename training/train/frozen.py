"""The frozen-deltas variant's table: per-token δ taken from a trained shared model.

``--frozen-from DIR`` accepts a `save_pretrained` folder or a run folder (its ``final/``
model is used). The source must be a ``shared`` model (trained, or itself frozen); its
`byte_deltas()` — δ of every token id from identity alone — becomes a fixed lookup table.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from lens_positions import HookedIncrementTransformer, IncrementConfig
from lens_positions.checkpoints import CONFIG_FILE, load_config
from lens_positions.runs import FINAL_DIR as FINAL_NAME  # a run's finished model folder


def source_folder(path: str | os.PathLike) -> Path:
    """The model folder behind ``path``: itself, or ``path/final`` for a run folder."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / FINAL_NAME / CONFIG_FILE).is_file():
        return path / FINAL_NAME
    raise FileNotFoundError(
        f"{path}: no trained model there (expected {CONFIG_FILE} in it or in {FINAL_NAME}/); "
        "train the shared variant first"
    )


def source_config(path: str | os.PathLike) -> IncrementConfig:
    """Config of the source model, checked to be a shared-increment model."""
    cfg = load_config(source_folder(path))
    if cfg.increments != "shared":
        raise ValueError(
            f"{path}: frozen deltas come from a shared-increment model, but this one is "
            f"{cfg.variant_name!r}"
        )
    return cfg


def frozen_table(path: str | os.PathLike) -> Tensor:
    """δ per token id of the source model: [d_vocab] (or [d_vocab, n_heads] with per-head rates)."""
    source_config(path)
    model = HookedIncrementTransformer.from_pretrained(source_folder(path))
    return model.byte_deltas().float().cpu()
