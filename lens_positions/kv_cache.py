"""Key/value cache for generation that also carries each layer's cumulative position.

Learned positions are running sums, so a new token's position is the last cached position of
that layer (per head with per-head rates) plus the new increments.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LayerKVCache:
    """One layer's rotated keys and values [batch, pos, head_index, d_head] and last position."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.last_position: Tensor | None = None  # [batch] or [batch, n_heads], float32

    def start_position(self) -> Tensor | float:
        """Learned position of the token before the next one: 0 for an empty cache."""
        return 0.0 if self.last_position is None else self.last_position

    @property
    def n_tokens(self) -> int:
        """Tokens cached in this layer (the integer position of the last one)."""
        return 0 if self.k is None else self.k.shape[1]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new keys/values and return the full ones."""
        if self.k is not None:
            k = torch.cat([self.k, k], dim=1)
            v = torch.cat([self.v, v], dim=1)
        self.k, self.v = k, v
        return k, v

    def record_positions(self, positions: Tensor) -> None:
        """Remember the last position of the tokens just processed."""
        self.last_position = positions[:, -1].detach().clone()


class IncrementKVCache:
    """A `LayerKVCache` per layer; pass one to ``model(tokens, past_kv_cache=cache)`` repeatedly."""

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerKVCache() for _ in range(n_layers)]

    def __getitem__(self, layer: int) -> LayerKVCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def n_tokens(self) -> int:
        """Number of tokens already cached."""
        return self.layers[0].n_tokens
