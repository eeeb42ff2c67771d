"""The post's two variants against the models they extend: signed δ and a second position axis.

Trained runs (``training.train`` run folders, or saved model folders) are compared on:

1. **Loss**: the final validation loss of each run (from its card: every held-out window), and
   the loss on an out-of-domain token split when one is given (``--ood-data``), computed with the
   trainer's own `training.train.trainer.evaluate` over every window of that split. With
   ``--eval-windows N`` both are computed here on the first N windows of each split instead (the
   same windows for every run), which also serves unfinished runs: a run folder without
   ``final/`` is read from its latest training checkpoint, and its step is reported.
2. **Negative δ** (signed models): on held-out documents, per layer, the characters whose bytes
   get negative increments most often, grouped by (character, byte index within it) so that the
   last byte of 的 (E7 9A **84**) is one row; and fixed probes for the post's two cases: the last
   byte of 的, and the ``'`` and ``s`` of English ``'s``.
3. **Word boundaries of the learned axis** (two-axis models): Chinese word-boundary AUC against
   jieba and English word-start AUC (`analyses.word_boundaries`, the same gaps and bootstrap for
   every model), per layer; for a two-axis model δ drives only the learned axis, so its AUC says
   whether that axis draws sharper boundaries than the single-axis model's.

Held-out documents are the validation documents of the token folder (``--data``), split by
language (at least 5% CJK characters = Chinese).

The analysis runs on run folders, not on one model (``NEEDS_MODEL = False``: ``run(None,
params)`` loads every ``--run`` itself; `compare` takes models already loaded). The report ends
with the command that reproduces it, rebuilt from the parameters.

Command (the CPU comparison of the results table)::

    python -m analyses.variants --data /work/data/tokens-v2 \\
        --run none=/work/runs/cpu-v2-none --run per-layer=/work/runs/cpu-v2-per-layer \\
        --run per-layer-signed=/work/runs/cpu-v2-per-layer-signed \\
        --run per-layer-half=/work/runs/cpu-v2-per-layer-half --out results/variants
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analyses import _common
from analyses._common import InputError, Result, command_main
from analyses.word_boundaries import word_boundary_table
from lens_positions import HookedIncrementTransformer
from lens_positions.tokenizer import char_spans

#: A document is Chinese when at least this fraction of its characters are CJK ideographs.
ZH_CJK_FRACTION = 0.05
#: Groups seen fewer times than this are left out of the negative-δ table (too noisy to rank).
MIN_COUNT = 20
#: The tables of a comparison, in the report's order (empty ones are not saved).
TABLES = ("losses", "negative", "probes", "boundaries")

#: This module runs on run folders, not on a model (`analyses._common.invoke` passes None).
NEEDS_MODEL = False

#: Runs as given: label -> folder, or the command's (label, folder) pairs (``--run``, repeated).
Runs = Mapping[str, Path] | Sequence[tuple[str, Path]]


@dataclass
class Params:
    """What to compare and how much text to use (the command's options of the same names)."""

    runs: Runs | None = None  # label -> run folder (with final/) or model folder
    data: Path | None = None  # token folder whose val.bin gives the held-out documents
    ood_data: Path | None = None  # token folder with an out-of-domain split
    ood_split: str = "ood"
    eval_windows: int | None = None  # None: val loss from the cards, every OOD window
    max_docs: int | None = 200  # held-out documents per language for the δ analyses
    max_gaps: int | None = 20_000  # word-boundary gaps (and English letters) per model
    n_boot: int = 200
    seed: int = 0
    batch_size: int = 8
    top: int = 8  # rows per layer of the negative-δ table
    min_count: int = MIN_COUNT  # occurrences a (character, byte) needs to be ranked
    threads: int = 1  # torch CPU threads
    progress: bool = True


# ------------------------------------------------------------------------------------ inputs
def model_folder(path: str | Path) -> Path:
    """The saved model of a run folder (``final/``) or a model folder itself."""
    path = Path(path)
    if (path / "final" / "config.json").is_file():
        return path / "final"
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(
        f"{path}: neither a finished run (final/config.json) nor a model folder (a run still "
        "training is read from its checkpoint.pt by load_run)"
    )


def held_out_documents(data: str | Path, max_docs: int | None = None) -> dict[str, list[str]]:
    """The validation documents of a token folder, split into ``zh`` and ``en`` (in file order)."""
    from training.tokens.byte_tokens import decode_documents, load_tokens

    out: dict[str, list[str]] = {"zh": [], "en": []}
    for text in decode_documents(np.asarray(load_tokens(data, "val"))):
        if not text:
            continue
        cjk = sum(map(_common.is_cjk, text)) / len(text)
        lang = "zh" if cjk >= ZH_CJK_FRACTION else "en"
        if max_docs is None or len(out[lang]) < max_docs:
            out[lang].append(text)
    return out


def card_of(run: Path) -> dict[str, Any] | None:
    try:
        path = model_folder(run) / "card.json"
    except FileNotFoundError:
        return None
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_run(path: str | Path) -> tuple[HookedIncrementTransformer, int | None]:
    """The model of a finished run or model folder, else of a run's latest checkpoint; its step."""
    path = Path(path)
    ckpt_path = path / "checkpoint.pt"
    try:
        folder = model_folder(path)
    except FileNotFoundError:
        if not ckpt_path.is_file():
            raise
        from training.runs import checkpointing
        from training.train.configs import TrainConfig
        from training.train.trainer import build_model

        ckpt = checkpointing.load_checkpoint(ckpt_path)
        model = build_model(TrainConfig.from_dict(ckpt["config"]), load_table=False)
        model.load_state_dict(ckpt["model"])
        return model.eval(), int(ckpt["step"])
    card = card_of(path)
    return _common.load_model(folder), (card["steps"] if card else None)


# ------------------------------------------------------------------------------------ losses
def loss_table(
    runs: dict[str, Path],
    models: dict[str, HookedIncrementTransformer],
    params: Params,
    steps: dict[str, int | None] | None = None,
) -> pd.DataFrame:
    """Validation loss from each card (computed here without a card or with ``eval_windows``),
    OOD loss if asked for; ``steps`` of runs read from checkpoints."""
    from training.runs.metrics import bits_per_byte
    from training.tokens.byte_tokens import load_tokens
    from training.train.distributed import DistContext
    from training.train.trainer import evaluate

    def loss_on(model: HookedIncrementTransformer, data: Path, split: str) -> float:
        try:
            tokens = load_tokens(data, split)
        except ValueError as e:  # a split the folder lacks: the command's usage error
            raise InputError(str(e)) from e
        result = evaluate(
            model, tokens, model.cfg.n_ctx, 32, params.eval_windows, torch.device("cpu"), "fp32",
            DistContext(),
        )
        return result["val_loss"]

    rows = []
    for label, run in runs.items():
        model, card = models[label], card_of(run)
        step = (steps or {}).get(label)
        if card is not None and params.eval_windows is None:
            val, step = card["final"]["val_loss"], card["steps"]
        else:
            val = loss_on(model, params.data, "val")
        ood = np.nan
        if params.ood_data is not None:
            ood = loss_on(model, params.ood_data, params.ood_split)
        rows.append({
            "run": label, "variant": model.cfg.variant_name, "steps": step,
            "val_loss": val, "val_bpb": bits_per_byte(val),
            "ood_loss": ood, "ood_bpb": bits_per_byte(ood) if np.isfinite(ood) else np.nan,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    base = table[table["variant"] == "none"]
    ref = base.iloc[0] if len(base) else None
    table["d_val"] = table["val_loss"] - (ref["val_loss"] if ref is not None else np.nan)
    table["d_ood"] = table["ood_loss"] - (ref["ood_loss"] if ref is not None else np.nan)
    return table


# ------------------------------------------------------------------------------------ signed δ
def delta_groups(
    model: HookedIncrementTransformer, texts: Sequence[str], batch_size: int = 8, progress: bool = False
) -> tuple[dict[tuple[int, str, int], list[float]], dict[tuple[int, str], list[float]]]:
    """δ (head mean) of every byte of the texts, grouped two ways, per layer.

    Returns ``groups[(layer, char, byte_index)]`` (byte_index 1-based within the character) and
    ``probes[(layer, probe)]`` for the post's cases: ``的 last byte``, ``' of 's`` and ``s of 's``
    (ASCII apostrophe or U+2019 before an ``s`` that ends the word).
    """
    limit = _common.window_limit(model)
    windows = [w.tokens for d, t in enumerate(texts) for w in _common.char_windows(t, limit, d)]
    names = [f"blocks.{layer}.hook_delta" for layer in range(model.cfg.n_layers)]
    groups: dict[tuple[int, str, int], list[float]] = defaultdict(list)
    probes: dict[tuple[int, str], list[float]] = defaultdict(list)
    for idx, lengths, captured in _common.run_batches(
        model, windows, names, batch_size, progress=progress, desc="signed δ"
    ):
        for row, i in enumerate(idx):
            tokens = windows[i]
            spans = char_spans(tokens)
            chars = [s.text for s in spans]
            for layer, name in enumerate(names):
                delta = _common.head_mean(captured[name][row : row + 1])[0, : lengths[row]].numpy()
                for c, span in enumerate(spans):
                    for b in range(span.start, span.end):
                        groups[(layer, span.text, b - span.start + 1)].append(float(delta[b]))
                    if span.text == "的":
                        probes[(layer, "的 last byte")].append(float(delta[span.end - 1]))
                    if span.text in ("'", "\u2019") and c + 1 < len(chars) and chars[c + 1] == "s":
                        after = chars[c + 2] if c + 2 < len(chars) else " "
                        if not after.isalnum():
                            probes[(layer, "' of 's")].append(float(delta[span.end - 1]))
                            probes[(layer, "s of 's")].append(float(delta[spans[c + 1].start]))
                probes[(layer, "all bytes")].extend(map(float, delta[1:]))
    return groups, probes


def negative_tables(
    label: str, groups: dict, probes: dict, top: int = 8, min_count: int = MIN_COUNT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``top`` groups per layer with the lowest mean δ (seen >= min_count times), and the probes."""
    rows = [
        {"run": label, "layer": f"L{layer}", "char": ch, "byte": b, "n": len(v),
         "mean_delta": float(np.mean(v)), "frac_negative": float(np.mean(np.asarray(v) < 0))}
        for (layer, ch, b), v in groups.items() if len(v) >= min_count
    ]  # fmt: skip
    neg = pd.DataFrame(rows, columns=["run", "layer", "char", "byte", "n", "mean_delta", "frac_negative"])
    neg = neg.sort_values(["layer", "mean_delta"]).groupby("layer", sort=True).head(top)
    prow = [
        {"run": label, "layer": f"L{layer}", "probe": probe, "n": len(v),
         "mean_delta": float(np.mean(v)), "frac_negative": float(np.mean(np.asarray(v) < 0))}
        for (layer, probe), v in sorted(probes.items())
    ]  # fmt: skip
    return neg.reset_index(drop=True), pd.DataFrame(prow)


# ------------------------------------------------------------------------------------ the whole
def checked_runs(params: Params) -> dict[str, Path]:
    """``params.runs`` as label -> folder; an `InputError` names what is missing."""
    if not params.runs:
        raise InputError("no runs to compare: give --run LABEL=FOLDER (repeat it)")
    if params.data is None:
        raise InputError("no token folder: give --data (its val.bin gives the held-out documents)")
    return {label: Path(path) for label, path in dict(params.runs).items()}


def run(model: None, params: Params) -> Result:
    """Load every run (`load_run`), then `compare` them."""
    torch.set_num_threads(max(1, params.threads))
    loaded = {label: load_run(path) for label, path in checked_runs(params).items()}
    models = {label: m for label, (m, _) in loaded.items()}
    return compare(models, params, {label: step for label, (_, step) in loaded.items()})


def compare(
    models: dict[str, HookedIncrementTransformer], params: Params, steps: dict[str, int | None] | None = None
) -> Result:
    """Every table of the comparison; ``models`` are the loaded ``params.runs``, by the same labels
    (`load_run`), ``steps`` their training steps where known.

    The `Result`'s tables are `TABLES` (those not empty), its figure ``boundaries``, its pages
    ``report.md`` (the Markdown) and ``command.txt`` (`command_line`)."""
    runs = checked_runs(params)
    texts = held_out_documents(params.data, params.max_docs)
    losses = loss_table(runs, models, params, steps)
    negatives, probe_tables, boundary_tables = [], [], []
    for label, model in models.items():
        if model.cfg.signed:
            groups, probes = delta_groups(model, texts["zh"] + texts["en"], params.batch_size, params.progress)
            neg, probe = negative_tables(label, groups, probes, params.top, params.min_count)
            negatives.append(neg)
            probe_tables.append(probe)
        if model.cfg.increments == "none":
            continue  # δ = 1 everywhere: AUC 0.5 by construction
        table = word_boundary_table(
            model, texts["zh"], texts["en"], max_gaps=params.max_gaps, n_boot=params.n_boot,
            seed=params.seed, batch_size=params.batch_size, progress=params.progress,
        )  # fmt: skip
        table = table[table["head"] == "mean"].assign(run=label, variant=model.cfg.variant_name)
        boundary_tables.append(table[["run", "variant", "task", "layer", "auc", "ci_low", "ci_high", "n_gaps"]])
    tables = {
        "losses": losses,
        "negative": pd.concat(negatives, ignore_index=True) if negatives else pd.DataFrame(),
        "probes": pd.concat(probe_tables, ignore_index=True) if probe_tables else pd.DataFrame(),
        "boundaries": pd.concat(boundary_tables, ignore_index=True) if boundary_tables else pd.DataFrame(),
    }
    tables = {name: table for name, table in tables.items() if len(table)}
    command = command_line(params)
    text = to_markdown(tables, command)
    return Result(
        text,
        tables=tables,
        figures={"boundaries": plot_boundaries(tables["boundaries"])} if "boundaries" in tables else {},
        pages={"report.md": text, "command.txt": command + "\n"},
        facts={"runs": {label: str(path) for label, path in runs.items()}, "command": command},
    )


def plot_boundaries(table: pd.DataFrame):
    """AUC per layer with its 95% interval, one line per run; Chinese and English side by side."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(table["task"]))
    fig = Figure(figsize=(4.2 * len(tasks), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(tasks)))
    titles = {"zh": "Chinese word boundaries (jieba)", "en": "English word starts"}
    for ax, task in zip(axes, tasks, strict=True):
        for k, (label, sub) in enumerate(table[table["task"] == task].groupby("run", sort=False)):
            x = np.arange(len(sub)) + 0.06 * k
            err = np.vstack([sub["auc"] - sub["ci_low"], sub["ci_high"] - sub["auc"]])
            ax.errorbar(x, sub["auc"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=label)
            ax.set_xticks(np.arange(len(sub)), list(sub["layer"]))
        ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        ax.set_title(titles.get(task, task), fontsize=10)
        ax.set_ylabel("ROC-AUC of δ (95% CI)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def to_markdown(tables: Mapping[str, pd.DataFrame], command: str | None = None) -> str:
    """The report of `compare`'s tables (by `TABLES` names; any may be missing): loss table,
    negative-δ tables, boundary AUCs, and the command."""
    md = _common.markdown_table
    empty = pd.DataFrame()
    losses, negative = tables.get("losses", empty), tables.get("negative", empty)
    probes, boundaries = tables.get("probes", empty), tables.get("boundaries", empty)
    parts = ["# Variants: signed increments and a second position axis", ""]
    parts += ["## Loss (nats/byte; d_* = difference to `none`)", "", md(losses, {"steps": "d"}, ".4f"), ""]
    if len(probes):
        wide = probes.pivot_table(index=["run", "probe"], columns="layer", values="mean_delta").reset_index()
        parts += ["## Signed δ: the post's cases (mean δ per layer)", "", md(wide), ""]
        frac = probes.pivot_table(index=["run", "probe"], columns="layer", values="frac_negative").reset_index()
        parts += ["Fraction negative:", "", md(frac), ""]
        parts += ["## Signed δ: lowest mean δ per layer, by (character, byte of it)", "",
                  md(negative, {"byte": "d", "n": "d"}), ""]  # fmt: skip
    if len(boundaries):
        wide = boundaries.pivot_table(index=["task", "run"], columns="layer", values="auc").reset_index()
        parts += ["## Word-boundary ROC-AUC of δ per layer", "", md(wide), ""]
        parts += ["With 95% bootstrap intervals:", "", md(boundaries, {"n_gaps": "d"}), ""]
    if command:
        parts += ["## Command", "", f"`{command}`", ""]
    return "\n".join(parts)


def parse_run(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run takes LABEL=FOLDER, got {text!r}")
    return label, Path(path)


def command_line(params: Params) -> str:
    """The command that reproduces a comparison: every option that changes a table (those at
    their default left out, but the text sizes always given), then ``--no-progress`` if set."""
    args = ["--data", str(params.data)]
    if params.ood_data is not None:
        args += ["--ood-data", str(params.ood_data)]
    if params.ood_split != "ood":
        args += ["--ood-split", params.ood_split]
    if params.eval_windows is not None:
        args += ["--eval-windows", str(params.eval_windows)]
    for label, path in checked_runs(params).items():
        args += ["--run", f"{label}={path}"]
    for flag, value in (("--max-docs", params.max_docs), ("--max-gaps", params.max_gaps)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--n-boot", str(params.n_boot)]
    for flag, value, default in (
        ("--seed", params.seed, 0), ("--batch-size", params.batch_size, 8), ("--top", params.top, 8),
        ("--min-count", params.min_count, MIN_COUNT),
    ):  # fmt: skip
        if value != default:
            args += [flag, str(value)]
    if not params.progress:
        args.append("--no-progress")
    return "python -m analyses.variants " + shlex.join(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.variants", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--run", dest="runs", type=parse_run, action="append", default=None,
                        help="LABEL=FOLDER: a run folder (with final/) or a model folder; repeat")
    parser.add_argument("--data", type=Path, default=None, help="token folder (val.bin: held-out documents)")
    parser.add_argument("--ood-data", type=Path, default=None, help="token folder with an out-of-domain split")
    parser.add_argument("--ood-split", default="ood", help="name of that split (default ood)")
    parser.add_argument("--eval-windows", type=int, default=None,
                        help="compute val and OOD loss here on this many windows (default: val from "
                             "the cards, every OOD window)")
    parser.add_argument("--max-docs", type=int, default=200, help="held-out documents per language")
    parser.add_argument("--max-gaps", type=int, default=20_000, help="word-boundary gaps per model and task")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--top", type=int, default=8, help="rows per layer of the negative-δ table")
    parser.add_argument("--min-count", type=int, default=MIN_COUNT,
                        help=f"occurrences a (character, byte) needs to be ranked (default {MIN_COUNT})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/variants")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("variants", argv)


if __name__ == "__main__":
    main()
