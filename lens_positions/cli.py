"""The lens-positions command: learned positions of any text, and the shipped models.

    lens-positions report "any text" [--model NAME_OR_DIR] [--out report.html]
    lens-positions report --file notes.txt
    lens-positions report --model smollm2-135m-per-layer "any text"   (a pretrained model, by token)
    echo "text" | lens-positions report
    lens-positions models
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from lens_positions.runs import DEFAULT_MODEL


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of ``data`` or a clear error naming ``source`` and the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SystemExit(
            f"error: cannot read {source}: it is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}: {e.reason})"
        ) from e


def _strip_final_newline(text: str) -> str:
    """Drop the one newline that ends files and ``echo`` output: it is not part of the text."""
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _read_text(args: argparse.Namespace) -> str:
    """The text from TEXT, --file or stdin; every source gets the same UTF-8 check."""
    if args.file and args.text:
        raise SystemExit("error: give either TEXT or --file, not both")
    if args.file:
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise SystemExit(f"error: cannot read {args.file}: {e}") from e
        text = _strip_final_newline(_decode(data, args.file))
    elif args.text is not None and args.text != "-":
        # Python hands undecodable argument bytes over as lone surrogates: get the bytes back.
        try:
            data = os.fsencode(args.text)
        except UnicodeEncodeError as e:
            raise SystemExit(f"error: cannot read TEXT: character {e.start} is a lone surrogate, not text") from e
        text = _decode(data, "TEXT")
    elif not sys.stdin.isatty():
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
        text = _strip_final_newline(_decode(data, "stdin"))
    else:
        raise SystemExit("error: no text: pass TEXT, --file PATH, or pipe text on stdin")
    if not text.strip():
        raise SystemExit("error: empty text: there is nothing to report on")
    return text


def _print(text: str) -> None:
    """Print, ending quietly when the reader has gone (``lens-positions report ... | head``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


#: A report page larger than this gets a warning (browsers open it slowly).
PAGE_WARN_BYTES = 20_000_000


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    from lens_positions.atomic import output_problem
    from lens_positions.checkpoints import CheckpointError
    from lens_positions.model import HookedIncrementTransformer
    from lens_positions.report import AttentionPacker, build_report, variant_label, write_report
    from lens_positions.rotary_models import (
        RotaryModelError,
        is_rotary_model_name,
        load_named_rotary,
    )
    from lens_positions.summary import (
        compute_increments,
        terminal_summary,
        validation_bits_per_byte,
        validation_bits_per_token,
    )

    # Everything the command can check is checked before the model loads and the work starts.
    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    if args.window is not None and args.window < 1:
        raise SystemExit(f"error: --window must be >= 1 token, got {args.window}")
    if args.out and (problem := output_problem(args.out, kind="file")):
        raise SystemExit(f"error: --out {args.out}: {problem}")
    torch.set_num_threads(args.threads)
    text = _read_text(args)
    rotary = is_rotary_model_name(args.model)  # a pretrained rotary model: reported by token
    try:
        if rotary:  # its device message goes to stderr (load_rotary_model): stdout is the summary's
            model = load_named_rotary(args.model)
        else:
            model = HookedIncrementTransformer.from_pretrained(args.model)
    except (CheckpointError, RotaryModelError) as e:
        raise SystemExit(f"error: {e}") from e
    packer = AttentionPacker() if args.out and not args.no_attention else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kw = {"window": args.window} if args.window is not None else {}
        try:
            result = compute_increments(model, text, progress=True, on_pattern=packer, **kw)
        except ValueError as e:  # e.g. a window too small for a split character
            raise SystemExit(f"error: {e}") from e
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if rotary:
        result.val_bits_per_token = validation_bits_per_token(args.model)
    else:
        result.val_bits_per_byte = validation_bits_per_byte(args.model)
    # The page first: a closed stdout (a pipe into head) must not cost the report.
    path = None
    if args.out:
        page = build_report(model, result, str(args.model), attention=packer.blobs if packer else None)
        if len(page) > PAGE_WARN_BYTES:
            print(f"warning: the page is {len(page) / 1e6:.0f} MB, slow to open in a browser; "
                  + ("--no-attention leaves the attention views out, or "
                     if packer else "")
                  + "report a shorter text", file=sys.stderr)
        path = write_report(page, args.out)
    _print(f"model {args.model} ({variant_label(model)}, {model.cfg.n_layers} layers)\n" + terminal_summary(result))
    if path is not None:
        _print(f"\nreport written to {path}")
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
        variant = cfg["increments"].replace("_", "-") + ("-per-head" if cfg.get("per_head") else "")
        print(f"{name}{default}: {variant}, "
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
    rep.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"shipped model name or checkpoint folder (default {DEFAULT_MODEL}); or a pretrained rotary "
        "model (smollm2-135m, gemma3-270m, an adapter such as smollm2-135m-per-layer, a Hugging "
        "Face model folder), reported by token",
    )
    rep.add_argument("--out", default="lens_positions_report.html", help="HTML report path ('' for none)")
    rep.add_argument("--no-attention", action="store_true", help="leave the attention patterns out of the HTML")
    rep.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    rep.add_argument(
        "--window", type=int, default=None,
        help="pretrained models: tokens per chunk after its BOS (default 512, the most the context allows)",
    )
    rep.set_defaults(func=cmd_report)
    models = sub.add_parser("models", help="list the shipped models")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
