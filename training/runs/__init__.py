"""What every training run shares, the byte trainer's and the graft's alike.

- `checkpointing`: atomic checkpoints with every RNG state, read back with clear errors.
- `guards`: the resume contract (a run folder, its checkpoint, the options that may change) and
  the non-finite-loss stop.
- `metrics`: the JSON-lines log (truncated on resume), δ statistics, bits per byte.
- `schedule`: linear warm-up, then a half cosine to zero.
- `cards`: card helpers (time stamps, source revision, durations, the invocation lines).
"""
