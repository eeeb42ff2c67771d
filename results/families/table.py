"""The family table of the graft (issue 22): for every rotary family of `lens_positions.tiny_models`,
the relative logit error of the grafted bridge against Hugging Face's own model at init, with every
δ = 1.7 (HF at position_ids = 1.7·k) and at arbitrary real positions (hook_position set, HF at the
same position_ids), and the rotary layout the graft read from the model.

    python results/families/table.py > results/families/README.md
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch
import transformers

from lens_positions.rotary_models import load_rotary_model
from lens_positions.tiny_models import FAMILIES, save_tiny_family

IDS = torch.tensor([[0, 5, 9, 20, 33, 41, 7, 12, 3]])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def row(family: str, root: Path) -> str:
    folder = save_tiny_family(family, root / family)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    try:
        bridge = load_rotary_model(folder, increments="per_layer")
    except Exception as e:  # noqa: BLE001 - the table says why
        return f"| {family} | refused: {e} | | | |"
    n = IDS.shape[1]
    positions = torch.cumsum(torch.rand(1, n, generator=torch.Generator().manual_seed(1)) * 3, dim=1)
    with torch.no_grad():
        init = relative(bridge(IDS, return_type="logits"), hf(IDS).logits)
        c17 = relative(bridge.run_with_hooks(IDS, return_type="logits", fwd_hooks=[
            (lambda m: m.endswith("hook_delta"), lambda d, hook: torch.full_like(d, 1.7))]),
            hf(IDS, position_ids=1.7 * torch.arange(n)[None].float()).logits)
        real = relative(bridge.run_with_hooks(IDS, return_type="logits", fwd_hooks=[
            (lambda m: m.endswith("hook_position"), lambda p, hook: positions.clone())]),
            hf(IDS, position_ids=positions).logits)
    tables = bridge.increment_graft.tables
    layout = "; ".join(dict.fromkeys(
        f"{'interleaved' if t.interleaved else 'half-split'}, rot {2 * len(t.inv_freq)} of "
        f"{hf.config.hidden_size // hf.config.num_attention_heads if not getattr(hf.config, 'head_dim', None) else hf.config.head_dim}"
        + (f" ({t.layer_type}, θ≈{float(1 / t.inv_freq[1]) ** (len(t.inv_freq) / 1):.0e})" if t.layer_type else "")
        for t in tables))
    return f"| {family} | {init:.1e} | {c17:.1e} | {real:.1e} | {layout} |"


def main() -> int:
    warnings.filterwarnings("ignore")
    print(__doc__.split("\n\n")[0].replace("The family table", "# The family table", 1))
    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}; tiny random models "
          "(64d, 4 heads, 2 key/value heads, 2 layers, attention sharpened x8), 9 tokens.\n")
    print("| family | init | every δ = 1.7 | real positions | rotary layout read from the model |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as root:
        for family in FAMILIES:
            print(row(family, Path(root)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
