"""Entity patching: is an entity's own δ what the model reads after it?

Part 2, entity patching (the prompts of §3.4 of the learned-increments post): real two-word entities ("New York") against the
same words reversed ("York New"), which have the same byte length, in the post's carriers, followed
by a continuation (default "."). Metric: log-prob of the continuation bytes. We patch clean (real
order) ``delta`` or ``position`` activations into the reversed run with
``transformer_lens.patching.generic_activation_patch``: per (layer, position), and per whole layer.
Control: the same whole-layer patch from an *unrelated* real entity of the same byte length in the
same carrier (is the effect specific to the entity's own δ, or does any foreign δ do it?).
Positions before the entity are identical in both runs (the model is causal), so patching them is
an exact no-op: the per-position sweep skips them except the byte just before the entity, whose
effect is reported as a check (``prefix_max_abs``, must be 0).

On a grafted bridge each prompt is tokenised in pieces, [BOS] + prefix + entity + continuation,
so that the entity's tokens and the continuation are known exactly. The pieces must give the
tokenizer's own tokens of the whole text (BPE glues a word to the space before it, so the
prefix's trailing space goes with the entity: "the New York." -> "the", " New", " York", ".") and
the reversed entity must have as many tokens as the real one (the patch compares position by
position); prompts failing either are dropped and counted. The command is
`analyses.position_patching`; the entity list lives in `analyses._entity_list`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformer_lens import patching
from transformer_lens import utilities as tl_utils

from analyses._entity_list import CARRIERS, PATCHING_ENTITIES
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer
from lens_positions.subject import subject_of

__all__ = [
    "EntityPatchResult", "EntityPrompt", "continuation_logprob", "entity_patching",
    "entity_prompts", "plot_entity_patching",
]  # fmt: skip

@dataclass(frozen=True)
class EntityPrompt:
    """A real-order prompt and its reversed twin (same byte length).

    clean / corrupt: token lists (separator first). entity_start / entity_end: token range of the
    entity (identical in both); the continuation follows it.
    """

    carrier: str
    a: str
    b: str
    clean: list[int]
    corrupt: list[int]
    entity_start: int
    entity_end: int


def entity_prompts(
    model: nn.Module,
    entities: Sequence[tuple[str, str]] = PATCHING_ENTITIES,
    carriers: Sequence[str] = CARRIERS,
    continuation: str = ".",
) -> tuple[list[EntityPrompt], list[str]]:
    """Real-order and reversed prompts of every (carrier, entity); returns (prompts, dropped).

    Byte models: every pair (the reversed entity has the same byte length). Bridges: token
    prompts; dropped holds ``"carrier | a b: why"`` for each pair left out (reversed entity of
    another token length, or pieces that are not the tokenizer's own tokens of the text).
    """
    if subject_of(model).unit == "byte":
        return _byte_prompts(entities, carriers, continuation), []
    return _token_prompts(model, entities, carriers, continuation)


def _byte_prompts(
    entities: Sequence[tuple[str, str]] = PATCHING_ENTITIES, carriers: Sequence[str] = CARRIERS, continuation: str = "."
) -> list[EntityPrompt]:
    """Every (carrier, entity) prompt pair, real order and reversed, with the continuation."""
    out = []
    for carrier in carriers:
        before = carrier.split("{a}")[0]
        for a, b in entities:
            clean = [SEPARATOR_ID, *(carrier.format(a=a, b=b) + continuation).encode("utf-8")]
            corrupt = [SEPARATOR_ID, *(carrier.format(a=b, b=a) + continuation).encode("utf-8")]
            start = 1 + len(before.encode("utf-8"))
            end = start + len(f"{a} {b}".encode())
            out.append(EntityPrompt(carrier, a, b, clean, corrupt, start, end))
    return out


def _split_carrier(carrier: str) -> tuple[str, str]:
    """A carrier's text before ``{a}`` and after ``{b}``."""
    if "{a} {b}" not in carrier:
        raise ValueError(f"carrier {carrier!r} must contain '{{a}} {{b}}'")
    before, after = carrier.split("{a} {b}")
    return before, after


def _token_prompts(
    model: nn.Module,
    entities: Sequence[tuple[str, str]] = PATCHING_ENTITIES,
    carriers: Sequence[str] = CARRIERS,
    continuation: str = ".",
) -> tuple[list[EntityPrompt], list[str]]:
    """Real-order and reversed token prompts of every (carrier, entity); returns (prompts, dropped).

    dropped: ``"carrier | a b: why"`` for each pair left out (reversed entity of another token
    length, or pieces that are not the tokenizer's own tokens of the text).
    """
    s = subject_of(model)
    bos = s.start_id
    prompts: list[EntityPrompt] = []
    dropped: list[str] = []
    for carrier in carriers:
        before, after = _split_carrier(carrier)
        lead = " " if before.endswith(" ") else ""  # the space before a word belongs to its token
        head = s.encode(before[: len(before) - len(lead)]) if before else []
        tail = s.encode(after + continuation)
        if not tail:
            raise ValueError("the continuation must have at least one token (the metric scores it)")
        for a, b in entities:
            pieces = {}
            for order, (x, y) in (("clean", (a, b)), ("corrupt", (b, a))):
                ent = s.encode(f"{lead}{x} {y}")
                whole = s.encode(carrier.format(a=x, b=y) + continuation)
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


def continuation_logprob(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"], n_cont: int) -> Float[Tensor, " batch"]:
    """Summed log-prob of the last ``n_cont`` tokens given what precedes them: [batch]."""
    logp = F.log_softmax(logits[:, -n_cont - 1 : -1].float(), -1)
    return logp.gather(-1, tokens[:, -n_cont:].unsqueeze(-1)).squeeze(-1).sum(-1)


@contextmanager
def _quiet_patching() -> Iterator[None]:
    """Silence the progress bar generic_activation_patch draws on every call (hundreds of calls
    here; the group-level bar says how far we are)."""
    original = patching.tqdm
    patching.tqdm = partial(tqdm, disable=True)
    try:
        yield
    finally:
        patching.tqdm = original


def _whole_layer_setter(corrupted: Tensor, index: Sequence[int], clean: Tensor) -> Tensor:
    """patch_setter for generic_activation_patch: the whole activation (every position)."""
    return clean.clone()


@dataclass
class EntityPatchResult:
    """Results of `entity_patching`.

    per_prompt: one row per (prompt, activation, layer): clean and corrupt metric, whole-layer
        patch effect (patched - corrupt), control effect (unrelated same-length source; NaN when
        the group had one prompt), summed per-position effects on the entity and the continuation
        positions, and the |per-position effect| of the byte before the entity (0 by causality).
    per_position: mean per-position effect by (activation, layer, offset from the entity start).
    """

    per_prompt: pd.DataFrame
    per_position: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Per (activation, layer): means over prompts, and how often the patch moves toward clean."""
        df = self.per_prompt.copy()
        df["gap"] = df.clean_metric - df.corrupt_metric
        df["toward_clean"] = np.sign(df.whole_layer) == np.sign(df.gap)
        out = df.groupby(["activation", "layer"], sort=False).agg(
            n=("whole_layer", "size"),
            clean_minus_corrupt=("gap", "mean"),
            whole_layer=("whole_layer", "mean"),
            whole_layer_se=("whole_layer", "sem"),
            control_unrelated=("control", "mean"),
            control_se=("control", "sem"),
            entity_positions=("entity_positions", "mean"),
            continuation_positions=("continuation_positions", "mean"),
            prefix_max_abs=("prefix_max_abs", "max"),
            toward_clean=("toward_clean", "mean"),
        ).reset_index()
        return out


@torch.no_grad()
def entity_patching(
    model: HookedIncrementTransformer,
    prompts: Sequence[EntityPrompt] | None = None,
    continuation: str = ".",
    activations: Sequence[str] = ("delta", "position"),
    per_position: bool = True,
    progress: bool = True,
    layers: Sequence[int] | None = None,
) -> EntityPatchResult:
    """Patch real-order δ / positions into reversed-entity runs, per layer (and per position).

    Prompts are grouped by (carrier, length) so each group runs as one batch; within a group,
    the control source of prompt i is the real-order prompt of another entity of the group (i-1).
    The continuation scored is what follows the entity (``clean[entity_end:]``). layers: the layers
    patched (default all).
    """
    if prompts is None:
        prompts = entity_prompts(continuation=continuation)
    if any(len(p.clean) - p.entity_end < 1 for p in prompts):
        raise ValueError("the continuation must have at least one token (the metric scores it)")
    n_layers = model.cfg.n_layers
    layers = list(range(n_layers)) if layers is None else list(layers)
    if not layers or not all(0 <= li < n_layers for li in layers):
        raise ValueError(f"layers must be in [0, {n_layers}), got {layers}")
    groups: dict[tuple[str, int], list[EntityPrompt]] = defaultdict(list)
    for p in prompts:
        groups[(p.carrier, len(p.clean))].append(p)
    names = [tl_utils.get_act_name(a, li) for a in activations for li in layers]
    rows: list[dict] = []
    pos_rows: list[dict] = []
    with _quiet_patching():
        for key, group in tqdm(groups.items(), desc="entity groups", disable=not progress, leave=False):
            n_cont = len(group[0].clean) - group[0].entity_end
            _patch_group(model, key, group, activations, n_cont, per_position, names, rows, pos_rows, layers)
    per_pos = pd.DataFrame(pos_rows)
    if len(per_pos):
        per_pos["weighted"] = per_pos.effect * per_pos.n
        per_pos = per_pos.groupby(["activation", "layer", "offset"], as_index=False)[["weighted", "n"]].sum()
        per_pos["effect"] = per_pos.weighted / per_pos.n
        per_pos = per_pos.drop(columns="weighted")
    return EntityPatchResult(pd.DataFrame(rows), per_pos)


def _patch_group(
    model: HookedIncrementTransformer,
    key: tuple[str, int],
    group: list[EntityPrompt],
    activations: Sequence[str],
    n_cont: int,
    per_position: bool,
    names: list[str],
    rows: list[dict],
    pos_rows: list[dict],
    layers: Sequence[int],
) -> None:
    """Patch one batch of same-carrier, same-length prompts; appends to ``rows`` / ``pos_rows``."""
    carrier, length = key
    device = model.W_E.device
    n_layers = len(layers)  # rows of the result tensors: the patched layers, in order
    metric: Callable[[Tensor], Tensor]
    clean = torch.tensor([p.clean for p in group], device=device)
    corrupt = torch.tensor([p.corrupt for p in group], device=device)
    start, end = group[0].entity_start, group[0].entity_end
    metric = partial(continuation_logprob, tokens=corrupt, n_cont=n_cont)
    clean_metric = continuation_logprob(model(clean), clean, n_cont).cpu()
    corrupt_metric = metric(model(corrupt)).cpu()
    _, clean_cache = model.run_with_cache(clean, names_filter=names)
    control_cache = None
    if len(group) > 1:
        _, control_cache = model.run_with_cache(torch.roll(clean, 1, 0), names_filter=names)
    # per-position patches: from the byte before the entity (a causality check: it must be a no-op,
    # like every earlier byte, which are skipped) to the last position whose activation can reach
    # the metric (the last token's logits are not scored)
    first = max(0, start - 1)
    cells = pd.DataFrame([(li, q) for li in layers for q in range(first, length - 1)], columns=["layer", "pos"])
    row_of = {li: k for k, li in enumerate(layers)}
    whole_cells = pd.DataFrame({"layer": list(layers)})
    for act in activations:
        whole = patching.generic_activation_patch(
            model, corrupt, clean_cache, metric, _whole_layer_setter, act,
            index_df=whole_cells, reduce="none",
        ).values.cpu() - corrupt_metric  # [layer, batch]
        control = torch.full_like(whole, float("nan"))
        if control_cache is not None:
            control = patching.generic_activation_patch(
                model, corrupt, control_cache, metric, _whole_layer_setter, act,
                index_df=whole_cells, reduce="none",
            ).values.cpu() - corrupt_metric
        by_pos = torch.full((n_layers, length - 1, len(group)), float("nan"))
        if per_position:
            res = patching.generic_activation_patch(
                model, corrupt, clean_cache, metric, patching.layer_pos_patch_setter, act,
                index_df=cells, reduce="none",
            )
            rows_idx = torch.tensor([row_of[li] for li in cells.layer.tolist()])
            by_pos[rows_idx, torch.tensor(cells.pos.tolist())] = res.values.cpu() - corrupt_metric
        for i, p in enumerate(group):
            for k, li in enumerate(layers):
                effects = by_pos[k, :, i]
                rows.append({
                    "carrier": carrier, "entity": f"{p.a} {p.b}", "activation": act, "layer": li,
                    "clean_metric": float(clean_metric[i]), "corrupt_metric": float(corrupt_metric[i]),
                    "whole_layer": float(whole[k, i]), "control": float(control[k, i]),
                    "entity_positions": float(effects[start:end].sum()),
                    "continuation_positions": float(effects[end:].sum()),
                    "prefix_max_abs": float(effects[first:start].abs().max()) if start else 0.0,
                })
        if per_position:
            for k, li in enumerate(layers):
                for q in range(first, length - 1):
                    pos_rows.append({"activation": act, "layer": li, "offset": q - start,
                                     "effect": float(by_pos[k, q].mean()), "n": len(group)})


# ---------------------------------------------------------------------------------------- figures


def plot_entity_patching(result: EntityPatchResult, title: str = ""):
    """Left: whole-layer patch effect per layer vs the unrelated-entity control. Right: mean
    per-position δ-patch effect by layer and offset from the entity start."""
    import matplotlib.pyplot as plt

    summary = result.summary()
    acts = list(dict.fromkeys(summary.activation))
    fig, axes = plt.subplots(1, 1 + len(acts), figsize=(4.5 * (1 + len(acts)), 3.8))
    ax = axes[0]
    for k, act in enumerate(acts):
        s = summary[summary.activation == act]
        ax.errorbar(s.layer + 0.1 * k, s.whole_layer, yerr=s.whole_layer_se, fmt="o-", label=f"{act}: real → reversed")
        ax.errorbar(s.layer + 0.1 * k + 0.05, s.control_unrelated, yerr=s.control_se, fmt="x--", label=f"{act}: unrelated entity (control)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(sorted(set(summary.layer)))
    ax.set_xlabel("layer")
    ax.set_ylabel("Δ log-prob of continuation (patched − reversed)")
    ax.legend(fontsize=7)
    ax.set_title("whole-layer patch")
    for ax, act in zip(axes[1:], acts, strict=True):
        pp = result.per_position[result.per_position.activation == act] if len(result.per_position) else None
        if pp is None or not len(pp):
            ax.set_axis_off()
            continue
        grid = pp.pivot(index="layer", columns="offset", values="effect")
        lim = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
        im = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        step = max(1, grid.shape[1] // 16)
        ax.set_xticks(range(0, grid.shape[1], step), [str(c) for c in grid.columns[::step]], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
        ax.axvline(list(grid.columns).index(0) - 0.5 if 0 in grid.columns else -0.5, color="k", lw=0.6)
        ax.set_xlabel("position − entity start (entity starts at the line)")
        ax.set_ylabel("layer")
        ax.set_title(f"per-position {act} patch")
        fig.colorbar(im, ax=ax)
    fig.suptitle(title or "Entity position patching")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- command
