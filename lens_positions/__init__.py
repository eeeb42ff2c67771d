"""lens_positions: TransformerLens-compatible interpretability for transformers that learn how far
apart their tokens are (RoPE on running sums of learned per-token increments)."""

from lens_positions.config import BYTE_VOCAB, SEPARATOR_ID, IncrementConfig
from lens_positions.kv_cache import IncrementKVCache
from lens_positions.model import HookedIncrementTransformer

__all__ = [
    "BYTE_VOCAB",
    "SEPARATOR_ID",
    "HookedIncrementTransformer",
    "IncrementConfig",
    "IncrementKVCache",
]
__version__ = "0.1.0"
