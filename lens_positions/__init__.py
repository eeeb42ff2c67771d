"""lens_positions: TransformerLens-compatible interpretability for transformers that learn how far
apart their tokens are (RoPE on running sums of learned per-token increments).

The names below are imported on first use, so that light modules load without torch and
TransformerLens: ``lens_positions.atomic`` and ``lens_positions.config`` import neither
(``lens_positions.tokenizer`` needs torch, not TransformerLens).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lens_positions.config import BYTE_VOCAB, SEPARATOR_ID, IncrementConfig
    from lens_positions.kv_cache import IncrementKVCache
    from lens_positions.model import HookedIncrementTransformer
    from lens_positions.rotary_models import load_rotary_model

_EXPORTS = {
    "BYTE_VOCAB": "lens_positions.config",
    "SEPARATOR_ID": "lens_positions.config",
    "IncrementConfig": "lens_positions.config",
    "IncrementKVCache": "lens_positions.kv_cache",
    "HookedIncrementTransformer": "lens_positions.model",
    "load_rotary_model": "lens_positions.rotary_models",
}
__all__ = [
    "BYTE_VOCAB",
    "SEPARATOR_ID",
    "HookedIncrementTransformer",
    "IncrementConfig",
    "IncrementKVCache",
    "load_rotary_model",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lens_positions' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
