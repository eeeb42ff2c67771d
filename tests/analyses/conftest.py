"""Fixtures of the analysis tests: tiny models (saved to disk for the commands) and δ hooks that
are known functions of the bytes, so every analysis has an answer known in advance."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lens_positions import SEPARATOR_ID, HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config

ZH_TEXT = "人工智能是计算机科学的一个分支。它研究如何让机器具有智能，并且模拟人类的学习能力。"
EN_TEXT = "Marie Curie won two prizes, and don't forget: she was a well-known scientist.\nNew York is big."


def make_model(
    increments: str = "per_layer", per_head: bool = False, frozen: bool = False, **kw
) -> HookedIncrementTransformer:
    """A tiny model (32d, 4 heads, 3 layers, n_ctx 96 unless told otherwise) off its δ=1 start."""
    return perturb_deltas(
        HookedIncrementTransformer(small_config(increments, per_head, frozen, **kw)).eval()
    )


def delta_hooks(
    fn: Callable[[torch.Tensor], torch.Tensor], n_layers: int, layers: list[int] | None = None
) -> Callable[[torch.Tensor], list]:
    """A hook factory setting ``blocks.{l}.hook_delta`` to ``fn(tokens, layer)``.

    fn(tokens [batch, pos], layer) returns δ [batch, pos] (or [batch, pos, heads]); it must be
    positive. Used as the ``fwd_hooks`` argument of the analyses.
    """

    def factory(tokens: torch.Tensor) -> list:
        hooks = []
        for layer in range(n_layers) if layers is None else layers:

            def hook(delta: torch.Tensor, hook, layer=layer) -> torch.Tensor:
                out = fn(tokens.cpu(), layer).to(delta)
                assert out.shape == delta.shape, (out.shape, delta.shape)
                return out

            hooks.append((f"blocks.{layer}.hook_delta", hook))
        return hooks

    return factory


def strip_padding(row: torch.Tensor, pad: int = SEPARATOR_ID) -> tuple[int, ...]:
    """A window's tokens without the right padding (windows hold the pad id, the byte separator
    or a tiny bridge's BOS = EOS, only at 0)."""
    ids = row.tolist()
    while len(ids) > 1 and ids[-1] == pad:
        ids.pop()
    return tuple(ids)


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory) -> dict[str, str]:
    """Checkpoint folders of a per-layer, a per-layer per-head and a shared tiny model."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, (inc, per_head) in {
        "per_layer": ("per_layer", False),
        "per_layer_per_head": ("per_layer", True),
        "shared": ("shared", False),
    }.items():
        path = root / name
        make_model(inc, per_head).save_pretrained(path)
        out[name] = str(path)
    return out


@pytest.fixture
def text_files(tmp_path) -> dict[str, str]:
    """A Chinese .jsonl file (two sources) and an English plain-text file."""
    import json

    zh = tmp_path / "zh.jsonl"
    rows = [
        {"id": "1", "text": ZH_TEXT, "source": "zh"},
        {"id": "2", "text": "光合作用是植物利用阳光制造养分的过程。", "source": "zh"},
        {"id": "3", "text": "An English row that the source filter drops.", "source": "en"},
    ]
    zh.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    en = tmp_path / "en.txt"
    en.write_text(EN_TEXT, encoding="utf-8")
    return {"zh": str(zh), "en": str(en)}


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory) -> str:
    """A tiny random Llama saved once (`lens_positions.rotary_models.save_tiny_llama`)."""
    from lens_positions.rotary_models import save_tiny_llama

    return str(save_tiny_llama(tmp_path_factory.mktemp("tiny_llama") / "m"))


@pytest.fixture
def tiny_bridge(tiny_llama_folder):
    """A fresh per-layer bridge around the tiny Llama (δ = 1 exactly until a test moves it)."""
    from lens_positions.rotary_models import load_rotary_model

    return load_rotary_model(tiny_llama_folder, increments="per_layer")
