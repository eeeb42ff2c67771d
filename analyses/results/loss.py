"""Section 1 of the results document: validation loss of the shipped models, δ per layer.

The numbers come from each model's card (``card.json``: ``shipped`` = re-measured on the shipped
weights by `training.evaluation.ship`, else ``final``) and training log (``metrics.jsonl``); the training
set-up the text describes (steps, bytes seen, corpus and validation sizes) from the same cards.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analyses._common import markdown_table
from analyses.results.context import Context, code_block, command, fmt_range, image
from lens_positions.runs import LN2

#: §2 of the post: validation loss (nats/byte), bilingual Wikipedia, 50k steps.
PUBLISHED_LOSS: dict[str, float] = {
    "none": 1.0753,
    "shared": 1.0747,
    "shared-per-head": 1.0740,
    "per-layer": 1.0722,
    "per-layer-per-head": 1.0701,
}


def training_facts(cards: list[dict[str, Any] | None]) -> tuple[str, float]:
    """What the cards say about the training runs, as the clause the loss table needs, and the
    mean number of epochs (NaN when unknown).

    One value per quantity when every card agrees, else the range; parts a card lacks (a test
    model without a card) are left out.
    """
    cards = [c for c in cards if c]
    if not cards:
        return "the training set-up is unknown (no `card.json`)", float("nan")

    def values(get: Any) -> list[Any]:
        out = []
        for card in cards:
            try:
                value = get(card)
            except (KeyError, TypeError):
                continue
            if value is not None:
                out.append(value)
        return out

    def one(xs: list[float], spec: str) -> str:
        if not xs:
            return "?"
        lo, hi = min(xs), max(xs)
        return format(lo, spec) if lo == hi else f"{format(lo, spec)}–{format(hi, spec)}"

    steps = values(lambda c: c["steps"])
    seen = values(lambda c: c["tokens_seen"])
    train_bytes = values(lambda c: c["data"]["meta"]["train"]["text_bytes"])
    val_docs = values(lambda c: c["data"]["meta"]["val"]["documents"])
    val_bytes = values(lambda c: c["data"]["meta"]["val"]["text_bytes"])
    epochs = [s / t for s, t in zip(seen, train_bytes, strict=False) if t] if len(seen) == len(train_bytes) else []
    text = f"ours are {one(steps, ',')} steps"
    if seen:
        text += f" (≈ {one([s / 1e6 for s in seen], '.0f')}M bytes)"
    if train_bytes:
        text += f" on a {one([b / 1e6 for b in train_bytes], '.1f')} MB training split"
    if epochs:
        text += f", i.e. {one(epochs, '.2f')} epochs"
    if val_docs:
        text += (
            f"; the validation set is small ({one(val_docs, ',')} documents, "
            f"~{one([b / 1e3 for b in val_bytes], '.0f')}k bytes)"
        )
    return text, (sum(epochs) / len(epochs) if epochs else float("nan"))


def section_loss(ctx: Context) -> str:
    rows = []
    for variant, model in ctx.models.items():
        info = ctx.info(variant)
        card = info.card or {}
        measured = card.get("shipped") or card.get("final") or {}
        source = "shipped" if "shipped" in card else ("final" if "final" in card else "—")
        trains = [r for r in info.metrics if r.get("kind") == "train"]
        val = measured.get("val_loss", float("nan"))
        rows.append({
            "variant": variant, "model": model, "steps": card.get("steps", float("nan")),
            "val_loss": val, "bits_per_byte": measured.get("val_bpb", val / LN2),
            "source": source, "val_tokens": measured.get("val_tokens", float("nan")),
            "last_train_loss": trains[-1]["loss"] if trains else float("nan"),
            "ood_bpb": measured.get("ood_bpb", float("nan")), "train_bpb": measured.get("train_bpb", float("nan")),
            "published": PUBLISHED_LOSS.get(variant, float("nan")),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    ref = df.loc[df.variant == "none", "val_loss"]
    ref_loss = float(ref.iloc[0]) if len(ref) else float("nan")
    df["Δ_vs_none"] = df.val_loss - ref_loss
    df["Δ_bpb_vs_none"] = df["Δ_vs_none"] / LN2
    df["published_Δ"] = df.published - PUBLISHED_LOSS["none"]
    df = df[["variant", "model", "steps", "val_tokens", "val_loss", "bits_per_byte", "Δ_vs_none",
             "Δ_bpb_vs_none", "ood_bpb", "train_bpb", "published", "published_Δ", "last_train_loss",
             "source"]]  # fmt: skip
    table = markdown_table(df, {
        "val_loss": ".4f", "bits_per_byte": ".4f", "Δ_vs_none": "+.4f", "Δ_bpb_vs_none": "+.4f",
        "published": ".4f", "published_Δ": "+.4f", "last_train_loss": ".3f", "steps": ".0f",
        "ood_bpb": ".4f", "train_bpb": ".4f",
        "val_tokens": lambda v: f"{int(v):,}",
    })  # fmt: skip
    setup, epochs = training_facts([ctx.info(v).card for v in ctx.models])
    parts = [
        "Validation loss (nats/byte) and bits per byte of each shipped model, from its `card.json`: "
        "`shipped` = re-measured on exactly the shipped bf16 weights (float32 on CPU, the "
        "windows the card names; out of domain and training windows too where measured: `ood_bpb`, "
        "`train_bpb`) by `training.evaluation.ship`, else `final` = the training run's own final "
        "evaluation. `published` = the post's values (§2: bilingual Wikipedia, 50k steps x 64 x 512 "
        "bytes ≈ 1.6B bytes), `published_Δ` their difference from RoPE; `last_train_loss` = the "
        "last logged training loss.",
        "",
        table,
        "",
        f"Not comparable in absolute terms: {setup}. The published differences between variants "
        "were 0.001-0.005 nats; compare our differences on that scale, as single runs (one seed).",
    ]
    if len(df) > 1 and df.val_loss.notna().all():
        best = df.sort_values("val_loss").iloc[0]
        worst = df.sort_values("val_loss").iloc[-1]
        ctx.observations.append(
            f"Loss: {best.variant} is best ({best.val_loss:.4f}) and {worst.variant} worst "
            f"({worst.val_loss:.4f}), a spread of {worst.val_loss - best.val_loss:.4f} nats/byte "
            f"(published spread 0.0052)."
        )
        gap = (df.val_loss - df.last_train_loss).mean()
        if gap > 0.1:
            over = f" (≈ {epochs:.0f} epochs over the small corpus)" if not math.isnan(epochs) else ""
            ctx.observations.append(
                f"Over-fitting: validation loss exceeds the last training loss by {gap:.2f} "
                f"nats/byte on average{over}."
            )
    parts += delta_overview(ctx)
    argv = ["--runs", *[ctx.info(v).relative_folder() for v in ctx.models],
            "--out", str(ctx.out / "loss_comparison")]  # fmt: skip
    parts += [
        "",
        "Reproduce: the cards are written by `training.evaluation.ship`; the training-run numbers and "
        "loss curves come from",
        "",
        code_block(command("loss_comparison", argv)),
    ]
    try:
        ctx.run("loss_comparison", argv, ctx.out / "loss_comparison", reuse=False)
        parts += ["", image(ctx.out / "loss_comparison" / "loss_curves.png", ctx.out, "loss curves")]
    except Exception as e:  # the curves are a bonus: the table above does not need them
        parts += ["", f"(loss curves not drawn: {e})"]
    return "\n".join(parts)


def delta_overview(ctx: Context) -> list[str]:
    """δ per layer from each training run's final evaluation (``metrics.jsonl``), and the
    observations on layers at or near the per-layer bound."""
    drows = []
    for variant in ctx.models:
        info = ctx.info(variant)
        finals = [r for r in info.metrics if r.get("kind") == "final" and r.get("delta")]
        if not finals:
            continue
        cfg = info.config
        max_delta = cfg.max_delta if cfg.increments == "per_layer" else float("nan")
        for d in finals[-1]["delta"]:
            heads = d.get("head_mean")
            drows.append({
                "variant": variant, "layer": f"L{d['layer']}", "mean": d["mean"], "std": d["std"],
                "min": d["min"], "max": d["max"],
                "head_means": fmt_range(min(heads), max(heads)) if heads else "—",
                "max_delta": max_delta,
            })  # fmt: skip
            if not math.isnan(max_delta) and d["max"] >= 0.99 * max_delta:
                ctx.observations.append(
                    f"{variant} L{d['layer']}: some tokens sit at the δ bound "
                    f"(max {d['max']:.2f} of max_delta {max_delta:g})."
                )
            if not math.isnan(max_delta) and d["mean"] >= 0.9 * max_delta:
                ctx.observations.append(
                    f"{variant} L{d['layer']}: mean δ {d['mean']:.2f} is near max_delta "
                    f"{max_delta:g} (saturated layer)."
                )
    if not drows:
        return []
    ddf = pd.DataFrame(drows)
    if variant_rows := [v for v in ("none", "shared") if v in set(ddf.variant)]:
        # one row for models whose δ is the same in every layer
        keep = ~ddf.variant.isin(variant_rows) | (ddf.layer == "L0")
        ddf = ddf[keep].copy()
        ddf.loc[ddf.variant.isin(variant_rows), "layer"] = "all"
    return [
        "",
        "### δ per layer (validation windows, from the training run's final evaluation in "
        "`metrics.jsonl`)",
        "",
        markdown_table(ddf, {"max_delta": ".0f"}),
        "",
        "`head_means`: range of the per-head mean δ (per-head model). `max_delta` = the bound "
        "of the per-layer increment MLPs.",
    ]


__all__ = ["PUBLISHED_LOSS", "delta_overview", "section_loss", "training_facts"]
