"""Which upstream components set a layer's δ? Direct logit attribution, but for increments.

A per-layer model's δ at layer l and token t is ``max_delta * sigmoid(raw)``, with the pre-squash
logit ``raw = MLP_l(RMSNorm(resid_pre_l[t]))``. The residual stream entering block l is a sum of
parts, ``resid_pre_l = embed + sum_{i<l} (sum_h head_{i,h} + mlp_i)`` (there are no biases), from
``ActivationCache.stack_head_results`` and ``blocks.{i}.hook_mlp_out``. Each part c gets

- ``grad_x_input``: ``g · c`` with ``g = ∂raw/∂resid_pre`` at the actual input, the gradient taken
  *through* the increment MLP's RMSNorm. Completeness holds exactly: the parts sum to
  ``g · resid_pre`` (the "linearised δ-logit"). Note that RMSNorm is scale-invariant, so
  ``g · resid_pre ≈ 0`` (Euler: a degree-0 homogeneous function has ``x · ∇f = 0``; only the
  norm's tiny eps breaks it): these attributions are *relative* — they say which parts turn the
  residual's direction towards a larger or smaller δ, and sum to about nothing. They are the first-
  order prediction of zero-ablating a part (which renormalises the rest).
- ``grad_x_input_frozen``: the same with the norm's scale held at its actual value (the usual
  direct-logit-attribution convention, as with a cached LayerNorm scale). These sum to
  ``g_frozen · resid_pre = (∂raw/∂n) · n`` (n = the MLP's normalised input), the linearisation of
  raw about a zero input, which is not near zero.
- ``grad_x_centered``: ``g · (c - mean c)``, the first-order prediction of mean-ablation.

and, as the check, the actual effects of recomputing the increment MLP without the part:
``zero_ablation = raw(x) - raw(x - c)`` and ``mean_ablation = raw(x) - raw(x - c + mean c)`` (the
mean over the analysed positions), whose correlations with the linear attributions are reported.
Baseline: ``random_same_norm`` = ``g · r`` for a random vector r with ``|r| = |c|``: what an
unrelated vector of the part's size would get. Units: δ-logits; ``gain = dδ/draw`` converts.

For the shared variant the increment MLP reads the embedding alone (softplus, no norm): one part,
``embed``, carries everything (the trivial case). ``none`` and frozen models have no increment MLP.
Per-head models: every output head's δ-logit is attributed separately (``out_head``); printed tables
average over output heads.

Grafted bridges (``--model smollm2-135m-per-layer``; `DeltaMLP` with its RMSNorm, as the byte
models): windows of BOS + ``--window-tokens`` tokens of the English held-out sample unless
``--text-file``, the BOS left out of every statistic (its δ shifts every later position alike and
RoPE never sees it), each earlier layer's whole attention output as one part
(`analyses._residual_parts`), and a check that the parts add up to the δ MLP's input. The base
model (δ = 1) has nothing to attribute.

Command::

    python -m analyses.delta_attribution [--model NAME_OR_DIR] [--text-file FILE ...] \
        --out out/delta_attribution
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from analyses import _tokens
from analyses._common import (
    HookSpec,
    Result,
    add_common_args,
    add_text_args,
    command_main,
    markdown_table,
    pad_batch,
    resolve_hooks,
    text_windows,
)
from analyses._residual_parts import part_names, residual_parts, residual_sum_check
from lens_positions import HookedIncrementTransformer
from lens_positions.subject import Subject, subject_of

# ---------------------------------------------------------------------------------------- δ-logits
NO_DELTA_MLP = ("the base model (increments='none') has δ = 1 at every token and no δ MLP: there is "
                "nothing to attribute (load a graft, e.g. smollm2-135m-per-layer)")


def increment_mlp_prefix(model: HookedIncrementTransformer | Subject, layer: int | None) -> str:
    """Hook-name prefix of the increment MLP feeding ``layer`` (None or any layer for shared).

    Raises ValueError for models without an increment MLP (``none``, frozen tables).
    """
    s = subject_of(model)
    if s.unit == "byte" and s.model.cfg.frozen_deltas:
        raise ValueError("frozen-δ models look δ up in a per-byte table: there is no increment MLP to attribute")
    if s.increments == "none":
        if s.unit == "token":
            raise ValueError(NO_DELTA_MLP)
        raise ValueError("integer-RoPE models (increments='none') have δ = 1: there is nothing to attribute")
    if s.increments == "shared":
        return "delta_mlp"
    if layer is None or not 0 <= layer < s.n_layers:
        what = "grafts" if s.unit == "token" else "models"
        raise ValueError(f"per-layer {what} need a layer in [0, {s.n_layers}), got {layer}")
    return f"blocks.{layer}.delta_mlp"


def delta_logits(
    model: HookedIncrementTransformer,
    layer: int | None,
    x: Float[Tensor, "... d_model"],
    frozen_scale: Tensor | None = None,
) -> Float[Tensor, "... n_out"]:
    """The increment MLP's pre-squash output (the δ-logit) for inputs x.

    x is what the MLP reads: ``resid_pre`` of ``layer`` (per-layer) or the embedding (shared).
    frozen_scale: use this RMSNorm scale [..., 1] instead of the one computed from x (per-layer
    only), for attributions and ablations "with the norm's scale frozen".
    Differentiable; it runs the model's own increment MLP and reads its ``hook_raw``.
    """
    prefix = increment_mlp_prefix(model, layer)
    mlp = model.delta_mlp if prefix == "delta_mlp" else model.blocks[layer].delta_mlp
    store: dict[str, Tensor] = {}

    def keep(raw: Tensor, hook) -> None:
        store["raw"] = raw

    hooks = [(f"{prefix}.hook_raw", keep)]
    if frozen_scale is not None and mlp.ln is not None:
        hooks.append((f"{prefix}.ln.hook_scale", lambda scale, hook: frozen_scale.expand_as(scale)))
    with model.hooks(fwd_hooks=hooks):
        mlp(x)
    return store["raw"]


def _norm_scale(model: HookedIncrementTransformer, prefix: str, x: Tensor) -> Tensor | None:
    """The increment MLP's RMSNorm scale [..., 1] at x (None without a norm)."""
    mlp = model.delta_mlp if prefix == "delta_mlp" else model.get_submodule(prefix)
    if mlp.ln is None:
        return None
    eps = torch.finfo(x.dtype).eps if mlp.ln.eps is None else mlp.ln.eps
    return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def _gain(model: HookedIncrementTransformer, prefix: str, raw: Tensor) -> Tensor:
    """dδ/draw of the MLP's squash: max_delta σ(1-σ) (sigmoid), σ (softplus), or
    (1 - 1/max_delta)(1 - tanh²(raw / max_delta)) (signed, see `signed_squash`)."""
    mlp = model.delta_mlp if prefix == "delta_mlp" else model.get_submodule(prefix)
    raw = raw.float()
    if mlp.squash == "tanh":
        t = torch.tanh(raw / mlp.max_delta)
        return (1 - 1 / mlp.max_delta) * (1 - t * t)
    s = torch.sigmoid(raw)
    return mlp.max_delta * s * (1 - s) if mlp.squash == "sigmoid" else s


# ---------------------------------------------------------------------------------------- one batch
@dataclass
class DeltaAttribution:
    """Attribution of one layer's δ-logits for one batch.

    labels: the parts, in order: "embed", then per earlier layer i its heads "L{i}H{h}" and "L{i}MLP".
    parts: [n_parts, batch, pos, d_model], summing to ``resid_pre`` (the MLP's input).
    mask: [batch, pos] real (unpadded) positions.
    raw, delta, gain, linearised, linearised_frozen: [batch, pos, n_out]; linearised = g · resid_pre
        (≈ 0, see the module docstring), linearised_frozen = g_frozen · resid_pre.
    grad_x_input, grad_x_input_frozen, grad_x_centered, zero_ablation, mean_ablation,
        random_same_norm: [n_parts, batch, pos, n_out] in δ-logit units.
    """

    layer: int | None
    labels: list[str]
    tokens: Int[Tensor, "batch pos"]
    mask: Bool[Tensor, "batch pos"]
    resid: Float[Tensor, "batch pos d_model"]
    parts: Float[Tensor, "n_parts batch pos d_model"]
    raw: Float[Tensor, "batch pos n_out"]
    delta: Float[Tensor, "batch pos n_out"]
    gain: Float[Tensor, "batch pos n_out"]
    linearised: Float[Tensor, "batch pos n_out"]
    linearised_frozen: Float[Tensor, "batch pos n_out"]
    grad_x_input: Float[Tensor, "n_parts batch pos n_out"]
    grad_x_input_frozen: Float[Tensor, "n_parts batch pos n_out"]
    grad_x_centered: Float[Tensor, "n_parts batch pos n_out"]
    zero_ablation: Float[Tensor, "n_parts batch pos n_out"]
    mean_ablation: Float[Tensor, "n_parts batch pos n_out"]
    random_same_norm: Float[Tensor, "n_parts batch pos n_out"]

    METRICS = ("grad_x_input", "grad_x_input_frozen", "grad_x_centered", "zero_ablation", "mean_ablation", "random_same_norm")


def attribute_batch(
    model: HookedIncrementTransformer,
    tokens: Int[Tensor, "batch pos"],
    layer: int | None,
    mask: Bool[Tensor, "batch pos"] | None = None,
    part_means: Float[Tensor, "n_parts d_model"] | None = None,
    fwd_hooks: HookSpec = None,
    seed: int = 0,
) -> DeltaAttribution:
    """Attribute the δ-logits of ``layer`` (ignored for shared models) on one batch.

    part_means: the mean of each part for mean-ablation; by default the mean over this batch's
    real positions.
    """
    prefix = increment_mlp_prefix(model, layer)
    shared = prefix == "delta_mlp"
    tokens = tokens.to(model.W_E.device)
    mask = torch.ones(tokens.shape, dtype=torch.bool) if mask is None else mask.bool()
    mask = mask.to(tokens.device)
    read_layer = 0 if shared else layer
    names = [f"blocks.{read_layer}.hook_resid_pre", f"blocks.{read_layer}.hook_delta", *part_names(model, read_layer)]
    with torch.no_grad(), model.hooks(fwd_hooks=resolve_hooks(fwd_hooks, tokens)):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    if shared:
        parts, labels = cache["hook_embed"][None], ["embed"]
        x = cache["hook_embed"]
    else:
        parts, labels = residual_parts(cache, model, layer)
        x = cache[f"blocks.{layer}.hook_resid_pre"]
    parts, x = parts.detach().float(), x.detach().float()
    n_parts = parts.shape[0]

    # gradients of every output head's δ-logit, through the norm and with its scale frozen
    scale = _norm_scale(model, prefix, x)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        raw = delta_logits(model, layer, xg)
        raw_frozen = delta_logits(model, layer, xg, frozen_scale=None if scale is None else scale.detach())
        n_out = raw.shape[-1]
        grads = torch.stack([torch.autograd.grad(raw[..., h].sum(), xg, retain_graph=True)[0] for h in range(n_out)])
        grads_frozen = torch.stack([torch.autograd.grad(raw_frozen[..., h].sum(), xg, retain_graph=True)[0] for h in range(n_out)])
    raw = raw.detach()
    # [n_out, batch, pos, d] · [n_parts, batch, pos, d] -> [n_parts, batch, pos, n_out]
    gxi = torch.einsum("obpd,cbpd->cbpo", grads, parts)
    gxi_frozen = torch.einsum("obpd,cbpd->cbpo", grads_frozen, parts)
    if part_means is None:
        weights = mask.float()[None, :, :, None]
        part_means = (parts * weights).sum((1, 2)) / weights.sum((1, 2)).clamp(min=1)
    part_means = part_means.to(parts)
    centered = parts - part_means[:, None, None, :]
    gxc = torch.einsum("obpd,cbpd->cbpo", grads, centered)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(parts.shape, generator=g).to(parts)
    noise = noise * (parts.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True).clamp(min=1e-12))
    rnd = torch.einsum("obpd,cbpd->cbpo", grads, noise)
    with torch.no_grad():
        zero = torch.stack([raw - delta_logits(model, layer, x - parts[c]) for c in range(n_parts)])
        mean = torch.stack([raw - delta_logits(model, layer, x - centered[c]) for c in range(n_parts)])
    delta = cache[f"blocks.{read_layer}.hook_delta"].detach().float()
    if delta.ndim == 2:
        delta = delta[..., None]
    return DeltaAttribution(
        layer=None if shared else layer, labels=labels, tokens=tokens.cpu(), mask=mask.cpu(), resid=x.cpu(), parts=parts.cpu(),
        raw=raw.cpu(), delta=delta.cpu(), gain=_gain(model, prefix, raw).cpu(),
        linearised=torch.einsum("obpd,bpd->bpo", grads, x).cpu(),
        linearised_frozen=torch.einsum("obpd,bpd->bpo", grads_frozen, x).cpu(),
        grad_x_input=gxi.cpu(), grad_x_input_frozen=gxi_frozen.cpu(), grad_x_centered=gxc.cpu(),
        zero_ablation=zero.cpu(), mean_ablation=mean.cpu(), random_same_norm=rnd.cpu(),
    )


# ---------------------------------------------------------------------------------------- many
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


@dataclass
class AttributionSummary:
    """Attribution summarised over many windows.

    parts: one row per (layer, part, out_head): means over positions of every metric and of its
        absolute value (``abs_<metric>``), and ``share`` = the part's share of the layer's total
        mean |grad_x_input|.
    checks: one row per (layer, out_head): completeness error (max |sum of parts' g·c − g·x|),
        mean |g·x|, mean |raw|, mean g_frozen·x, Pearson correlations of the linear attributions
        with the ablations, sign agreement, and mean |grad_x_input| over the random baseline.
    sample: a random sample of (layer, part, grad_x_input, zero_ablation, ...) points for plots.
    """

    parts: pd.DataFrame
    checks: pd.DataFrame
    sample: pd.DataFrame


def delta_attribution(
    model: HookedIncrementTransformer,
    windows: Sequence[Sequence[int]],
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    sample_size: int = 20_000,
    seed: int = 0,
    progress: bool = True,
    skip_first: int = 0,
) -> AttributionSummary:
    """Attribute every (or the given) layer's δ-logits over many token windows.

    Mean-ablation uses each part's mean over all windows' real positions (a first pass computes
    it). Shared models have one increment MLP: they are analysed once, as layer 0.
    skip_first: leave each window's first positions out of every statistic (a bridge's BOS: its δ
    moves every later position alike, so RoPE never sees it).
    """
    pad = _pad_id(model)
    cfg = model.cfg
    shared = increment_mlp_prefix(model, 0) == "delta_mlp"
    layers = [0] if shared else (list(range(cfg.n_layers)) if layers is None else list(layers))
    rng = np.random.default_rng(seed)
    batches = [list(range(i, min(len(windows), i + batch_size))) for i in range(0, len(windows), batch_size)]
    part_rows: list[dict] = []
    check_rows: list[dict] = []
    samples: list[pd.DataFrame] = []
    for layer in tqdm(layers, desc="layers", disable=not progress, leave=False):
        # pass 1: each part's mean over all real positions (for mean-ablation)
        total, count = None, 0
        for idx in batches:
            tokens, lengths = pad_batch([windows[i] for i in idx], pad=pad)
            mask = _real_mask(tokens, lengths, skip_first)
            parts = _parts_only(model, tokens, None if shared else layer, fwd_hooks)
            s = (parts * mask[None, :, :, None]).sum((1, 2))
            total = s if total is None else total + s
            count += int(mask.sum())
        means = total / max(count, 1)
        acc: dict[str, list[np.ndarray]] = {m: [] for m in DeltaAttribution.METRICS}
        extra: dict[str, list[np.ndarray]] = {k: [] for k in ("linearised", "linearised_frozen", "raw", "complete")}
        labels: list[str] = []
        for b, idx in enumerate(tqdm(batches, desc=f"layer {layer}", disable=not progress, leave=False)):
            tokens, lengths = pad_batch([windows[i] for i in idx], pad=pad)
            mask = _real_mask(tokens, lengths, skip_first)
            att = attribute_batch(model, tokens, None if shared else layer, mask, means, fwd_hooks, seed=seed + b)
            labels = att.labels
            m = att.mask
            for name in DeltaAttribution.METRICS:
                acc[name].append(getattr(att, name)[:, m].numpy())  # [n_parts, n_positions, n_out]
            extra["linearised"].append(att.linearised[m].numpy())
            extra["linearised_frozen"].append(att.linearised_frozen[m].numpy())
            extra["raw"].append(att.raw[m].numpy())
            extra["complete"].append((att.grad_x_input.sum(0) - att.linearised)[m].abs().numpy())
        data = {k: np.concatenate(v, axis=1) for k, v in acc.items()}
        ex = {k: np.concatenate(v, axis=0) for k, v in extra.items()}
        n_parts, n_pos, n_out = data["grad_x_input"].shape
        total_abs = np.abs(data["grad_x_input"]).mean(1).sum(0)  # [n_out]
        label = "shared" if shared else layer
        for c, name in enumerate(labels):
            for h in range(n_out):
                row: dict[str, object] = {"layer": label, "part": name, "out_head": h}
                for metric in DeltaAttribution.METRICS:
                    row[metric] = float(data[metric][c, :, h].mean())
                    row[f"abs_{metric}"] = float(np.abs(data[metric][c, :, h]).mean())
                row["share"] = row["abs_grad_x_input"] / total_abs[h] if total_abs[h] > 0 else float("nan")
                part_rows.append(row)
        for h in range(n_out):
            gxi, zero = data["grad_x_input"][:, :, h].ravel(), data["zero_ablation"][:, :, h].ravel()
            check_rows.append({
                "layer": label, "out_head": h, "parts": n_parts, "positions": n_pos,
                "completeness_err": float(ex["complete"][:, h].max()),
                "mean_abs_g_dot_x": float(np.abs(ex["linearised"][:, h]).mean()),
                "mean_g_frozen_dot_x": float(ex["linearised_frozen"][:, h].mean()),
                "mean_abs_raw": float(np.abs(ex["raw"][:, h]).mean()),
                "r_gxi_zero": _pearson(gxi, zero),
                "r_centered_mean": _pearson(data["grad_x_centered"][:, :, h].ravel(), data["mean_ablation"][:, :, h].ravel()),
                "r_frozen_zero": _pearson(data["grad_x_input_frozen"][:, :, h].ravel(), zero),
                "sign_agree": float((np.sign(gxi) == np.sign(zero))[np.abs(zero) > 0].mean()) if np.any(zero != 0) else float("nan"),
                "gxi_over_random": float(np.abs(gxi).mean() / max(np.abs(data["random_same_norm"][:, :, h]).mean(), 1e-30)),
            })
        take = rng.choice(n_parts * n_pos * n_out, size=min(sample_size, n_parts * n_pos * n_out), replace=False)
        c_idx, p_idx, h_idx = np.unravel_index(take, (n_parts, n_pos, n_out))
        samples.append(pd.DataFrame({
            "layer": [label] * len(take), "part": np.asarray(labels)[c_idx], "out_head": h_idx,
            **{m: data[m][c_idx, p_idx, h_idx] for m in DeltaAttribution.METRICS},
        }))
    return AttributionSummary(pd.DataFrame(part_rows), pd.DataFrame(check_rows), pd.concat(samples, ignore_index=True))


def _pad_id(model: HookedIncrementTransformer) -> int:
    """The token right-padding uses: the separator, or a bridge's pad id."""
    return subject_of(model).pad_id


def _real_mask(tokens: Tensor, lengths: Tensor, skip_first: int = 0) -> Bool[Tensor, "batch pos"]:
    """Positions that are real (not padding) and not among the first ``skip_first``."""
    pos = torch.arange(tokens.shape[1])[None]
    return (pos < lengths[:, None]) & (pos >= skip_first)


@torch.no_grad()
def _parts_only(model: HookedIncrementTransformer, tokens: Tensor, layer: int | None, fwd_hooks: HookSpec) -> Tensor:
    """The residual parts [n_parts, batch, pos, d_model] entering ``layer`` (embedding if None)."""
    tokens = tokens.to(model.W_E.device)
    read = 0 if layer is None else layer
    names = part_names(model, read)
    with model.hooks(fwd_hooks=resolve_hooks(fwd_hooks, tokens)):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    if layer is None:
        return cache["hook_embed"][None].float().cpu()
    return residual_parts(cache, model, layer)[0].float().cpu()


def layer_table(summary: AttributionSummary, top: int = 8) -> pd.DataFrame:
    """Per layer, the ``top`` parts by mean |grad_x_input| (averaged over output heads)."""
    cols = ["grad_x_input", "abs_grad_x_input", "abs_grad_x_input_frozen", "zero_ablation", "abs_zero_ablation",
            "mean_ablation", "abs_random_same_norm", "share"]
    mean = summary.parts.groupby(["layer", "part"], sort=False)[cols].mean().reset_index()
    tops = [g.sort_values("abs_grad_x_input", ascending=False).head(top) for _, g in mean.groupby("layer", sort=False)]
    return pd.concat(tops, ignore_index=True)


# ---------------------------------------------------------------------------------------- figures
def plot_attribution(summary: AttributionSummary, title: str = ""):
    """Left: each part's share of the mean |g·c| per layer (blank: not upstream). Right: g·c
    against the actual zero-ablation effect, per part and position (the check), with y = x."""
    import matplotlib.pyplot as plt

    parts = summary.parts.groupby(["layer", "part"], sort=False).share.mean().reset_index()
    order = list(dict.fromkeys(parts.part))
    layers = list(dict.fromkeys(parts.layer))
    grid = np.full((len(layers), len(order)), np.nan)
    for r in parts.itertuples():
        grid[layers.index(r.layer), order.index(r.part)] = r.share
    many = len(layers) > 8  # e.g. a 30-layer pretrained graft: taller rows, layers coloured on a scale
    height = max(4.0, 0.22 * len(layers) + 1.8)
    fig, axes = plt.subplots(1, 2, figsize=(min(4 + 0.25 * len(order), 16) + 4.5, height),
                             gridspec_kw={"width_ratios": [max(2, len(order) / 8), 1.3]})
    im = axes[0].imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    axes[0].set_xticks(range(len(order)), order, rotation=90, fontsize=6)
    axes[0].set_yticks(range(len(layers)), [f"δ of L{li}" if li != "shared" else "shared δ" for li in layers],
                       fontsize=6 if many else None)
    axes[0].set_title("share of mean |gradient × input|")
    fig.colorbar(im, ax=axes[0])
    s = summary.sample
    if many:
        sc = axes[1].scatter(s.grad_x_input, s.zero_ablation, s=3, alpha=0.4, c=s.layer.astype(float), cmap="viridis",
                             rasterized=True)
        fig.colorbar(sc, ax=axes[1], label="layer of δ")
    for li in [] if many else layers:
        sel = s[s.layer == li]
        axes[1].scatter(sel.grad_x_input, sel.zero_ablation, s=3, alpha=0.4, label=f"L{li}" if li != "shared" else "shared",
                        rasterized=True)  # 20k points: a bitmap inside the SVG keeps it small
    lim = float(np.nanmax(np.abs(s[["grad_x_input", "zero_ablation"]].to_numpy()))) if len(s) else 1.0
    axes[1].plot([-lim, lim], [-lim, lim], "k:", lw=1, label="y = x")
    axes[1].set_xlabel("gradient × input (δ-logit)")
    axes[1].set_ylabel("zero-ablation effect raw(x) − raw(x − c)")
    axes[1].set_title("linear attribution vs ablation")
    axes[1].legend(fontsize=6, markerscale=3)
    fig.suptitle(title or "δ attribution")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- command
#: Windows of the byte models and of ``--full``; a bridge's first look takes fewer (30 layers of
#: 32 windows of 128 tokens took over 4 minutes on two cores, 8 windows 126 s).
FULL_MAX_WINDOWS = 32
TOKEN_FIRST_LOOK_WINDOWS = 4


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    text_file: list[str] | None = None  # None: the shipped held-out sample
    max_docs: int | None = None
    held_out: float | None = None
    window_bytes: int | None = None
    max_windows: int | None = None  # None: FULL_MAX_WINDOWS, or TOKEN_FIRST_LOOK_WINDOWS on a bridge
    window_tokens: int = _tokens.WINDOW_TOKENS  # pretrained rotary models: tokens per window after the BOS
    layers: list[int] | None = None
    full: bool = False  # a bridge: FULL_MAX_WINDOWS windows instead of the first look
    top: int = 8
    seed: int = 0
    batch_size: int = 16
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.delta_attribution", description=__doc__.split("\n")[0]
    )
    add_common_args(parser, "out/delta_attribution", batch_size=16, seed=True)
    add_text_args(parser, max_windows=FULL_MAX_WINDOWS)
    parser.set_defaults(max_windows=None)  # resolved per unit in `run`
    parser.add_argument("--full", action="store_true",
                        help=f"a bridge: {FULL_MAX_WINDOWS} windows instead of the first look's "
                             f"{TOKEN_FIRST_LOOK_WINDOWS}")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="layers to attribute (default all)")
    parser.add_argument("--top", type=int, default=8, help="parts per layer in the printed table")
    _tokens.add_window_tokens_arg(parser)
    return parser


def run(model: HookedIncrementTransformer | Subject, params: Params) -> Result:
    """`delta_attribution` over windows of held-out text: tables parts and checks (a bridge: and
    residual_sum), the attribution figure; a Result saying so for models without an increment
    MLP."""
    s = subject_of(model)
    first_look = s.unit == "token" and not params.full
    p = replace(params, max_windows=params.max_windows or (
        TOKEN_FIRST_LOOK_WINDOWS if first_look else FULL_MAX_WINDOWS))
    model = s.model
    try:
        increment_mlp_prefix(s, 0)
    except ValueError as e:
        facts = {"variant": s.label, "unit": s.unit}
        if s.unit == "token":
            facts["increments"] = s.increments
        return Result(f"## δ attribution ({s.label})\n\nNothing to attribute: {e}.", facts=facts)
    if s.unit == "token":
        windows, source = _tokens.held_out_windows(model, p)
        what = f"{len(windows)} windows of {p.window_tokens} tokens of {source}, BOS left out"
        summary = delta_attribution(model, windows, p.layers, batch_size=p.batch_size, seed=p.seed,
                                    progress=p.progress, skip_first=1)
    else:
        windows = text_windows(model, p.text_file, p.window_bytes, p.max_windows, p.max_docs, p.held_out)
        what = f"{len(windows)} windows of {len(windows[0]) - 1} bytes"
        summary = delta_attribution(model, windows, p.layers, batch_size=p.batch_size, seed=p.seed, progress=p.progress)
    heads = s.delta_heads > 1
    if s.unit == "token":
        parts_note = ("Parts: `embed`, then per earlier layer its attention output `L{i}ATTN` and MLP output "
                      "`L{i}MLP` (TransformerLens's hook_embed, hook_attn_out, hook_mlp_out). ")
    else:
        parts_note = ""
    markdown = [
        f"## δ attribution ({s.label}; {what})\n",
        parts_note + "Checks per layer" + (" and output head" if heads else "") + ": `completeness_err` = "
        "max |Σ_parts g·c − g·x| (0 up to float error); `mean_abs_g_dot_x` ≈ 0 for per-layer models because the "
        "increment MLP's RMSNorm is scale-invariant (compare `mean_abs_raw`); `r_*` = Pearson correlation of the "
        "linear attribution with the ablation it predicts; `gxi_over_random` = mean |g·c| over mean |g·r| for "
        "random r of the same norm (baseline 1). Where the norm's input is a single part (per-layer L0: the "
        "embedding), g·c = g·x ≈ 0 by construction: read the frozen-scale attribution there.\n",
        markdown_table(summary.checks, formats={"completeness_err": ".1e"}),
    ]
    tables = {"parts": summary.parts, "checks": summary.checks}
    facts = {"variant": s.label, "unit": s.unit, "n_layers": s.n_layers, "windows": len(windows),
             "window_units": len(windows[0]) - 1}
    if s.unit == "token":
        sums = residual_sum_check(model, torch.tensor(windows[: p.batch_size]))
        tables["residual_sum"] = sums
        facts.update({"window_tokens": p.window_tokens, "max_rel_residual_err": float(np.max(sums.rel_err))})
        markdown += [
            "\n### The parts add up to the δ MLP's input (max |Σ parts − resid_pre| on the first batch)\n",
            f"Largest relative error over layers: {sums.rel_err.max():.1e} (max |resid_pre| {sums.max_abs_resid.max():.0f}).\n",
        ]
    else:
        facts["window_bytes"] = len(windows[0]) - 1
    markdown += [
        f"\n### Top {p.top} parts per layer by mean |gradient × input| (δ-logit units"
        + ("; averaged over output heads" if heads else "") + ")\n",
        markdown_table(layer_table(summary, p.top)),
    ]
    return Result(
        "\n".join(markdown),
        tables=tables,
        figures={"attribution": plot_attribution(summary, f"δ attribution: {s.label}")},
        facts=facts,
    )


def main(argv: Sequence[str] | None = None) -> Result:
    return command_main("delta_attribution", argv)


if __name__ == "__main__":
    main()
