"""Final validation loss per variant, and training/validation curves, from run folders.

    python -m analyses.loss_comparison --runs runs/compare/* --out figs/

Reads what `training.train` leaves in each run folder: ``final/card.json`` (the measured final
validation loss) and ``metrics.jsonl`` (the curves). A run that has not finished yet is
reported from its latest evaluation and marked ``finished = False``. Folders without a metrics
file (e.g. a summary file matched by the glob) are skipped with a warning.

The table has one row per run: variant, steps, tokens seen, final val loss (nats/byte) and bits
per byte, and their differences from the ``none`` (integer RoPE) run; negative means the
variant predicts better. The reference's differences were 0.001-0.005 nats at 50k steps, so
differences of that size between single short runs are noise-sized.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analyses._common import markdown_table, save_figure, save_table
from lens_positions.atomic import write_text_atomic

#: Display order of variants (others follow alphabetically).
VARIANT_ORDER = (
    "none", "shared", "shared-per-head", "per-layer", "per-layer-per-head", "frozen", "frozen-per-head",
)
METRICS_FILE = "metrics.jsonl"
CARD_FILE = Path("final") / "card.json"
LN2 = 0.6931471805599453


@dataclass
class RunData:
    """One run folder: its variant, card (None until finished) and metric records."""

    path: Path
    variant: str
    card: dict[str, Any] | None
    records: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    def of_kind(self, kind: str) -> pd.DataFrame:
        rows = [r for r in self.records if r.get("kind") == kind]
        return pd.DataFrame(rows)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (raises FileNotFoundError without ``metrics.jsonl``)."""
    path = Path(run_dir)
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{path}: no {METRICS_FILE}; not a training run folder")
    records = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a killed run
            continue
    card_path = path / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    variant = card["variant"] if card else next(
        (r["variant"] for r in records if r.get("kind") == "event" and "variant" in r), path.name
    )
    return RunData(path, variant, card, records)


def _variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def _final_row(run: RunData) -> dict[str, Any]:
    if run.card is not None:
        final = run.card["final"]
        return {
            "run": run.name, "variant": run.variant, "finished": True, "steps": run.card["steps"],
            "tokens_seen": run.card["tokens_seen"], "val_loss": final["val_loss"],
            "val_bpb": final["val_bpb"], "wall_time_min": run.card["wall_time_s"] / 60,
        }
    evals = [r for r in run.records if r.get("kind") in ("eval", "final")]
    trains = [r for r in run.records if r.get("kind") == "train"]
    last_eval = evals[-1] if evals else {}
    return {
        "run": run.name, "variant": run.variant, "finished": False,
        "steps": last_eval.get("step", trains[-1]["step"] if trains else 0),
        "tokens_seen": trains[-1]["tokens"] if trains else 0,
        "val_loss": last_eval.get("val_loss", float("nan")),
        "val_bpb": last_eval.get("val_bpb", float("nan")),
        "wall_time_min": (trains[-1]["elapsed_s"] / 60) if trains else float("nan"),
    }


def compare_runs(run_dirs: list[str | Path]) -> pd.DataFrame:
    """One row per run: final val loss / bits per byte and the difference from ``none``.

    Columns: run, variant, finished, steps, tokens_seen, val_loss, val_bpb, delta_loss_vs_none,
    delta_bpb_vs_none, wall_time_min. With several ``none`` runs their mean is the reference;
    without one the differences are NaN.
    """
    runs = [load_run(d) for d in run_dirs]
    df = pd.DataFrame([_final_row(r) for r in runs])
    if df.empty:
        return df
    reference = df.loc[df["variant"] == "none", "val_loss"]
    ref_loss = reference.mean() if len(reference) else float("nan")
    df["delta_loss_vs_none"] = df["val_loss"] - ref_loss
    df["delta_bpb_vs_none"] = df["delta_loss_vs_none"] / LN2
    df = df[[
        "run", "variant", "finished", "steps", "tokens_seen", "val_loss", "val_bpb",
        "delta_loss_vs_none", "delta_bpb_vs_none", "wall_time_min",
    ]]
    order = sorted(range(len(df)), key=lambda i: (_variant_rank(df["variant"].iloc[i]), df["run"].iloc[i]))
    return df.iloc[order].reset_index(drop=True)


def format_table(df: pd.DataFrame) -> str:
    """The comparison as a Markdown table."""
    return markdown_table(df, formats={
        "val_loss": ".4f", "val_bpb": ".4f", "delta_loss_vs_none": "+.4f",
        "delta_bpb_vs_none": "+.4f", "wall_time_min": ".1f", "tokens_seen": lambda v: f"{int(v):,}",
    })


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
    import matplotlib

    matplotlib.use("Agg")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyses.loss_comparison", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run folders (globs allowed)")
    parser.add_argument("--out", default="figs", help="folder for the table and figure")
    parser.add_argument("--smooth", type=int, default=10, help="training-loss rolling window (records)")
    args = parser.parse_args(argv)
    runs = expand_runs(args.runs)
    if not runs:
        print("error: no run folders found", file=sys.stderr)
        return 2
    table = compare_runs(runs)
    text = format_table(table)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "loss_comparison.md", text + "\n")
    save_table(table, out, "loss_comparison")
    fig = plot_curves(curves(runs), smooth=args.smooth)
    paths = save_figure(fig, out, "loss_curves", formats=("png",))
    print(f"wrote {out / 'loss_comparison.md'}, {out / 'loss_comparison.csv'}, {paths[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
