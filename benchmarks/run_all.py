"""Run every benchmark and append a dated section to ``benchmarks/RESULTS.md``.

    python -m benchmarks.run_all                          # CPU, paper size (several minutes)
    python -m benchmarks.run_all --quick                  # tiny config, smoke test (seconds)
    python -m benchmarks.run_all --device cuda --compile  # GPU: bf16 autocast, tokens/s and MFU

Options are passed on to `benchmarks.train_step`, `benchmarks.analysis`, `benchmarks.scaling` and
the peer comparisons `benchmarks.vs_hf` (Hugging Face Llama training step), `benchmarks.vs_bridge`
(TransformerLens's TransformerBridge forward and cache-all), `benchmarks.patching` (a patching
sweep) and `benchmarks.graft` (SmolLM2 with grafted increments; recorded as skipped where this
checkout or environment lacks it), `benchmarks.first_touch` (the huge-page hint of the attention
cache, CPU only) and `benchmarks.training_attention` (the blocked training attention vs SDPA, CPU
only). ``--only`` picks some of them; ``--no-write`` prints without
touching the results file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks import (
    analysis,
    first_touch,
    graft,
    patching,
    scaling,
    train_step,
    training_attention,
    vs_bridge,
    vs_hf,
)
from benchmarks.common import H100_BF16_PEAK_TFLOPS, VARIANTS, Report, Skipped, today
from lens_positions.atomic import write_text_atomic

SCRIPTS = {"train_step": train_step, "analysis": analysis, "scaling": scaling, "vs_hf": vs_hf,
           "vs_bridge": vs_bridge, "patching": patching, "graft": graft, "first_touch": first_touch,
           "training_attention": training_attention}
#: Scripts that take run_all's --variants (the others measure a fixed set).
TAKES_VARIANTS = ("train_step", "analysis", "vs_hf", "vs_bridge", "patching")
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = """# Benchmark results

Appended by `python -m benchmarks.run_all`, one dated section per run (newest last). Every table
was measured in a single process, candidates interleaved round by round; compare ratios within a
table, not absolute numbers across sections (other jobs share these machines). How each number is
measured: `benchmarks/common.py` and each script's docstring.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS)
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="variants for train_step and analysis (default: each script's own)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to append to")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def forwarded_args(args: argparse.Namespace, script: str = "train_step") -> list[str]:
    out = ["--device", args.device, "--threads", str(args.threads), "--clock", args.clock,
           "--peak-tflops", str(args.peak_tflops)]
    if args.quick:
        out.append("--quick")
    if args.compile:
        out.append("--compile")
    if args.repeats is not None:
        out += ["--repeats", str(args.repeats)]
    if args.variants and script in TAKES_VARIANTS:
        out += ["--variants", *args.variants]
    return out


def section(args: argparse.Namespace, argv: list[str], reports: list[Report]) -> str:
    mode = "quick" if args.quick else "full"
    missed = [t for r in reports for t in r.targets if not t.met]
    n_targets = sum(len(r.targets) for r in reports)
    command = "python -m benchmarks.run_all" + (" " + shlex.join(argv) if argv else "")
    lines = [f"## {today()} · {args.device} · {mode}", "", f"Command: `{command}`", "",
             f"Targets: {n_targets - len(missed)} of {n_targets} met"
             + (f"; missed: {', '.join(t.description for t in missed)}." if missed else "."), ""]
    return "\n".join(lines) + "\n" + "\n".join(r.markdown(level=3) for r in reports)


def append_results(path: Path, text: str) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else HEADER
    # atomic: an interrupted append must not cut off the history already in the file
    write_text_atomic(path, existing.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    reports = []
    for name in args.only:
        module = SCRIPTS[name]
        try:
            report = module.run(module.parse_args(forwarded_args(args, name)))
        except Skipped as reason:  # e.g. the graft without lens_positions.load_rotary_model
            report = Report(f"{name} (skipped)", f"Skipped: {reason}", [], [])
        print(report.markdown(), flush=True)
        reports.append(report)
    text = section(args, argv, reports)
    if not args.no_write:
        append_results(args.results, text)
        print(f"appended to {args.results}")
    return text


if __name__ == "__main__":
    main()
