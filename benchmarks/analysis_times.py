"""Wall time of every analysis command as a user first runs it: ``python -m analyses.X`` with no
arguments but ``--out`` (the shipped byte default), and with ``--model smollm2-135m-per-layer``.

    python -m benchmarks.analysis_times [--before WORKTREE] [--models bilingual-per-layer ...] \\
        [--only head_rates ...] [--threads 2] [--limit 600]

Each command runs in its own process (model load included, as a user waits for it) with
``--threads``; ``--before`` also runs each command from another checkout (e.g. a ``git worktree``
of an older commit), interleaved with the current one command by command, so the two columns
share the machine's load. A command that fails or passes ``--limit`` seconds is reported as such.
Prints a Markdown table (seconds, and the ratio after / before).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("bilingual-per-layer", "smollm2-135m-per-layer")


def time_command(checkout: Path, module: str, model: str, threads: int, limit: float) -> str:
    """Seconds of ``python -m analyses.<module>`` in ``checkout``, or why it has none."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", f"analyses.{module}", "--out", out, "--no-progress",
                "--threads", str(threads)]
        if model != MODELS[0]:
            argv += ["--model", model]
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return f"> {limit:.0f}"
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"fails ({last[:60]})"
    return f"{seconds:.0f}"


def main(argv: list[str] | None = None) -> int:
    import analyses

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, default=None, help="another checkout to time beside this one")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--only", nargs="+", default=None, help="some analyses only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds before a command is stopped")
    args = parser.parse_args(argv)
    # the ones that read run folders (loss_comparison, variants) have no first-look default model run
    modules = [m for m in (args.only or analyses.MODULES) if m not in ("loss_comparison", "variants")]
    rows = ["| analysis | model | " + ("before (s) | " if args.before else "") + "now (s) |" + (" ratio |" if args.before else ""),
            "|---|---|" + ("---:|" if args.before else "") + "---:|" + ("---:|" if args.before else "")]
    for model in args.models:
        for module in modules:
            before = time_command(args.before, module, model, args.threads, args.limit) if args.before else None
            now = time_command(ROOT, module, model, args.threads, args.limit)
            ratio = ""
            if before is not None:
                try:
                    ratio = f" {float(now) / float(before):.2f} |"
                except ValueError:
                    ratio = " — |"
            row = f"| {module} | {model} | " + (f"{before} | " if before is not None else "") + f"{now} |" + ratio
            rows.append(row)
            print(row, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
