"""Shared test set-up: few threads (2-core machines), small models of every variant."""

from __future__ import annotations

import json

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


# --- a tiny bilingual token folder (held-out preparation and the results document) ------------
ZH_DOC = (
    "人工智能是计算机科学的一个分支，它试图理解智能的实质。\n"
    "光合作用是植物利用阳光制造养分的过程。研究人员在实验室里观察了很多年。\n"
) * 4
EN_DOC = (
    "Marie Curie was a physicist and chemist who worked in Paris.\n"
    "The old harbour in New York was crowded every morning, and gulls circled the market.\n"
    "To install the package, open a terminal and type the command below.\n"
) * 3
MIXED_EN = EN_DOC + "一个中文词。"  # under 5% CJK: still English


@pytest.fixture(scope="module")
def heldout_token_dir(tmp_path_factory):
    """A token folder whose validation split holds the first 4 documents (2 zh, 2 en)."""
    from training.tokens.byte_tokens import prepare_tokens

    root = tmp_path_factory.mktemp("corpus")
    docs = [ZH_DOC, MIXED_EN, ZH_DOC.replace("人工", "机器"), EN_DOC.upper(), "训练用的文本。" * 30, "training text " * 30]
    src = root / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    prepare_tokens(f"local:{src}=1", root / "tokens", val_docs=4, progress=False)
    return root / "tokens"
