"""The ``lens-positions`` command.

    lens-positions report "any text" [--model NAME_OR_DIR] [--out report.html]
    lens-positions report --file notes.txt
    echo "text" | lens-positions report
    lens-positions models
"""

from __future__ import annotations

import argparse
import sys
import warnings

DEFAULT_MODEL = "bilingual-per-layer"


def _read_text(args: argparse.Namespace) -> str:
    if args.file and args.text:
        raise SystemExit("error: give either TEXT or --file, not both")
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit(f"error: cannot read {args.file}: {e}") from e
    elif args.text is not None and args.text != "-":
        text = args.text
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise SystemExit("error: no text: pass TEXT, --file PATH, or pipe text on stdin")
    if not text.strip():
        raise SystemExit("error: empty text: there is nothing to report on")
    return text


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    from lens_positions.checkpoints import CheckpointError
    from lens_positions.model import HookedIncrementTransformer
    from lens_positions.report import build_report, write_report
    from lens_positions.summary import compute_increments, terminal_summary

    torch.set_num_threads(args.threads)
    text = _read_text(args)
    try:
        model = HookedIncrementTransformer.from_pretrained(args.model).eval()
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from e
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute_increments(model, text, progress=True)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"model {args.model} ({model.cfg.variant_name}, {model.cfg.n_layers} layers)")
    print(terminal_summary(result))
    if args.out:
        page = build_report(model, result, str(args.model), attention=not args.no_attention)
        path = write_report(page, args.out)
        print(f"\nreport written to {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from lens_positions.checkpoints import list_models

    models = list_models()
    if not models:
        print("no shipped models")
        return 0
    for name, path in models.items():
        cfg = json.loads((path / "config.json").read_text())
        card = path / "card.json"
        extra = ""
        if card.is_file():
            info = json.loads(card.read_text())
            if "val_bits_per_byte" in info:
                extra = f", val {info['val_bits_per_byte']:.3f} bits/byte"
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {cfg['increments']}{' per-head' if cfg.get('per_head') else ''}, "
              f"{cfg['d_model']}d/{cfg['n_heads']}h/{cfg['n_layers']}L, context {cfg['n_ctx']}{extra}")
    from lens_positions.rotary_models import print_rotary_models

    print_rotary_models()  # pretrained rotary models and shipped adapters (load_rotary_model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens-positions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="learned positions of a text: terminal summary and HTML report")
    rep.add_argument("text", nargs="?", help="the text ('-' or nothing: read stdin)")
    rep.add_argument("--file", help="read the text from this UTF-8 file")
    rep.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or checkpoint folder (default {DEFAULT_MODEL})")
    rep.add_argument("--out", default="lens_positions_report.html", help="HTML report path ('' for none)")
    rep.add_argument("--no-attention", action="store_true", help="leave the attention patterns out of the HTML")
    rep.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    rep.set_defaults(func=cmd_report)
    models = sub.add_parser("models", help="list the shipped models")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
