"""Attention look-back in units and on the learned axis: the one measurement that
`analyses.head_rates` and `analyses.learned_axis_attention` share (see `look_back`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from analyses._common import HookSpec, head_axis, run_batches
from lens_positions.subject import Subject, subject_of

__all__ = ["LOOK_BACK_COLUMNS", "layer_label", "look_back"]

#: Columns of `look_back`, one row per layer and head.
LOOK_BACK_COLUMNS = (
    "layer", "head", "mean_delta", "lookback_units", "lookback_learned", "uniform_units",
    "uniform_learned", "ratio", "n_queries",
)  # fmt: skip

def layer_label(layer: int) -> str:
    """How tables name a layer: ``L0``, ``L1``, ..."""
    return f"L{layer}"


@torch.no_grad()
def look_back(
    model: nn.Module | Subject,
    token_lists: Sequence[Sequence[int]],
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
    desc: str = "look-back",
) -> pd.DataFrame:
    """Each head's mean δ and mean look-back (units and learned units), with the uniform baseline.

    model: any model `subject_of` knows (a bridge has one δ per layer: every head shows it).
    token_lists: sequences, start id first, of any lengths (batches are right-padded; padding and
    the first token are never counted as queries). Attention patterns [batch, head, q, k] are
    reduced inside hooks as each layer produces them, so no pattern is stored. The user's
    ``fwd_hooks`` run first, so an edited pattern or δ is what gets measured.
    Returns one row per (layer, head) with `LOOK_BACK_COLUMNS`.
    """
    s = subject_of(model)
    n_layers, n_heads = s.n_layers, s.n_heads
    keys = ("delta", "learned", "units", "u_learned", "u_units")
    sums = {k: torch.zeros(n_layers, n_heads, dtype=torch.float64) for k in keys}
    positions: dict[int, Tensor] = {}

    def measuring_hooks(tokens: Tensor, lengths: Tensor) -> list[tuple[str, Any]]:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        lengths = lengths.to(tokens.device)
        # queries: text tokens of each row (not the start at 0, not padding): [b, q]
        queries = ((pos[None, :] >= 1) & (pos[None, :] < lengths[:, None])).double()
        dunits = (pos[:, None] - pos[None, :]).double()  # q - k: [q, k]
        causal = (dunits >= 0).double()

        def on_delta(delta: Tensor, hook: Any) -> None:
            d = head_axis(delta.double()).expand(-1, -1, n_heads)  # [b, q, h]
            sums["delta"][_layer(hook)] += (d * queries[..., None]).sum((0, 1)).cpu()

        def on_position(p: Tensor, hook: Any) -> None:
            # [b, pos] or [b, pos, h] -> [b, h, pos] (shared positions broadcast to every head)
            positions[_layer(hook)] = head_axis(p.double()).expand(-1, -1, n_heads).permute(0, 2, 1)

        def on_pattern(pattern: Tensor, hook: Any) -> None:
            layer = _layer(hook)
            pat = pattern.double()  # [b, h, q, k]
            p = positions[layer]
            dist = p[..., :, None] - p[..., None, :]  # p_q - p_k: [b, h, q, k]
            w = queries[:, None, :]  # [b, 1, q]
            sums["learned"][layer] += ((pat * dist).sum(-1) * w).sum((0, 2)).cpu()
            sums["units"][layer] += ((pat * dunits).sum(-1) * w).sum((0, 2)).cpu()
            uniform = causal / causal.sum(-1, keepdim=True)  # [q, k]
            sums["u_learned"][layer] += ((uniform * dist).sum(-1) * w).sum((0, 2)).cpu()
            sums["u_units"][layer] += ((uniform * dunits).sum(-1) * w).sum((0, 2)).cpu()

        hooks: list[tuple[str, Any]] = []
        for layer in range(n_layers):
            hooks += [
                (s.hook_delta(layer), on_delta),
                (s.hook_position(layer), on_position),
                (s.hook_pattern(layer), on_pattern),
            ]
        return hooks

    n_queries = 0
    for _, lengths, _ in run_batches(
        s.model, token_lists, (), batch_size, fwd_hooks, extra_hooks=measuring_hooks,
        progress=progress, desc=desc,
    ):  # fmt: skip
        n_queries += int((lengths - 1).clamp(min=0).sum())
    if n_queries == 0:
        raise ValueError("no text tokens to measure: give non-empty texts")
    rows = []
    for layer in range(n_layers):
        for h in range(n_heads):
            mean = {k: float(sums[k][layer, h]) / n_queries for k in keys}
            scale = mean["units"] * mean["delta"]
            rows.append({
                "layer": layer_label(layer), "head": h, "mean_delta": mean["delta"],
                "lookback_units": mean["units"], "lookback_learned": mean["learned"],
                "uniform_units": mean["u_units"], "uniform_learned": mean["u_learned"],
                "ratio": mean["learned"] / scale if scale > 0 else float("nan"),
                "n_queries": n_queries,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(LOOK_BACK_COLUMNS))


def _layer(hook: Any) -> int:
    """The layer of a ``blocks.{l}....`` hook point."""
    return int(hook.name.split(".")[1])
