"""Position interventions on real text: does the model use the positions it learned?

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

On a grafted bridge the windows are tokens and the scores are next-*token* losses; integer
positions are 0, 1, ..., n-1 there (the graft's running sum under δ = 1, as HF's own ids), and on
the base model (δ = 1 everywhere) every intervention must be an exact no-op (`base_model_check`).
The command is `analyses.position_patching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import utilities as tl_utils

from analyses._common import Hook, HookSpec, resolve_hooks
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import subject_of

__all__ = [
    "ALL_LAYERS", "INTERVENTIONS", "InterventionResult", "base_model_check", "integer_start",
    "intervention_hooks", "plot_interventions", "position_interventions",
]  # fmt: skip

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
    """The first token's position under δ = 1 (`lens_positions.subject.Subject.integer_start`)."""
    return subject_of(model).integer_start


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
