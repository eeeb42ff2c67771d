"""Training code: the data pipeline listed here, and the trainer's own modules beside it.

Data pipeline, one module per stage:

- `training.sources`: parse a source spec ("en@hf:wikimedia/wikipedia:20231101.en=1,...") and
  stream documents from the Hugging Face Hub or local files through the same `datasets` call,
  interleaved by weight.
- `training.corpus`: byte tokenisation (ids 0-255, separator 256 after every document), the
  train/validation split on document identity, and the uint16 token files with their metadata.
- `training.windows`: training batches as a pure function of (seed, step, rank, world_size),
  their `IterableDataset` wrapper for DataLoader workers, and fixed validation windows.
- `training.html_text` and `training.build_offline_corpus`: the offline bilingual corpus built
  from Debian documentation packages, for machines without internet.
- `training.prepare_tokens`: command line for `corpus.prepare_tokens`.
"""
