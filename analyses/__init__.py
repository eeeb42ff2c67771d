"""Analyses of learned position increments, one module per analysis of the learned-increments post.

Every module has one shape (see `analyses._common`): a ``Params`` dataclass, ``run(model, params)``
returning a `analyses._common.Result` (tables, figures, the printed Markdown report) and a
command, ``python -m analyses.<name> [--model NAME_OR_DIR] ... --out DIR``, that prints the
Markdown and writes the tables (CSV) and figures (PNG, SVG) under ``--out``. ``--model`` defaults
to the shipped default model and texts to the held-out sample shipped with the package:

- `analyses.byte_increments`: δ per byte category, in context and from byte identity (§3.1).
- `analyses.spaced_text`: text drawn at its learned positions, one row per layer (§3.2).
- `analyses.word_boundaries`: Chinese word boundaries vs jieba, and English word starts (§3.3).
- `analyses.entities`: multi-word entities vs reversed order, with two controls (§3.4).
- `analyses.head_rates`: per-head δ against attention look-back distance (§3.5); home of the one
  look-back measurement.
- `analyses.loss_comparison`: validation losses of the variants, from run folders (§2).
- `analyses.word_index_probes`: word-index probes (§4).
- `analyses.position_patching`: integer / flattened / foreign positions per layer; entity patching.
- `analyses.delta_attribution`: which upstream components set each layer's δ.
- `analyses.learned_axis_attention`: attention measured and drawn on the learned axis.
- `analyses.token_increments`: δ per token category and the word-start AUC on a pretrained rotary
  model with grafted increments (``--model`` defaults to the shipped ``smollm2-135m-per-layer``
  adapter, texts to the English held-out sample); `analyses.byte_increments` and
  `analyses.word_boundaries` hand such models to it.
- `analyses.variants`: trained runs of the signed and two-axis variants against their base
  (losses incl. out-of-domain, which bytes go negative, boundary AUCs), from run folders.
- `analyses.results`: all of the above on the shipped models, in one document (RESULTS.md).

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

#: The analysis modules, each with ``Params``, ``build_parser``, ``run`` and ``main``.
MODULES: tuple[str, ...] = (
    "byte_increments",
    "spaced_text",
    "word_boundaries",
    "entities",
    "head_rates",
    "loss_comparison",
    "word_index_probes",
    "position_patching",
    "delta_attribution",
    "learned_axis_attention",
    "token_increments",
    "variants",
)
