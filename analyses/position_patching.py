"""Causal tests of the learned positions: does the model use what it learned?

Part 1, interventions on real text (one layer at a time, and all layers at once):

- ``integer``: ``hook_position := 1, 2, ..., n`` (integer RoPE, as at initialisation);
- ``mean_delta``: ``hook_delta :=`` its mean over the window (keeps the scale, drops the
  token-by-token variation; equal to integer positions scaled by the mean δ);
- ``other_prompt``: ``hook_delta :=`` the δ of another window of the same byte length (at the
  same layer, from that window's clean run): a real δ pattern, but someone else's;
- ``shuffled_delta`` (control): a random permutation of the window's own δ along the sequence,
  which keeps their mean and distribution and only breaks which token gets which δ.

For each we report the change in next-byte loss (nats/byte; the change in log-prob of the correct
byte is its negative), in the correct byte's logit, the share of bytes whose log-prob fell, and how
far the positions moved (mean |Δposition| at the intervened layer). With a single-layer
intervention the later layers run on the changed residual stream, so per-layer models recompute
their later δ from it: the effects are total effects. ``integer`` is an exact no-op for integer
RoPE, and so is every intervention when δ is 1 everywhere (checked by the tests).

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

Pretrained rotary models (``--model smollm2-135m`` or ``smollm2-135m-per-layer``): the same
interventions and patches on token windows and BPE entity prompts, scored per next token, with an
exact no-op check on the base model (`analyses._position_patching_bpe`).

Command::

    python -m analyses.position_patching [--model NAME_OR_DIR] [--text-file FILE ...] \
        [--layers L ...] --out out/position_patching
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import patching
from transformer_lens import utilities as tl_utils

from analyses import _tokens
from analyses._common import (
    Hook,
    HookSpec,
    Result,
    add_common_args,
    add_text_args,
    command_main,
    markdown_table,
    resolve_hooks,
    text_windows,
)
from analyses._tokens import is_token_model
from analyses.entities import CARRIERS, PATCHING_ENTITIES
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer
from lens_positions.rotary_models import POSITION_START

INTERVENTIONS = ("integer", "mean_delta", "other_prompt", "shuffled_delta")
ALL_LAYERS = "all"


# ---------------------------------------------------------------------------------------- hooks
def _integer_positions(position: Tensor, hook, first: float = 1.0) -> Tensor:
    """Positions first, first + 1, ..., the positions δ = 1 gives (1..n for the byte models, 0..n-1
    for a pretrained rotary bridge, see `integer_start`), in the activation's shape."""
    n = position.shape[1]
    ramp = first + torch.arange(n, dtype=position.dtype, device=position.device)
    return ramp.view(1, n, *([1] * (position.ndim - 2))).expand_as(position).clone()


def _mean_delta(delta: Tensor, hook) -> Tensor:
    """Every δ replaced by the window's mean δ (per row, per head)."""
    return delta.mean(1, keepdim=True).expand_as(delta).clone()


def _permuted_delta(delta: Tensor, hook, seed: int) -> Tensor:
    """The window's own δ in a random order along the sequence (one permutation per row)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.argsort(torch.rand(delta.shape[:2], generator=g), dim=1).to(delta.device)
    if delta.ndim == 3:
        perm = perm.unsqueeze(-1).expand_as(delta)
    return delta.gather(1, perm)


def integer_start(model) -> float:
    """The first token's position under δ = 1: 1 for the byte models (p_t = sum_{s<=t} δ_s), 0 for a
    pretrained rotary bridge (its running sum starts at `rotary_models.POSITION_START`, as HF's ids)."""
    return POSITION_START + 1.0 if is_token_model(model) else 1.0


def _replace(act: Tensor, hook, value: Tensor) -> Tensor:
    return value.to(act.device, act.dtype).clone()


def intervention_hooks(
    kind: str,
    layers: Sequence[int],
    partner_deltas: Sequence[Tensor] | None = None,
    seed: int = 0,
    first_position: float = 1.0,
) -> list[Hook]:
    """The TransformerLens hooks of one intervention at the given layers.

    partner_deltas: for ``other_prompt``, per layer, the δ [batch, pos(, heads)] to put in.
    first_position: the first token's integer position (`integer_start`).
    """
    hooks: list[Hook] = []
    for layer in layers:
        delta_name = tl_utils.get_act_name("delta", layer)
        if kind == "integer":
            hooks.append((tl_utils.get_act_name("position", layer), partial(_integer_positions, first=first_position)))
        elif kind == "mean_delta":
            hooks.append((delta_name, _mean_delta))
        elif kind == "shuffled_delta":
            hooks.append((delta_name, partial(_permuted_delta, seed=seed * 1000 + layer)))
        elif kind == "other_prompt":
            if partner_deltas is None:
                raise ValueError("other_prompt needs partner_deltas")
            hooks.append((delta_name, partial(_replace, value=partner_deltas[layer])))
        else:
            raise ValueError(f"unknown intervention {kind!r}; expected one of {INTERVENTIONS}")
    return hooks


# ---------------------------------------------------------------------------------------- part 1
def _next_byte_scores(logits: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token loss (nats) and logit of the correct next token (byte), both [batch, pos-1]."""
    logits = logits[:, :-1].float()
    target = tokens[:, 1:].unsqueeze(-1)
    loss = -F.log_softmax(logits, -1).gather(-1, target).squeeze(-1)
    return loss, logits.gather(-1, target).squeeze(-1)


@dataclass
class InterventionResult:
    """Results of `position_interventions`.

    table: one row per (intervention, layer) with mean changes per window (intervened - clean):
        d_loss (nats/byte), its standard error over windows, d_logprob (of the correct byte, which
        is -d_loss), d_logit (correct byte), frac_worse (share of bytes whose log-prob fell), mean_abs_dpos (|Δposition| at the
        intervened layers, head mean), n_windows.
    per_window: d_loss and d_logit per (intervention, layer, window).
    clean_loss: mean next-byte loss of the clean runs.
    """

    table: pd.DataFrame
    per_window: pd.DataFrame
    clean_loss: float


@torch.no_grad()
def position_interventions(
    model: HookedIncrementTransformer,
    windows: Sequence[Sequence[int]],
    interventions: Sequence[str] = INTERVENTIONS,
    layers: Sequence[int] | None = None,
    include_all: bool = True,
    batch_size: int = 16,
    seed: int = 0,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> InterventionResult:
    """Replace learned positions per layer and measure what it costs the model.

    windows: token lists of one common length (separator or BOS first), e.g. from
        `analyses._common.byte_windows` (`analyses._tokens.token_windows` for a rotary bridge).
        ``other_prompt`` pairs window i with window i-1 (needs at least two windows).
    fwd_hooks: hooks applied in every run, clean and intervened (they run before the
        intervention's own hooks).
    """
    n_layers = model.cfg.n_layers
    lengths = {len(w) for w in windows}
    if len(lengths) != 1:
        raise ValueError(f"windows must all have the same length, got lengths {sorted(lengths)}")
    device = model.W_E.device
    tokens = torch.tensor([list(w) for w in windows], dtype=torch.long)
    N = tokens.shape[0]
    layers = list(range(n_layers)) if layers is None else list(layers)
    if not all(0 <= li < n_layers for li in layers):
        raise ValueError(f"layers must be in [0, {n_layers}), got {layers}")
    targets: list[tuple[str, list[int]]] = [(str(li), [li]) for li in layers]
    if include_all:
        targets.append((ALL_LAYERS, list(range(n_layers))))
    batches = [list(range(i, min(N, i + batch_size))) for i in range(0, N, batch_size)]
    delta_names = [tl_utils.get_act_name("delta", li) for li in range(n_layers)]
    pos_names = [tl_utils.get_act_name("position", li) for li in range(n_layers)]

    def run(batch_tokens: Tensor, hooks: list[Hook], capture: Sequence[str]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        # the user's hooks, then the intervention's; run_with_cache records after both
        with model.hooks(fwd_hooks=resolve_hooks(fwd_hooks, batch_tokens) + hooks):
            logits, cache = model.run_with_cache(batch_tokens, names_filter=list(capture))
        loss, logit = _next_byte_scores(logits, batch_tokens)
        return loss.cpu(), logit.cpu(), {n: cache[n].float().cpu() for n in capture}

    # clean runs: losses, logits, every layer's δ (for other_prompt) and positions
    clean_loss = torch.zeros(N, tokens.shape[1] - 1)
    clean_logit = torch.zeros_like(clean_loss)
    clean_delta: list[list[Tensor]] = [[] for _ in range(n_layers)]
    clean_pos: list[list[Tensor]] = [[] for _ in range(n_layers)]
    for idx in tqdm(batches, desc="clean", disable=not progress, leave=False):
        loss, logit, cap = run(tokens[idx].to(device), [], delta_names + pos_names)
        clean_loss[idx], clean_logit[idx] = loss, logit
        for li in range(n_layers):
            clean_delta[li].append(cap[delta_names[li]])
            clean_pos[li].append(cap[pos_names[li]])
    deltas = [torch.cat(d) for d in clean_delta]
    positions = [torch.cat(p) for p in clean_pos]
    partner = torch.roll(torch.arange(N), 1)  # window i gets the δ of window i-1

    rows: list[dict] = []
    per_window: list[dict] = []
    jobs = [(k, t) for k in interventions for t in targets]
    for kind, (label, target_layers) in tqdm(jobs, desc="interventions", disable=not progress, leave=False):
        if kind == "other_prompt" and N < 2:
            continue
        d_loss = torch.zeros(N)
        d_logit = torch.zeros(N)
        worse = torch.zeros(N)
        dpos = torch.zeros(N)
        for b, idx in enumerate(batches):
            partner_deltas = [deltas[li][partner[idx]] for li in range(n_layers)] if kind == "other_prompt" else None
            hooks = intervention_hooks(kind, target_layers, partner_deltas, seed=seed * 100_003 + b,
                                       first_position=integer_start(model))
            capture = [pos_names[li] for li in target_layers]
            loss, logit, cap = run(tokens[idx].to(device), hooks, capture)
            change = loss - clean_loss[idx]
            d_loss[idx] = change.mean(1)
            d_logit[idx] = (logit - clean_logit[idx]).mean(1)
            worse[idx] = (change > 0).float().mean(1)
            moved = [(cap[pos_names[li]] - positions[li][idx]).abs() for li in target_layers]
            dpos[idx] = torch.stack([m.reshape(len(idx), -1).mean(1) for m in moved]).mean(0)
        se = float(d_loss.std() / np.sqrt(N)) if N > 1 else float("nan")
        rows.append({
            "intervention": kind, "layer": label, "d_loss": float(d_loss.mean()), "d_loss_se": se,
            # the correct byte's log-prob is minus its loss: listed for reading convenience
            "d_logprob": -float(d_loss.mean()), "d_logit": float(d_logit.mean()), "frac_worse": float(worse.mean()),
            "mean_abs_dpos": float(dpos.mean()), "n_windows": N,
        })
        per_window.extend(
            {"intervention": kind, "layer": label, "window": i, "d_loss": float(d_loss[i]), "d_logit": float(d_logit[i])}
            for i in range(N)
        )
    return InterventionResult(pd.DataFrame(rows), pd.DataFrame(per_window), float(clean_loss.mean()))


# ---------------------------------------------------------------------------------------- part 2
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
def plot_interventions(result: InterventionResult, title: str = "", unit: str = "nats/byte"):
    """Δloss per layer and intervention (bars with standard errors); shuffled δ is the control."""
    import matplotlib.pyplot as plt

    table = result.table
    layers = list(dict.fromkeys(table.layer))
    kinds = list(dict.fromkeys(table.intervention))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(layers) * max(1, len(kinds)) / 3, 3.8))
    width = 0.8 / max(1, len(kinds))
    for k, kind in enumerate(kinds):
        sel = table[table.intervention == kind].set_index("layer").reindex(layers)
        x = np.arange(len(layers)) + (k - (len(kinds) - 1) / 2) * width
        hatch = "//" if kind == "shuffled_delta" else None
        ax.bar(x, sel.d_loss, width, yerr=sel.d_loss_se, label=kind + (" (control)" if hatch else ""), hatch=hatch)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(layers)), [f"L{li}" if li != ALL_LAYERS else "all" for li in layers])
    ax.set_ylabel(f"Δ loss ({unit}), intervened − clean")
    ax.set_title(title or f"Position interventions (clean loss {result.clean_loss:.3f})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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
@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
    max_docs: int | None = None
    held_out: float | None = None
    window_bytes: int | None = None
    max_windows: int = 64
    window_tokens: int = _tokens.WINDOW_TOKENS  # pretrained rotary models: tokens per window after the BOS
    layers: list[int] | None = None  # layers intervened on and patched (default all)
    interventions: list[str] = field(default_factory=lambda: list(INTERVENTIONS))
    continuation: str = "."
    max_entities: int | None = None
    carriers: int = len(CARRIERS)
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
    add_text_args(parser, max_windows=64)
    parser.add_argument("--interventions", nargs="+", default=list(INTERVENTIONS), choices=INTERVENTIONS)
    parser.add_argument("--continuation", default=".", help="continuation scored after each entity")
    parser.add_argument("--max-entities", type=int, default=None, help="use only the first N entities")
    parser.add_argument("--carriers", type=int, default=len(CARRIERS), help="use only the first N carriers")
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


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """Part 1 (tables interventions, interventions_per_window) and part 2 (entity_patching and its
    per-prompt and per-position tables), with a figure each. A pretrained rotary bridge
    (`analyses._tokens.is_token_model`) runs the token-level version, `analyses._position_patching_bpe`."""
    if is_token_model(model):
        from analyses import _position_patching_bpe

        return _position_patching_bpe.run(model, params)
    p = params
    variant = model.cfg.variant_name
    windows = text_windows(model, p.text_file, p.window_bytes, p.max_windows, p.max_docs, p.held_out)
    result = position_interventions(
        model, windows, p.interventions, layers=p.layers, batch_size=p.batch_size, seed=p.seed, progress=p.progress
    )
    per_head = " (per-head: |Δposition| is averaged over heads)" if model.cfg.n_delta_outputs > 1 else ""
    out = intervention_report(result, variant, f"{len(windows)} windows of {len(windows[0]) - 1} bytes", "byte", per_head)
    out.facts.update({"n_layers": model.cfg.n_layers, "windows": len(windows), "window_bytes": len(windows[0]) - 1})
    if not p.no_entities:
        entities = PATCHING_ENTITIES[: p.max_entities] if p.max_entities else PATCHING_ENTITIES
        add_entity_patching(out, model, entity_prompts(entities, CARRIERS[: p.carriers], p.continuation), p, variant)
        out.facts.update({"entities": len(entities), "carriers": min(p.carriers, len(CARRIERS))})
    return out


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("position_patching", argv)


if __name__ == "__main__":
    main()
