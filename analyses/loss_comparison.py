"""Final validation loss per variant, and training/validation curves, from run folders.

    python -m analyses.loss_comparison [--runs runs/compare/*] --out figs/

Reads what `training.train` leaves in each run folder (`lens_positions.runs`): ``final/card.json``
(the measured final validation loss) and ``metrics.jsonl`` (the curves); a model folder (the
shipped models, the default ``--runs``) holds the same two files. A run that has not finished yet
is reported from its latest evaluation and marked ``finished = False``. Folders without a metrics
file (e.g. a summary file matched by the glob) are skipped with a warning.

The table has one row per run: variant, steps, tokens seen, final val loss (nats/byte) and bits
per byte, their differences from the ``none`` (integer RoPE) run (negative means the variant
predicts better) and, for runs whose corpus has an out-of-domain split, ``ood_loss`` and
``ood_bpb``. The reference's differences were 0.001-0.005 nats at 50k steps, so differences of
that size between single short runs are noise-sized.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analyses._common import InputError, Result, command_main
from lens_positions.checkpoints import list_models
from lens_positions.runs import (
    METRICS_FILE,
    VARIANT_ORDER,
    RunData,
    compare_runs,
    format_table,
    load_run,
)

#: This module runs on run folders, not on a model (`analyses._common.invoke` passes None).
NEEDS_MODEL = False

def curves(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Long table of every run's curves: run, variant, split (train/val), step, tokens, loss."""
    frames = []
    for run in (load_run(d) for d in run_dirs):
        tokens_per_step = None
        train = run.of_kind("train")
        if not train.empty:
            tokens_per_step = (train["tokens"] / train["step"]).iloc[-1]
            frames.append(pd.DataFrame({
                "run": run.name, "variant": run.variant, "split": "train", "step": train["step"],
                "tokens": train["tokens"], "loss": train["loss"],
            }))
        val = pd.concat([run.of_kind("eval"), run.of_kind("final")], ignore_index=True)
        if not val.empty:
            frames.append(pd.DataFrame({
                "run": run.name, "variant": run.variant, "split": "val", "step": val["step"],
                "tokens": val["step"] * (tokens_per_step or 0), "loss": val["val_loss"],
            }))
    if not frames:
        return pd.DataFrame(columns=["run", "variant", "split", "step", "tokens", "loss"])
    return pd.concat(frames, ignore_index=True).sort_values(["run", "split", "step"]).reset_index(drop=True)


def plot_curves(data: pd.DataFrame, smooth: int = 10) -> Any:
    """Figure: training loss (rolling mean over ``smooth`` records) and validation loss by step."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, split, title in ((axes[0], "train", "training loss"), (axes[1], "val", "validation loss")):
        part = data[data["split"] == split]
        tails = []
        for run, group in part.groupby("run", sort=False):
            group = group.sort_values("step")
            loss = group["loss"].rolling(smooth, min_periods=1).mean() if split == "train" else group["loss"]
            label = f"{group['variant'].iloc[0]} ({run})" if run != group["variant"].iloc[0] else run
            ax.plot(group["step"], loss, label=label, marker="o" if split == "val" else None, markersize=3)
            # Zoom on the part where variants differ: from 10% of the run on.
            late = loss[group["step"] >= 0.1 * group["step"].max()]
            if len(late):
                tails.append((late.min(), late.max()))
        if tails:
            low, high = min(t[0] for t in tails), max(t[1] for t in tails)
            pad = 0.05 * max(high - low, 1e-3)
            ax.set_ylim(low - pad, high + pad)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/byte)")
        ax.grid(alpha=0.3)
        if len(part):
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def expand_runs(patterns: list[str]) -> list[Path]:
    """Run folders from paths or glob patterns (shells that do not expand globs pass them on)."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths.extend(Path(m) for m in matches)
    runs = []
    for p in paths:
        if (p / METRICS_FILE).is_file():
            runs.append(p)
        elif p.is_dir() or not p.exists():
            print(f"warning: skipping {p}: no {METRICS_FILE}", file=sys.stderr)
    return runs


def shipped_runs() -> list[str]:
    """The shipped models' folders (each keeps its training run's card and metrics)."""
    return [str(path) for path in list_models().values()]


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    runs: list[str] | None = None  # None: the shipped models
    smooth: int = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analyses.loss_comparison", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", nargs="+", default=None,
        help="run or model folders (globs allowed; default: the shipped models)",
    )  # fmt: skip
    parser.add_argument("--out", default="figs", help="folder for the table and figure")
    parser.add_argument("--smooth", type=int, default=10, help="training-loss rolling window (records)")
    return parser


def run(model: None, params: Params) -> Result:
    """The comparison table (loss_comparison, also as loss_comparison.md) and the loss curves."""
    runs = expand_runs(params.runs if params.runs is not None else shipped_runs())
    if not runs:
        raise InputError("no run folders found")
    table = compare_runs(runs)
    text = format_table(table)
    return Result(
        text,
        tables={"loss_comparison": table},
        figures={"loss_curves": plot_curves(curves(runs), smooth=params.smooth)},
        pages={"loss_comparison.md": text + "\n"},
        facts={"runs": [str(r) for r in runs], "ood": "ood_loss" in table.columns},
    )


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("loss_comparison", argv)


__all__ = [
    "METRICS_FILE", "VARIANT_ORDER", "Params", "RunData", "build_parser", "compare_runs", "curves",
    "expand_runs", "format_table", "load_run", "main", "plot_curves", "run", "shipped_runs",
]  # fmt: skip


if __name__ == "__main__":
    main()
