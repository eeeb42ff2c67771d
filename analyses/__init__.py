"""Analyses of learned position increments, one module per analysis of the learned-increments post.

Every module has one shape (see `analyses._common`): a ``Params`` dataclass, ``run(model, params)``
returning a `analyses._common.Result` (tables, figures, the printed Markdown report) and a
command, ``python -m analyses.<name> [--model NAME_OR_DIR] ... --out DIR``, that prints the
Markdown and writes the tables (CSV) and figures (PNG, SVG) under ``--out``. ``--model`` defaults
to the shipped default model and texts to the held-out sample shipped with the package:

The analyses and what each measures are listed once, in `ANALYSES` (the README's table is
checked against it); `analyses.results` runs them on the shipped models into one document.

Every analysis is written once for every kind of model: it asks
`lens_positions.subject.subject_of(model)` for the model's unit (byte or token), start and pad ids,
layers, hook names and label, and branches on the unit where a protocol truly differs (a grafted
bridge has one δ per layer and BPE tokens). Shared helpers (texts, windows, batched runs,
results, commands) live in `analyses._common`, token windows in `analyses._tokens`; shared
measurements and lists in `analyses._look_back` (attention look-back), `analyses._entity_list`,
`analyses._interventions` and `analyses._entity_patching` (the two parts of position patching),
`analyses._residual_parts`, `analyses._probe_fits` and `analyses._word_index_data` (the
word-index probes), `analyses._wordlist`.
"""

#: The analysis modules (each with ``Params``, ``build_parser``, ``run`` and ``main``) and what
#: each measures, in the order of the README's table (which a test checks against this).
ANALYSES: dict[str, str] = {
    "byte_increments": "δ per byte category, in context and from byte identity (the post's §3.1)",
    "spaced_text": "text drawn at its learned positions, one row per layer (PNG, SVG, interactive HTML)",
    "word_boundaries": "Chinese word boundaries (jieba; bytes or tokens, `--probe` for the residual-stream yardstick) and English word starts: ROC-AUC per layer, bootstrap CI",
    "entities": "two-word entities vs reversed order, with nonce and frequency-matched bigram controls",
    "head_rates": "per-head δ (a bridge: its layer's δ) vs attention look-back distance",
    "loss_comparison": "validation (and out-of-domain) losses and training curves of runs",
    "word_index_probes": "word-index probes: residual stream vs learned position vs absolute position",
    "position_patching": "integer / mean / foreign / shuffled δ per layer; entity position patching",
    "delta_attribution": "which upstream components set a layer's δ (linearised, checked by ablation)",
    "learned_axis_attention": "attention measured and drawn on the learned axis",
    "token_increments": "δ per token category and the word-start AUC on a grafted bridge",
    "variants": "signed and two-axis variants against their base, from run folders",
}
MODULES: tuple[str, ...] = tuple(ANALYSES)
