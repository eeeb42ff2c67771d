"""Run folders and model folders: their file names, the metrics log, cards, bits per byte.

One home for what training writes and the analyses read, so that neither re-declares it:

- a *training run folder* (`training.train`) holds ``metrics.jsonl`` (one JSON record per line,
  see `training.runs.metrics`), checkpoints, and once finished ``final/`` (the model, with
  ``card.json`` and ``card.md``);
- a *model folder* (``save_pretrained``, the shipped models) holds ``config.json``,
  ``model.safetensors``, ``card.md`` and, for trained models, ``card.json`` and ``metrics.jsonl``.

`compare_runs` is the loss-comparison table of several run (or model) folders, used by
``training.train.compare`` at the end of a comparison and by ``analyses.loss_comparison``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only for the tables: `checkpoints` imports the file names
    import pandas as pd

METRICS_FILE = "metrics.jsonl"
CARD_JSON = "card.json"
CARD_MD = "card.md"
FINAL_DIR = "final"
LN2 = math.log(2.0)
#: The shipped model that commands use when none is named (``lens-positions``, the analyses).
DEFAULT_MODEL = "bilingual-per-layer"

#: Display order of the variants (`IncrementConfig.variant_name`); others follow alphabetically.
VARIANT_ORDER: tuple[str, ...] = (
    "none", "shared", "shared-per-head", "per-layer", "per-layer-per-head", "frozen",
    "frozen-per-head",
)  # fmt: skip


def bits_per_byte(loss_nats: float) -> float:
    """Cross-entropy per byte in bits (``loss / ln 2``)."""
    return loss_nats / LN2


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of a metrics file, or of ``FOLDER/metrics.jsonl`` (a torn last line
    from a killed run is skipped). Raises FileNotFoundError when there is no file."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def card_path(folder: str | os.PathLike) -> Path | None:
    """The ``card.json`` of a model folder or of a finished run folder (``final/card.json``)."""
    folder = Path(folder)
    for path in (folder / CARD_JSON, folder / FINAL_DIR / CARD_JSON):
        if path.is_file():
            return path
    return None


def read_card(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON card of a model or run folder, or None (unfinished run, untrained model)."""
    path = card_path(folder)
    return json.loads(path.read_text(encoding="utf-8")) if path is not None else None


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
        """The records of one ``kind`` (train, eval, final, event) as a table."""
        import pandas as pd

        return pd.DataFrame([r for r in self.records if r.get("kind") == kind])


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run or model folder (raises FileNotFoundError without ``metrics.jsonl``)."""
    path = Path(run_dir)
    if not (path / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{path}: no {METRICS_FILE}; not a training run folder")
    records = read_metrics(path)
    card = read_card(path)
    variant = (card or {}).get("variant") or next(
        (r["variant"] for r in records if r.get("kind") == "event" and "variant" in r), path.name
    )
    return RunData(path, variant, card, records)


def _variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def _final_row(run: RunData) -> dict[str, Any]:
    """The run's final numbers (its card) or, unfinished, its latest evaluation."""
    evals = [r for r in run.records if r.get("kind") in ("eval", "final")]
    trains = [r for r in run.records if r.get("kind") == "train"]
    last_eval = evals[-1] if evals else {}
    if run.card is not None:
        final = run.card["final"]
        row = {
            "run": run.name, "variant": run.variant, "finished": True, "steps": run.card["steps"],
            "tokens_seen": run.card["tokens_seen"], "val_loss": final["val_loss"],
            "val_bpb": final["val_bpb"], "wall_time_min": run.card["wall_time_s"] / 60,
        }  # fmt: skip
        measured = final
    else:
        row = {
            "run": run.name, "variant": run.variant, "finished": False,
            "steps": last_eval.get("step", trains[-1]["step"] if trains else 0),
            "tokens_seen": trains[-1]["tokens"] if trains else 0,
            "val_loss": last_eval.get("val_loss", float("nan")),
            "val_bpb": last_eval.get("val_bpb", float("nan")),
            "wall_time_min": (trains[-1]["elapsed_s"] / 60) if trains else float("nan"),
        }  # fmt: skip
        measured = last_eval
    # The out-of-domain split, where the run measured one (newer corpora): from the card's final
    # evaluation, else the latest evaluation record that has it.
    ood = measured if "ood_loss" in measured else next(
        (r for r in reversed(evals) if "ood_loss" in r), None
    )
    if ood is not None:
        row["ood_loss"] = ood["ood_loss"]
        row["ood_bpb"] = ood.get("ood_bpb", bits_per_byte(ood["ood_loss"]))
    return row


def compare_runs(run_dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """One row per run: final val loss / bits per byte and the difference from ``none``.

    Columns: run, variant, finished, steps, tokens_seen, val_loss, val_bpb, delta_loss_vs_none,
    delta_bpb_vs_none, wall_time_min, and ood_loss, ood_bpb when any run measured an
    out-of-domain split. With several ``none`` runs their mean is the reference; without one the
    differences are NaN.
    """
    import pandas as pd

    runs = [load_run(d) for d in run_dirs]
    df = pd.DataFrame([_final_row(r) for r in runs])
    if df.empty:
        return df
    reference = df.loc[df["variant"] == "none", "val_loss"]
    ref_loss = reference.mean() if len(reference) else float("nan")
    df["delta_loss_vs_none"] = df["val_loss"] - ref_loss
    df["delta_bpb_vs_none"] = df["delta_loss_vs_none"] / LN2
    cols = [
        "run", "variant", "finished", "steps", "tokens_seen", "val_loss", "val_bpb",
        "delta_loss_vs_none", "delta_bpb_vs_none", "wall_time_min",
    ]  # fmt: skip
    cols += [c for c in ("ood_loss", "ood_bpb") if c in df.columns]
    df = df[cols]
    order = sorted(
        range(len(df)), key=lambda i: (_variant_rank(df["variant"].iloc[i]), df["run"].iloc[i])
    )
    return df.iloc[order].reset_index(drop=True)


def format_table(df: pd.DataFrame) -> str:
    """The comparison as a Markdown table."""
    from lens_positions.tables import markdown_table

    return markdown_table(df, formats={
        "val_loss": ".4f", "val_bpb": ".4f", "delta_loss_vs_none": "+.4f",
        "delta_bpb_vs_none": "+.4f", "wall_time_min": ".1f", "tokens_seen": lambda v: f"{int(v):,}",
        "ood_loss": ".4f", "ood_bpb": ".4f",
    })  # fmt: skip


__all__ = [
    "CARD_JSON", "CARD_MD", "DEFAULT_MODEL", "FINAL_DIR", "LN2", "METRICS_FILE", "VARIANT_ORDER", "RunData",
    "bits_per_byte", "card_path", "compare_runs", "format_table", "load_run", "read_card",
    "read_metrics",
]  # fmt: skip
