"""Markdown table of bits/byte per model and token split, from `training.evaluation.evaluate --json` files.

    python -m training.evaluation.corpus_table --out results/corpus/RESULTS.md results/corpus/*.json \\
        [--runs /work/runs/cpu-v1-per-layer /work/runs/cpu-v2-per-layer ...]

One row per model, one column per (token folder, split) found in the JSON files; with `--runs`,
also each run's evaluation records (val and, where the token folder had one, ood) by step, and
its training tokens/s (median of the logged rates). Every figure names the command that made it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from lens_positions.atomic import write_text_atomic
from training.runs.metrics import read_metrics


def _column(result: dict[str, Any]) -> str:
    windows = f", {result['max_windows']} windows" if result.get("max_windows") else ", all"
    return f"{Path(result['data']).name} {result['split']} (n_ctx {result['n_ctx']}{windows})"


def evaluation_table(results: list[dict[str, Any]]) -> list[str]:
    columns = sorted({_column(r) for r in results})
    models = list(dict.fromkeys(r["model"] for r in results))
    cell = {(r["model"], _column(r)): r for r in results}
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for m in models:
        row = []
        for c in columns:
            r = cell.get((m, c))
            row.append(f"{r['bpb']:.4f} ({r['tokens'] // 1000:,}k tok)" if r else "")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines


def run_table(run_dirs: list[Path]) -> list[str]:
    lines = ["| run | step | val bpb | ood bpb | train tokens/s (median) |", "|---|---|---|---|---|"]
    for run in run_dirs:
        records = read_metrics(run)
        rates = [r["tokens_per_s"] for r in records if r.get("kind") == "train"]
        rate = f"{statistics.median(rates):,.0f}" if rates else ""
        for r in records:
            if r.get("kind") in ("eval", "final"):
                ood = f"{r['ood_bpb']:.4f}" if "ood_bpb" in r else ""
                step = f"{r['step']}" + (" (final)" if r["kind"] == "final" else "")
                lines.append(f"| {run.name} | {step} | {r['val_bpb']:.4f} | {ood} | {rate} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.corpus_table",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="*", help="training.evaluation.evaluate --json files")
    parser.add_argument("--runs", nargs="*", default=[], help="run folders (metrics.jsonl)")
    parser.add_argument("--out", required=True, help="markdown file")
    parser.add_argument("--title", default="Bits per byte: old and new corpus")
    args = parser.parse_args(argv)
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in sorted(args.results)]
    lines = [f"# {args.title}", ""]
    if results:
        lines += ["## Evaluations (`python -m training.evaluation.evaluate`)", "",
                  *evaluation_table(results), "",
                  "Windows: the model's context length, evenly spaced over the split when "
                  "`--max-windows` was given. Commands:", ""]
        lines += [f"- `python -m training.evaluation.evaluate --model {r['model']} --data {r['data']} "
                  f"--split {r['split']}" + (f" --max-windows {r['max_windows']}" if r.get("max_windows") else "")
                  + "`" for r in results]
        lines.append("")
    existing = [Path(r) for r in args.runs if (Path(r) / "metrics.jsonl").is_file()]
    if existing:
        lines += ["## Runs (evaluation records of metrics.jsonl)", "", *run_table(existing), ""]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
