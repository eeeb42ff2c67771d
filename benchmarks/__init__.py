"""Speed and memory measurements of `lens_positions` against a plain PyTorch yardstick.

Every script measures its candidates side by side in one process, interleaved round by round, and
reports medians and ratios (timings on shared machines are noisy; only same-run ratios mean much):

- `benchmarks.baseline`: the yardstick, the same architecture in plain PyTorch (no hooks).
- `benchmarks.train_step`: forward + backward + AdamW tokens/s and peak memory per variant.
- `benchmarks.analysis`: ``run_with_cache`` (all hooks, a few hooks) against a plain forward.
- `benchmarks.scaling`: forward time and memory from 512 to 8k tokens, none vs per_layer.
- `benchmarks.run_all`: runs them all and appends a dated section to ``benchmarks/RESULTS.md``.

``python -m benchmarks.run_all [--device cpu|cuda] [--quick]``; see each module's ``--help``.
"""
