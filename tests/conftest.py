"""Shared test set-up: few threads (2-core machines), small models of every variant."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from lens_positions import HookedIncrementTransformer, IncrementConfig  # noqa: E402

#: (increments, per_head, frozen) of every variant the library offers.
VARIANTS = [
    ("none", False, False),
    ("shared", False, False),
    ("shared", True, False),
    ("per_layer", False, False),
    ("per_layer", True, False),
    ("shared", False, True),
]
VARIANT_IDS = ["none", "shared", "shared-per-head", "per-layer", "per-layer-per-head", "frozen"]


def small_config(increments: str = "per_layer", per_head: bool = False, frozen: bool = False, **kw) -> IncrementConfig:
    base = dict(d_model=32, n_heads=4, n_layers=3, d_mlp=64, n_ctx=96, seed=0)
    base.update(kw)
    return IncrementConfig(increments=increments, per_head=per_head, frozen_deltas=frozen, **base)


def perturb_deltas(model: HookedIncrementTransformer, seed: int = 0) -> HookedIncrementTransformer:
    """Move the increment MLPs off their δ=1 start so positions differ from integers.

    Also sharpens attention (queries and keys x10): at the 0.02 init scale attention is nearly
    uniform, and tests that positions matter need it to depend on them visibly.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.mul_(10)
            block.attn.W_K.mul_(10)
        for name, p in model.named_parameters():
            if "delta_mlp" in name and name.endswith("W_out"):
                p.copy_(torch.randn(p.shape, generator=g) * 2.0)
        if model.delta_table is not None:
            model.delta_table.deltas.copy_(0.2 + 3 * torch.rand(model.delta_table.deltas.shape, generator=g))
    return model


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def any_model(request) -> HookedIncrementTransformer:
    increments, per_head, frozen = request.param
    model = HookedIncrementTransformer(small_config(increments, per_head, frozen)).eval()
    return perturb_deltas(model)
