"""Causal tests of the learned positions: does the model use what it learned?

Part 1, interventions on real text, one layer at a time and all layers at once
(`analyses._interventions`): integer positions, the window's mean δ, another window's δ, and the
window's own δ shuffled (the control); reported as the change in next-unit loss and in the
correct unit's logit, and how far the positions moved.

Part 2, entity patching (`analyses._entity_patching`, the entities and carriers of the post's
§3.4): clean (real-order) ``delta`` or ``position`` activations patched into the reversed run,
per layer and position and per whole layer, against an unrelated entity's as the control; the
metric is the log-prob of a continuation after the entity.

Grafted bridges (``--model smollm2-135m`` or ``smollm2-135m-per-layer``): the same interventions
and patches on token windows (BOS + ``--window-tokens`` tokens of the English held-out sample
unless ``--text-file``) and BPE entity prompts, scored per next token, with an exact no-op check
on the base model (δ = 1 everywhere: `analyses._interventions.base_model_check`).

Parts: `analyses._interventions` (part 1), `analyses._entity_patching` (part 2), the entity list
in `analyses._entity_list`; this module holds the command and the reports.

On a bridge the defaults are a first look (`TOKEN_FIRST_LOOK`: 4 windows, every 10th layer and
the last, 2 carriers); ``--full`` takes 64 windows, every layer and every carrier, as on the byte
models.

Command::

    python -m analyses.position_patching [--model NAME_OR_DIR] [--text-file FILE ...] \
        [--layers L ...] [--full] --out out/position_patching
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from analyses import _tokens
from analyses._common import (
    InputError,
    Result,
    add_common_args,
    add_text_args,
    command_main,
    markdown_table,
    text_windows,
)
from analyses._entity_list import CARRIERS, PATCHING_ENTITIES
from analyses._entity_patching import (
    EntityPatchResult,
    EntityPrompt,
    continuation_logprob,
    entity_patching,
    entity_prompts,
    plot_entity_patching,
)
from analyses._interventions import (
    ALL_LAYERS,
    INTERVENTIONS,
    InterventionResult,
    base_model_check,
    integer_start,
    intervention_hooks,
    plot_interventions,
    position_interventions,
)
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of

__all__ = [
    "ALL_LAYERS", "INTERVENTIONS", "EntityPatchResult", "EntityPrompt", "InterventionResult",
    "Params", "base_model_check", "build_parser", "continuation_logprob", "entity_patching",
    "entity_prompts", "integer_start", "intervention_hooks", "main", "plot_entity_patching",
    "plot_interventions", "position_interventions", "run",
]  # fmt: skip


#: Defaults of the byte models and of ``--full``: windows and carriers.
FULL_MAX_WINDOWS = 64
#: A bridge's first look without ``--full`` (30 layers × 4 interventions × 64 windows took over
#: 4 minutes on two cores, and 6 windows, every 5th layer and 3 carriers still 148 s): windows,
#: the layer stride (the last layer is always added), carriers.
TOKEN_FIRST_LOOK = {"max_windows": 4, "layer_step": 10, "carriers": 2}


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
    max_docs: int | None = None
    held_out: float | None = None
    window_bytes: int | None = None
    max_windows: int | None = None  # None: FULL_MAX_WINDOWS, or a bridge's first look
    window_tokens: int = _tokens.WINDOW_TOKENS  # pretrained rotary models: tokens per window after the BOS
    layers: list[int] | None = None  # layers intervened on and patched (None: all, or a bridge's first look)
    interventions: list[str] = field(default_factory=lambda: list(INTERVENTIONS))
    continuation: str = "."
    max_entities: int | None = None
    carriers: int | None = None  # None: every carrier, or a bridge's first look
    full: bool = False  # a bridge: every window, layer and carrier (the byte models' defaults)
    no_per_position: bool = False
    no_entities: bool = False
    seed: int = 0
    batch_size: int = 16
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.position_patching", description=__doc__.split("\n")[0]
    )
    add_common_args(parser, "out/position_patching", batch_size=16, seed=True)
    add_text_args(parser, max_windows=FULL_MAX_WINDOWS)
    parser.set_defaults(max_windows=None)  # resolved per unit in `resolve_sizes`
    parser.add_argument("--interventions", nargs="+", default=list(INTERVENTIONS), choices=INTERVENTIONS)
    parser.add_argument("--continuation", default=".", help="continuation scored after each entity")
    parser.add_argument("--max-entities", type=int, default=None, help="use only the first N entities")
    parser.add_argument("--carriers", type=int, default=None,
                        help=f"use only the first N carriers (default all {len(CARRIERS)}; a bridge: see --full)")
    parser.add_argument("--full", action="store_true",
                        help=f"a bridge: {FULL_MAX_WINDOWS} windows, every layer and carrier instead of the first "
                             f"look ({TOKEN_FIRST_LOOK['max_windows']} windows, every {TOKEN_FIRST_LOOK['layer_step']}th "
                             f"layer and the last, {TOKEN_FIRST_LOOK['carriers']} carriers)")
    parser.add_argument("--no-per-position", action="store_true", help="skip the per-position entity patches")
    parser.add_argument("--no-entities", action="store_true", help="skip part 2")
    parser.add_argument("--layers", type=int, nargs="+", default=None,
                        help="layers to intervene on and patch (default all; 'all layers' is always added)")
    _tokens.add_window_tokens_arg(parser)
    return parser


def intervention_report(result: InterventionResult, variant: str, what: str, unit: str = "byte", note: str = "") -> Result:
    """A `Result` with part 1's tables, figure and Markdown (``what`` describes the windows; ``unit``
    is what the model predicts: byte or token)."""
    markdown = "\n".join([
        f"## Position interventions ({variant}; {what}; clean loss {result.clean_loss:.4f} nats/{unit})\n",
        f"Change (intervened − clean) per window, averaged (d_logprob of the correct {unit} = −d_loss). "
        "`shuffled_delta` is the control (same δ values, wrong tokens)" + note + ".\n",
        markdown_table(result.table, formats={"d_loss": ".4f", "d_loss_se": ".4f", "d_logprob": ".4f", "d_logit": ".4f"}),
    ])  # fmt: skip
    title = f"Position interventions: {variant} (clean loss {result.clean_loss:.3f})"
    return Result(
        markdown,
        tables={"interventions": result.table, "interventions_per_window": result.per_window},
        figures={"interventions": plot_interventions(result, title, unit=f"nats/{unit}")},
        facts={"variant": variant, "clean_loss": result.clean_loss},
    )


def add_entity_patching(
    out: Result, model: HookedIncrementTransformer, prompts: Sequence[EntityPrompt], p: Params, variant: str,
    unit: str = "byte",
) -> EntityPatchResult:
    """Run part 2 on ``prompts`` and add its tables, figure and Markdown to ``out``."""
    ent = entity_patching(model, prompts, p.continuation, per_position=not p.no_per_position, progress=p.progress,
                          layers=p.layers)
    summary = ent.summary()
    out.tables.update({
        "entity_patching_per_prompt": ent.per_prompt, "entity_patching_per_position": ent.per_position,
        "entity_patching": summary,
    })  # fmt: skip
    out.figures["entity_patching"] = plot_entity_patching(ent, f"Entity patching: {variant}")
    out.facts["prompts"] = len(prompts)
    out.markdown += "\n".join([
        f"\n\n## Entity patching: real-order → reversed ({len(prompts)} prompts, continuation {p.continuation!r})\n",
        "Metric: log-prob of the continuation in the reversed prompt. `whole_layer` = patched − reversed "
        "when the layer's whole activation comes from the real-order prompt; `control_unrelated` = the same "
        "from another real entity of equal length; `toward_clean` = share of prompts where the patch moves "
        f"the metric toward the real-order value; `prefix_max_abs` = effect of patching the {unit} before the "
        "entity, which must be 0 (causality check).\n",
        markdown_table(summary, formats={"prefix_max_abs": ".1e"}),
    ])  # fmt: skip
    return ent


def resolve_sizes(s: Subject, p: Params) -> Params:
    """``p`` with its windows, layers and carriers set: the flags, else the unit's defaults."""
    first_look = s.unit == "token" and not p.full
    step = TOKEN_FIRST_LOOK["layer_step"]
    return replace(
        p,
        max_windows=p.max_windows or (TOKEN_FIRST_LOOK["max_windows"] if first_look else FULL_MAX_WINDOWS),
        layers=p.layers if p.layers is not None else (
            sorted({*range(0, s.n_layers, step), s.n_layers - 1}) if first_look else None),
        carriers=p.carriers if p.carriers is not None else (
            TOKEN_FIRST_LOOK["carriers"] if first_look else len(CARRIERS)),
    )


def run(model: HookedIncrementTransformer | Subject, params: Params) -> Result:
    """Part 1 (tables interventions, interventions_per_window) and part 2 (entity_patching and its
    per-prompt and per-position tables), with a figure each."""
    s = subject_of(model)
    p = resolve_sizes(s, params)
    model = s.model
    if s.unit == "token":
        windows, source = _tokens.held_out_windows(model, p)
        what = f"{len(windows)} windows of {p.window_tokens} tokens of {source}"
    else:
        windows = text_windows(model, p.text_file, p.window_bytes, p.max_windows, p.max_docs, p.held_out)
        what = f"{len(windows)} windows of {len(windows[0]) - 1} bytes"
    result = position_interventions(
        model, windows, p.interventions, layers=p.layers, batch_size=p.batch_size, seed=p.seed, progress=p.progress
    )
    base = s.unit == "token" and s.increments == "none"
    if base:
        note = (" — base model: δ = 1 everywhere, so every intervention must be an exact no-op "
                f"(checked: max |Δ| = {base_model_check(result):g})")
    else:
        note = " (per-head: |Δposition| is averaged over heads)" if s.delta_heads > 1 else ""
    out = intervention_report(result, s.label, what, s.unit, note)
    out.facts.update({"unit": s.unit, "n_layers": s.n_layers, "windows": len(windows),
                      "window_units": len(windows[0]) - 1})
    if s.unit == "byte":
        out.facts["window_bytes"] = len(windows[0]) - 1
    else:
        out.facts.update({"window_tokens": p.window_tokens, "base_model_check": base})
    if not p.no_entities:
        entities = PATCHING_ENTITIES[: p.max_entities] if p.max_entities else PATCHING_ENTITIES
        try:
            prompts, dropped = entity_prompts(model, entities, CARRIERS[: p.carriers], p.continuation)
        except ValueError as e:  # a carrier without "{a} {b}", an empty continuation
            raise InputError(str(e)) from e
        if not prompts:
            raise InputError(f"no entity prompt left: {'; '.join(dropped[:5])}")
        add_entity_patching(out, model, prompts, p, s.label, s.unit)
        out.facts.update({"entities": len(entities), "carriers": min(p.carriers, len(CARRIERS))})
        if s.unit == "token":
            out.facts["dropped_prompts"] = len(dropped)
        if dropped:
            out.markdown += (f"\n\n{len(dropped)} prompt pairs dropped (reversed entity of another token length, "
                             "or not tokenised as in pieces), e.g.: " + "; ".join(dropped[:4]) + ".")
    return out


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("position_patching", argv)


if __name__ == "__main__":
    main()
