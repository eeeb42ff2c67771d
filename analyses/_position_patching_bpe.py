"""`analyses.position_patching` on pretrained rotary bridges: next-token scores, BPE entity prompts.

The public module's interventions and entity patching run unchanged on a bridge opened by
`lens_positions.load_rotary_model` (its hooks have the same names); what differs is the text:

- part 1 reads token windows (`analyses._tokens.token_windows`: BOS + ``window_tokens`` tokens of
  the English held-out sample, ``lens_positions.samples.sample_file("en")``, unless ``--text-file``)
  and reports next-*token* loss changes (nats/token). Integer positions are 0, 1, ..., n-1 (the
  graft's running sum under δ = 1, as HF's own ids).
- part 2 tokenises each prompt in pieces, [BOS] + prefix + entity + continuation, so that the
  entity's tokens and the continuation are known exactly. The pieces must give the tokenizer's own
  tokens of the whole text (BPE glues a word to the space before it, so the prefix's trailing
  space goes with the entity: "the New York." -> "the", " New", " York", ".") and the reversed
  entity must have as many tokens as the real one (the patch compares position by position).
  Prompts failing either are dropped and counted.

Built-in check: on the base model (``increments="none"``, δ = 1 everywhere) every intervention,
integer positions included, must leave every loss and logit exactly unchanged; `run` raises when it
does not (it would mean the graft's positions are not HF's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from analyses import _tokens
from analyses._common import InputError, Result
from analyses.entities import CARRIERS, PATCHING_ENTITIES
from analyses.position_patching import (
    EntityPrompt,
    InterventionResult,
    Params,
    add_entity_patching,
    intervention_report,
    position_interventions,
)

__all__ = ["base_model_check", "entity_prompts", "run"]


def _split_carrier(carrier: str) -> tuple[str, str]:
    """A carrier's text before ``{a}`` and after ``{b}``."""
    if "{a} {b}" not in carrier:
        raise ValueError(f"carrier {carrier!r} must contain '{{a}} {{b}}'")
    before, after = carrier.split("{a} {b}")
    return before, after


def entity_prompts(
    model: nn.Module,
    entities: Sequence[tuple[str, str]] = PATCHING_ENTITIES,
    carriers: Sequence[str] = CARRIERS,
    continuation: str = ".",
) -> tuple[list[EntityPrompt], list[str]]:
    """Real-order and reversed token prompts of every (carrier, entity); returns (prompts, dropped).

    dropped: ``"carrier | a b: why"`` for each pair left out (reversed entity of another token
    length, or pieces that are not the tokenizer's own tokens of the text).
    """
    bos = _tokens.bos_id(model)
    prompts: list[EntityPrompt] = []
    dropped: list[str] = []
    for carrier in carriers:
        before, after = _split_carrier(carrier)
        lead = " " if before.endswith(" ") else ""  # the space before a word belongs to its token
        head = _tokens.encode(model, before[: len(before) - len(lead)]) if before else []
        tail = _tokens.encode(model, after + continuation)
        if not tail:
            raise ValueError("the continuation must have at least one token (the metric scores it)")
        for a, b in entities:
            pieces = {}
            for order, (x, y) in (("clean", (a, b)), ("corrupt", (b, a))):
                ent = _tokens.encode(model, f"{lead}{x} {y}")
                whole = _tokens.encode(model, carrier.format(a=x, b=y) + continuation)
                pieces[order] = (ent, head + ent + tail == whole)
            (clean_ent, clean_ok), (corrupt_ent, corrupt_ok) = pieces["clean"], pieces["corrupt"]
            if not (clean_ok and corrupt_ok):
                dropped.append(f"{carrier} | {a} {b}: tokenised differently in pieces")
            elif len(clean_ent) != len(corrupt_ent):
                dropped.append(f"{carrier} | {a} {b}: {len(clean_ent)} tokens, reversed {len(corrupt_ent)}")
            else:
                start = 1 + len(head)
                prompts.append(EntityPrompt(
                    carrier, a, b, [bos, *head, *clean_ent, *tail], [bos, *head, *corrupt_ent, *tail],
                    start, start + len(clean_ent),
                ))  # fmt: skip
    return prompts, dropped


def base_model_check(result: InterventionResult) -> float:
    """Largest |change| of any window's loss or correct-token logit; raises when it is not 0.

    Call on the base model only: δ = 1 everywhere, so integer positions, mean δ, a foreign δ and a
    permuted δ all give back the very positions the model used.
    """
    pw = result.per_window
    worst = float(np.abs(pw[["d_loss", "d_logit"]].to_numpy()).max()) if len(pw) else 0.0
    if worst != 0.0:
        raise RuntimeError(
            f"base model (δ = 1): the interventions changed the loss or logits by up to {worst:.3g}; "
            "integer positions must be an exact no-op (the graft's positions differ from HF's ids)"
        )
    return worst


def run(model: nn.Module, params: Params) -> Result:
    """Part 1 on token windows and part 2 on BPE entity prompts (see the module doc)."""
    p = params
    variant = _tokens.variant_label(model)
    windows, source = _tokens.held_out_windows(model, p)
    result = position_interventions(
        model, windows, p.interventions, layers=p.layers, batch_size=p.batch_size, seed=p.seed, progress=p.progress
    )
    base = model.increments == "none"
    note = (" — base model: δ = 1 everywhere, so every intervention must be an exact no-op "
            f"(checked: max |Δ| = {base_model_check(result):g})") if base else ""
    what = f"{len(windows)} windows of {p.window_tokens} tokens of {source}"
    out = intervention_report(result, variant, what, "token", note)
    out.facts.update({"n_layers": model.cfg.n_layers, "windows": len(windows), "window_tokens": p.window_tokens,
                      "base_model_check": base})
    if not p.no_entities:
        entities = PATCHING_ENTITIES[: p.max_entities] if p.max_entities else PATCHING_ENTITIES
        prompts, dropped = entity_prompts(model, entities, CARRIERS[: p.carriers], p.continuation)
        if not prompts:
            raise InputError(f"no entity prompt left: {'; '.join(dropped[:5])}")
        add_entity_patching(out, model, prompts, p, variant, "token")
        out.facts.update({"entities": len(entities), "carriers": min(p.carriers, len(CARRIERS)),
                          "dropped_prompts": len(dropped)})
        if dropped:
            out.markdown += (f"\n\n{len(dropped)} prompt pairs dropped (reversed entity of another token length, "
                             "or not tokenised as in pieces), e.g.: " + "; ".join(dropped[:4]) + ".")
    return out
