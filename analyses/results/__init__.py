"""All headline analyses on the shipped models, over held-out text, in one report.

    python -m analyses.results --out results [--quick] [--threads 2]

Writes ``OUT/RESULTS.md``: Markdown tables next to the published numbers (docs/method.md),
each with the exact command of the analysis module that reproduces it, and every module's own
output (its printed report as ``*.md``, CSV tables and figures) under ``OUT/<analysis>/``.

Held-out text: the validation documents of the training split (``data/tokens/val.bin``: whole
documents the models never trained on), written by `training.tokens.heldout.heldout_texts` as JSON
lines into
``data/heldout/{zh,en,all}.jsonl`` (a document is Chinese when at least 5% of its characters are
CJK ideographs; each language's documents in a seeded random order; ``all.jsonl`` holds both
languages cut into parts of at most 4,000 bytes, merged so that every prefix is about half of
each). Every analysis reads these files, never ``data/corpus`` (mostly training text).

Each section runs its analysis module in-process on the module's own command line
(`analyses._common.invoke`: the same parser, ``Params`` and ``run`` as its ``main``), so the
command printed next to a table reproduces it exactly; the section builds its tables from the
returned Result (the module's printed report goes to ``report.md`` beside its outputs). A
section that fails is reported as skipped, with its error, and the others still run.
``RESULTS.md`` is rewritten after every section, so a running report can be read. ``--reuse``
keeps the Results of modules whose command has not changed (re-rendering the report is then
quick); ``--only`` runs some sections.

Parts: `analyses.results.context` (bounds, the run context, formatting),
`analyses.results.loss` (section 1), `analyses.results.reproductions` (sections 2-5, 7),
`analyses.results.new_analyses` (section 6), `analyses.results.document` (the header, the
order of the sections, `run_results` and the command).

Bounds (documents, gaps, resamples, windows) are listed in the report; ``--quick`` uses tiny ones
(a couple of minutes on 2 CPU threads) and, so that no long document can slip in, reads short
excerpts of the first held-out documents (``OUT/heldout_quick/``) instead of the full files.
"""

from analyses.results.context import FULL, QUICK, SHIPPED, VARIANTS, Bounds, Context
from analyses.results.document import SECTIONS, main, model_facts, run_results

__all__ = [
    "FULL", "QUICK", "SECTIONS", "SHIPPED", "VARIANTS", "Bounds", "Context", "main", "model_facts",
    "run_results",
]  # fmt: skip
