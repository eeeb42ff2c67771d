"""Finished models measured and shipped.

- `evaluate`: bits/byte of a model on one split (``python -m training.evaluation.evaluate``).
- `corpus_table`: the Markdown table of several `evaluate --json` files.
- `ship`: copy a run's model into the package and measure the shipped file again.
"""
