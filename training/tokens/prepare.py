"""Command line for `training.tokens.byte_tokens.prepare_tokens`: documents -> train.bin / val.bin / meta.json.

    python -m training.tokens.prepare --out data/tokens --val-fraction 0.03 \\
        --spec "local:data/corpus/en.jsonl=1,local:data/corpus/zh.jsonl=1"
    # the reference run: 2,000 validation documents, then 60,000 training documents
    python -m training.tokens.prepare --out data/tokens-wiki --val-docs 2000 --max-docs 62000 \\
        --spec "en@hf:wikimedia/wikipedia:20231101.en=1,zh@hf:wikimedia/wikipedia:20231101.zh=1"

    # the multi-source corpus, with two whole sources held out as the out-of-domain split:
    python -m training.tokens.prepare --out data/tokens-v2 --val-fraction 0.03 \\
        --spec "$(python -c 'import json; print(json.load(open("data/corpus-v2/manifest.json"))["train_spec"])')" \\
        --ood-spec "$(python -c 'import json; print(json.load(open("data/corpus-v2/manifest.json"))["ood_spec"])')"

The spec syntax is described in `training.tokens.sources`; `--manifest DIR/manifest.json` takes both
specs from a corpus built by `training.corpus.build --sources all`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from lens_positions.atomic import output_problem
from training.tokens.byte_tokens import prepare_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", help="[NAME@]KIND:TARGET[=WEIGHT],...")
    parser.add_argument("--ood-spec", help="sources of the out-of-domain split (ood.bin)")
    parser.add_argument("--manifest", help="corpus manifest.json: its train_spec and ood_spec")
    parser.add_argument("--ood-max-bytes-per-source", type=int, default=1_000_000,
                        help="text bytes per out-of-domain source, spread over it (0 = all)")
    parser.add_argument("--out", required=True, help="output directory")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, help="hash split (default 0.03)")
    split.add_argument("--val-docs", type=int, help="hold out the first N documents")
    parser.add_argument("--max-docs", type=int, help="stop after N non-empty documents")
    parser.add_argument("--max-bytes", type=int, help="stop after N text bytes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if problem := output_problem(args.out):
        parser.error(f"--out {args.out}: {problem}")
    if args.manifest:
        try:
            manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            parser.error(f"--manifest {args.manifest}: cannot read it as JSON ({e})")
        args.spec = args.spec or manifest["train_spec"]
        args.ood_spec = args.ood_spec or manifest.get("ood_spec") or None
    if not args.spec:
        parser.error("give --spec or --manifest")
    made = not Path(args.out).exists()  # a folder this call makes is removed again on error
    try:
        meta = prepare_tokens(
            args.spec,
            args.out,
            val_fraction=args.val_fraction,
            val_docs=args.val_docs,
            max_docs=args.max_docs,
            max_bytes=args.max_bytes,
            ood_spec=args.ood_spec,
            ood_max_bytes_per_source=args.ood_max_bytes_per_source or None,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError, KeyError, UnicodeDecodeError) as e:
        if made:
            shutil.rmtree(args.out, ignore_errors=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split_name in ("train", "val", "ood"):
        if split_name not in meta:
            continue
        s = meta[split_name]
        print(
            f"{split_name}: {s['tokens']:,} tokens, {s['documents']:,} documents, "
            f"bytes by source {s['bytes_by_source']}, documents by source {s['documents_by_source']}"
        )
    print(
        f"read {meta['documents_read']:,} documents, skipped {meta['skipped_empty']} empty; "
        f"wrote {args.out}/train.bin, val.bin{', ood.bin' if 'ood' in meta else ''}, meta.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
