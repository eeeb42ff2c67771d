"""Learning-rate schedule: linear warm-up, then a half cosine down to zero.

Update k (1-based) uses ``lr * lr_factor(k - 1)``. During warm-up the factor is
``k / warmup_steps``, so the first update already moves the weights (the reference started at a
factor of exactly 0, wasting its first step) and update ``warmup_steps`` runs at the peak; then
it follows ``0.5 * (1 + cos(pi * progress))``, progress = (k - 1 - warmup) / (total - warmup),
so the factor falls from 1 and would reach 0 one update after the last.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """Factor of the peak learning rate for the optimizer step with 0-based index ``step``.

    A plain object (not a lambda) so `LambdaLR.state_dict` can save it with the checkpoint.
    """

    def __init__(self, warmup_steps: int, total_steps: int):
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(
                f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}"
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:  # past the end of a run that is all warm-up
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """A `LambdaLR` applying `WarmupCosine` to every parameter group; call ``.step()`` per update."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))
