"""Do the analyses give the same tables before and after a change of the code? (issue 21)

    # a snapshot of every analysis's tables (CSV) on some models, small but complete runs:
    python scripts/check_agreement.py snapshot OUT_DIR --models DIR_OR_NAME ...
    # every cell of every table of A against B (numbers within --tol, text equal):
    python scripts/check_agreement.py compare A B [--tol 1e-6]

A snapshot runs each analysis module through `analyses._common.invoke` (its own parser, Params
and run) with the small flags of `CASES`, once per model (each model is loaded once), and writes
``OUT/<model>/<module>/<table>.csv`` and the facts as ``facts.json``. An analysis that refuses a
model records its error message in ``error.txt``; a refusal must stay a refusal. To compare code
before and after a change, take the first snapshot from a worktree of the old commit (its
``analyses`` and ``lens_positions`` first on the path) and the second from the new one, on the
same model folders.

Compare matches tables by file name and cells by position (row, column). Column *names* may
change (a unit-neutral rename); renamed headers are listed, not failed, and text cells renamed on
purpose are given with ``--rename OLD=NEW``. A number agrees when ``|a - b| <= tol * max(1, |a|)``;
NaN agrees with NaN. An ``error.txt`` that differs is listed: a traceback that became a clear
error or a table is a fix, anything else a regression.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

#: module -> its flags in a snapshot: small, seeded and without progress bars.
CASES: dict[str, list[str]] = {
    "byte_increments": ["--max-docs", "2", "--max-tokens", "256"],
    "spaced_text": ["--max-docs", "2", "--max-chars", "80"],
    "word_boundaries": ["--max-docs", "2", "--max-gaps", "120", "--n-boot", "20", "--seed", "0"],
    "entities": ["--seed", "0"],
    "head_rates": ["--max-docs", "2", "--max-tokens", "200"],
    "word_index_probes": ["--n-train", "60", "--n-test", "30", "--seed", "0"],
    "position_patching": ["--max-windows", "2", "--max-entities", "2", "--carriers", "1",
                          "--seed", "0"],
    "delta_attribution": ["--max-windows", "2", "--seed", "0"],
    "learned_axis_attention": ["--max-windows", "2", "--seed", "0"],
    "token_increments": ["--max-docs", "4", "--max-windows", "4"],
}


def snapshot(out: Path, models: list[str], only: list[str] | None) -> None:
    from analyses._common import invoke

    for model in models:
        loaded: dict = {}
        label = Path(model).name
        for module, flags in CASES.items():
            if only and module not in only:
                continue
            folder = out / label / module
            folder.mkdir(parents=True, exist_ok=True)
            argv = ["--model", model, "--no-progress", "--out", str(folder / "out"), *flags]
            start = time.time()
            try:
                _, result = invoke(module, argv, models=loaded)
            except SystemExit:  # a usage error: the parser printed it
                (folder / "error.txt").write_text("usage error\n")
                print(f"{label} {module}: usage error", file=sys.stderr)
                continue
            except Exception as e:  # noqa: BLE001 - recorded, compared as text
                (folder / "error.txt").write_text(f"{type(e).__name__}: {e}\n")
                print(f"{label} {module}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            for name, table in result.tables.items():
                table.to_csv(folder / f"{name}.csv", index=False)
            (folder / "facts.json").write_text(json.dumps(result.facts, indent=1, default=str))
            print(f"{label} {module}: {len(result.tables)} tables ({time.time() - start:.0f} s)",
                  file=sys.stderr)


def _same(a: object, b: object, tol: float, renames: dict[str, str] | None = None) -> bool:
    fa, fb = _number(a), _number(b)
    if fa is not None and fb is not None:
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return abs(fa - fb) <= tol * max(1.0, abs(fa))
    return (renames or {}).get(str(a), str(a)) == str(b)


def _number(x: object) -> float | None:
    if isinstance(x, bool):
        return None
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def compare(a: Path, b: Path, tol: float, renames: dict[str, str] | None = None) -> int:
    """Prints one line per table and the differences; returns the number of disagreements."""
    bad = 0
    for path in sorted(a.rglob("*.csv")):
        rel = path.relative_to(a)
        other = b / rel
        if not other.is_file():
            print(f"MISSING {rel}")
            bad += 1
            continue
        x, y = pd.read_csv(path), pd.read_csv(other)
        if x.shape != y.shape:
            print(f"SHAPE   {rel}: {x.shape} vs {y.shape}")
            bad += 1
            continue
        diffs = [(i, c) for c in range(x.shape[1]) for i in range(x.shape[0])
                 if not _same(x.iat[i, c], y.iat[i, c], tol, renames)]
        renamed = [f"{p}->{q}" for p, q in zip(x.columns, y.columns, strict=True) if p != q]
        note = f" (renamed {', '.join(renamed)})" if renamed else ""
        if diffs:
            bad += 1
            i, c = diffs[0]
            print(f"DIFFER  {rel}: {len(diffs)} cells, first [{i}, {x.columns[c]}] "
                  f"{x.iat[i, c]!r} vs {y.iat[i, c]!r}{note}")
        else:
            print(f"same    {rel} {x.shape}{note}")
    for path in sorted(a.rglob("error.txt")):
        rel = path.relative_to(a)
        other = b / rel
        same = other.is_file() and other.read_text() == path.read_text()
        print(f"{'same   ' if same else 'DIFFER '} {rel}: {path.read_text().strip()}")
        bad += not same
    for path in sorted(b.rglob("*.csv")):
        if not (a / path.relative_to(b)).is_file():
            print(f"NEW     {path.relative_to(b)}")
    print(f"{bad} disagreement(s)")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("out", type=Path)
    s.add_argument("--models", nargs="+", required=True)
    s.add_argument("--only", nargs="+", default=None, help="some modules only")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--tol", type=float, default=1e-6)
    c.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW",
                   help="text cells renamed on purpose (e.g. lookback_tokens=lookback_units)")
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        snapshot(args.out, args.models, args.only)
        return 0
    renames = dict(r.split("=", 1) for r in args.rename)
    return 1 if compare(args.a, args.b, args.tol, renames) else 0


if __name__ == "__main__":
    sys.exit(main())
