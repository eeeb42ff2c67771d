"""Held-out loss of a graft adapter with its learned δ and with every δ forced to 1 (LoRA alone).

    python scripts/graft_delta_ablation.py RUN_DIR ADAPTER [--out results/graft_delta_ablation.json]

RUN_DIR is the `training.graft` run folder (its ``tokens/`` hold the held-out split), ADAPTER a
shipped adapter name or folder. Both losses use the same windows as the run's card (32 x 256),
each starting with the start token the run used (its card's ``window_start_id``; none for runs
made before it was recorded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lens_positions.atomic import write_json_atomic
from lens_positions.rotary_models import load_named_rotary
from training.graft import data as graft_data
from training.graft import loop as graft_loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("adapter")
    p.add_argument("--windows", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=256)
    p.add_argument("--out", default="results/graft_delta_ablation.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    card = run / "adapter" / "card.json"
    start = json.loads(card.read_text()).get("window_start_id") if card.is_file() else None
    val = graft_data.load_split(run, json.loads((run / "tokens" / "meta.json").read_text()), "val")
    model = load_named_rotary(args.adapter)
    t0 = time.monotonic()
    learned = graft_loop.evaluate(model, val, args.n_ctx, args.windows, 2, start)["val_loss"]
    ones = [(f"blocks.{i}.hook_delta", lambda d, hook: torch.ones_like(d)) for i in range(len(model.blocks))]
    with model.hooks(fwd_hooks=ones):
        integer = graft_loop.evaluate(model, val, args.n_ctx, args.windows, 2, start)["val_loss"]
    result = {"adapter learned δ": learned, "adapter with δ = 1 (LoRA only)": integer,
              "window_start_id": start, "seconds": time.monotonic() - t0}
    write_json_atomic(args.out, result)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
