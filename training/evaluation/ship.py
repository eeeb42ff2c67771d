"""Put a trained model into the package as a shipped checkpoint.

    python -m training.evaluation.ship runs/paper/per_layer/final bilingual-per-layer --data data/tokens

Copies the model into ``lens_positions/pretrained/NAME`` with its weights stored in bfloat16 (half
the size; they load back as float32), keeps its card, metrics and training log, then re-measures
exactly the shipped weights on this machine (float32, no autocast) on the token folder's splits
(``--splits``, default val, ood and train: the out-of-domain split when the folder has one, and
as many training windows as validation windows, evenly spaced, so that the card shows the gap
between text the model trained on and text it never saw) and adds that to ``card.md`` and
``card.json``, so the card's numbers describe the file that ships.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lens_positions.atomic import write_json_atomic, write_text_atomic
from lens_positions.checkpoints import PRETRAINED_DIR, CheckpointError, save_pretrained
from lens_positions.model import HookedIncrementTransformer
from training.runs.cards import render_card
from training.runs.metrics import bits_per_byte
from training.tokens.byte_tokens import load_tokens
from training.train.distributed import DistContext
from training.train.trainer import evaluate

KEEP = ("card.md", "card.json", "metrics.jsonl", "train.log")


def ship(
    source: Path,
    name: str,
    data: Path,
    windows: int | None = None,
    batch_size: int = 16,
    pretrained_dir: Path = PRETRAINED_DIR,
    splits: tuple[str, ...] = ("val", "ood", "train"),
) -> dict:
    """Copy ``source`` into ``pretrained_dir`` (the package's by default) as ``name`` (bf16
    weights) and measure it on ``splits`` (``windows`` evenly spaced windows each, default all of
    val and as many of the others; a split the folder lacks is skipped, except val); returns the
    measurement also written to the card (keys ``{split}_loss``, ``{split}_bpb``, ...)."""
    model = HookedIncrementTransformer.from_pretrained(source)
    # Read everything into memory first: the source may be the target folder itself.
    extras = {f: (source / f).read_text(encoding="utf-8") for f in KEEP if (source / f).is_file()}
    log = source.parent.parent / f"{source.parent.name}.log"  # scripts/train_comparison_gpu.sh
    if "train.log" not in extras and log.is_file():
        extras["train.log"] = log.read_text(encoding="utf-8")
    if "metrics.jsonl" not in extras and (source.parent / "metrics.jsonl").is_file():
        extras["metrics.jsonl"] = (source.parent / "metrics.jsonl").read_text(encoding="utf-8")
    target = Path(pretrained_dir) / name
    save_pretrained(model, target, dtype=torch.bfloat16, extra_files=extras)
    shipped = HookedIncrementTransformer.from_pretrained(target)
    start = time.time()
    result: dict = {}
    ctx = DistContext(rank=0, world_size=1, local_rank=0)
    for split in dict.fromkeys(("val", *splits)):
        if split != "val" and not (Path(data) / f"{split}.bin").is_file():
            continue
        n = windows if windows is not None or split == "val" else result["val_windows"]
        with torch.no_grad():
            result.update(evaluate(shipped, load_tokens(data, split), shipped.cfg.n_ctx, batch_size, n,
                                   torch.device("cpu"), "fp32", ctx, prefix=split, spread=True))
    result.update(weights="bfloat16 (loaded as float32)", precision="fp32 on CPU",
                  seconds=round(time.time() - start, 1), data=str(data))
    write_shipped_card(target, name, source, data, windows, result, pretrained_dir)
    return result


def write_shipped_card(
    target: Path, name: str, source: Path, data: Path, windows: int | None, result: dict,
    pretrained_dir: Path = PRETRAINED_DIR,
) -> None:
    """Record ``result`` (the measurement of the shipped weights) in ``target``'s card.json and
    write its card.md: the training card rendered anew, then the shipped weights' section."""
    card_json = target / "card.json"
    if card_json.is_file():
        info = json.loads(card_json.read_text())
        info["shipped"] = result
        info["val_bits_per_byte"] = result["val_bpb"]
        write_json_atomic(card_json, info)
    card_md = target / "card.md"
    where = f"lens_positions/pretrained/{name}" if Path(pretrained_dir) == PRETRAINED_DIR else str(target)
    if card_json.is_file():  # rendered again, so that the card reads as the current renderer writes
        text = render_card(json.loads(card_json.read_text()))
    else:
        text = card_md.read_text(encoding="utf-8") if card_md.is_file() else f"# {name}\n"
    text = text.split("\n## Shipped weights")[0].rstrip() + "\n"
    text += (
        "\n## Shipped weights\n\n"
        f"- stored as `{where}` in bfloat16 (loaded as float32) by "
        f"`python -m training.evaluation.ship {source} {name} --data {data}"
        + (f" --windows {windows}" if windows is not None else "") + "`\n"
        "- losses of these exact weights, float32 on CPU, evenly spaced windows of each split:\n"
    )
    names = {"val": "validation (held-out documents)", "ood": "out of domain (sources never trained on)",
             "train": "training windows"}
    for split in ("val", "ood", "train"):
        if f"{split}_loss" in result:
            text += (f"  - {names[split]}: **{result[f'{split}_loss']:.4f} nats/byte "
                     f"({bits_per_byte(result[f'{split}_loss']):.4f} bits/byte)** over "
                     f"{result[f'{split}_tokens']:,} tokens ({result[f'{split}_windows']} windows)\n")
    if "train_loss" in result:
        gap = bits_per_byte(result["val_loss"]) - bits_per_byte(result["train_loss"])
        text += f"- validation minus training: {gap:+.4f} bits/byte (memorisation shows as a large gap)\n"
    write_text_atomic(card_md, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.ship", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="trained model folder (e.g. runs/paper/per_layer/final)")
    parser.add_argument("name", help="shipped name, e.g. bilingual-per-layer")
    parser.add_argument("--data", type=Path, required=True, help="token folder with val.bin")
    parser.add_argument("--windows", type=int, default=None,
                        help="windows per split, evenly spaced (default: all of val, as many of the others)")
    parser.add_argument("--splits", nargs="+", default=["val", "ood", "train"], choices=["val", "ood", "train"],
                        help="splits to measure (default val ood train; val always)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    # Checked before anything is written: a shipped model is replaced only by a working one.
    if not (args.data / "val.bin").is_file() or not (args.data / "meta.json").is_file():
        parser.error(f"--data {args.data}: no token folder (val.bin and meta.json); "
                     "make one with python -m training.tokens.prepare")
    try:
        HookedIncrementTransformer.from_pretrained(args.source)
    except CheckpointError as e:
        parser.error(f"{args.source}: {e}")
    torch.set_num_threads(args.threads)
    result = ship(args.source, args.name, args.data, args.windows, splits=tuple(args.splits))
    measured = ", ".join(f"{s} {result[f'{s}_bpb']:.4f}" for s in ("val", "ood", "train") if f"{s}_bpb" in result)
    print(f"{args.name}: bits/byte {measured} over {result['val_windows']} windows each ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
