"""The byte-level trainer: ``python -m training.train --config cpu --data DIR --out RUN``.

- `command`: the command line; `options`: flags shared with `compare`; `configs`: the settings
  dataclass and presets; `trainer`: the loop (AdamW, warm-up/cosine, accumulation, DDP,
  checkpoints, evaluation); `frozen`: the frozen-δ variant's table; `distributed`: DDP plumbing;
  `compare`: the comparison set; `throughput`: tokens/s per variant.
"""
