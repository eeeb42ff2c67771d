"""Training code, one subpackage per job. Commands are run as ``python -m training.PACKAGE[.MODULE]``.

- `training.corpus`: build the offline bilingual text corpus from installed packages
  (``python -m training.corpus.build``), documents as JSON lines (docs/offline.md).
- `training.tokens`: token data on disk: document sources, byte tokenisation and the
  train/validation/out-of-domain split (``python -m training.tokens.prepare``), training and
  validation windows, the held-out text files, and the compressed pack a GPU machine receives.
- `training.runs`: what every training run shares, whichever model it trains: atomic
  checkpoints, resume and non-finite-loss guards, the metrics log, the learning-rate schedule,
  and the model card.
- `training.train`: the byte-level trainer (``python -m training.train``), its configs, the
  comparison set and the throughput measurement.
- `training.graft`: learned increments grafted onto a pretrained rotary LM, trained with LoRA
  (``python -m training.graft``).
- `training.evaluation`: bits/byte of a finished model on a split, the table of several, and
  shipping a model into the package (measured again from the shipped file).

Imports run one way: `lens_positions` ← `training` (never `analyses`); inside, `runs` and
`tokens` need no other subpackage, the trainers need those two, `evaluation` needs the trainer.
"""
