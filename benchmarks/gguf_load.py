"""First and cached load of a GGUF wheel model, side by side in one run.

    python -m benchmarks.gguf_load [--model gemma3-270m] [--threads 2] [--repeats 2]

Each repeat empties a fresh cache folder (``LENS_POSITIONS_CACHE``), then times two new
processes one after the other: the first ``load_rotary_model(model)`` (joins and checks the GGUF,
dequantises it, writes the cache; `lens_positions.gguf_cache`) and the second (reads the cache).
The time is that of the ``load_rotary_model`` call, as a user's script waits for it (the bridge
boot and the graft's load check included); the process's own start is not counted. Prints a
Markdown table with the ratio cached / first per repeat (the goal: ≤ 0.3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.3

CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from lens_positions import load_rotary_model
from lens_positions import gguf_cache
seen = []
real = gguf_cache.load_gguf
def spy(*a, **k):
    out = real(*a, **k)
    seen.append(out[2]["cache"])
    return out
gguf_cache.load_gguf = spy
t = time.perf_counter()
load_rotary_model(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "cache": seen}))
"""


def timed_load(model: str, threads: int, cache: Path) -> dict:
    env = {**os.environ, "LENS_POSITIONS_CACHE": str(cache), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, model, str(threads)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gguf_load: loading {model} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma3-270m", help="a wheel model (gemma3-270m, smollm2-135m)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    rows = [f"| repeat | first load (s) | cached load (s) | cached / first (goal ≤ {TARGET}) |",
            "|---|---:|---:|---:|"]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="gguf_load.") as tmp:
        for r in range(args.repeats):
            cache = Path(tmp) / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            first = timed_load(args.model, args.threads, cache)
            second = timed_load(args.model, args.threads, cache)
            if first["cache"] != ["built"] or second["cache"] != ["hit"]:
                raise SystemExit(f"gguf_load: expected a build then a hit, got {first['cache']} and {second['cache']}")
            ratios.append(second["seconds"] / first["seconds"])
            rows.append(f"| {r + 1} | {first['seconds']:.1f} | {second['seconds']:.1f} | {ratios[-1]:.2f} |")
    print(f"{args.model}, {args.threads} thread(s), `python -m benchmarks.gguf_load --model {args.model} "
          f"--threads {args.threads} --repeats {args.repeats}`\n")
    print("\n".join(rows))
    print(f"\nworst ratio {max(ratios):.2f}: {'meets' if max(ratios) <= TARGET else 'misses'} the goal ≤ {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
