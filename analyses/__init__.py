"""Analyses of learned position increments, one module per analysis of the learned-increments post.

Each module offers a library function that returns data (a pandas DataFrame or a dataclass) and a
command, ``python -m analyses.<name> --model NAME_OR_DIR ... --out DIR``, that prints a Markdown
table and writes its figures and tables under ``--out``:

- `analyses.byte_increments`: δ per byte category, in context and from byte identity (§3.1).
- `analyses.spaced_text`: text drawn at its learned positions, one row per layer (§3.2).
- `analyses.word_boundaries`: Chinese word boundaries vs jieba, and English word starts (§3.3).
- `analyses.entities`: multi-word entities vs reversed order, with two controls (§3.4).
- `analyses.head_rates`: per-head δ against attention look-back distance (§3.5).
- `analyses.loss_comparison`: validation losses of the variants (§2).
- `analyses.word_index_probes`: word-index probes (§4).

Shared helpers (loading models and texts, batched runs, Markdown tables, figures) live in
`analyses._common`.
"""
