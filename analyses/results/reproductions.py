"""Sections 2-5 and 7 of the results document: the post's reproductions (§3.1-§3.5).

Each section runs its analysis module through `Context.run` (the command printed beside the
table reproduces it) and builds its tables from the returned Result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analyses._common import markdown_table
from analyses.results.context import (
    Context,
    code_block,
    command,
    fmt,
    fmt_p,
    fmt_range,
    image,
    rel,
)
from lens_positions.atomic import write_text_atomic
from training.tokens.heldout import docs_for_bytes

PUBLISHED_HEAD_RATES = "r −0.35, Spearman −0.48 (48 layer-heads)"


# ---------------------------------------------------------------------------------------- 2. bytes
def section_bytes(ctx: Context) -> str:
    from analyses.byte_increments import BYTE_CATEGORIES, PUBLISHED

    n_docs, n_bytes = docs_for_bytes(ctx.texts["all"], ctx.bounds.byte_bytes)
    tables: dict[str, pd.DataFrame] = {}
    commands = []
    for variant in ("shared", "per-layer"):
        if not ctx.has(variant):
            continue
        argv = ["--model", ctx.models[variant], "--text-file", str(ctx.texts["all"]),
                "--max-docs", str(n_docs), *ctx.common(), "--out", str(ctx.out / "byte_increments" / variant)]  # fmt: skip
        out = ctx.out / "byte_increments" / variant
        result = ctx.run("byte_increments", argv, out)
        tables[variant] = result.tables["byte_increments"]
        window = result.facts["window_tokens"]
        commands.append(command("byte_increments", argv))
    if not tables:
        return "_No shared or per-layer model given._"
    cats = list(BYTE_CATEGORIES)

    def cell(t: pd.DataFrame, source: str, layer: str, cat: str, with_range: bool) -> str:
        r = t[(t.source == source) & (t.layer == layer) & (t["head"] == "mean") & (t.category == cat)]
        if not len(r):
            return "—"
        r = r.iloc[0]
        return fmt_range(r["min"], r["max"], r["mean"]) if with_range else fmt(r["mean"])

    ident = []
    for cat in cats:
        row = {"category": cat}
        if "shared" in tables:
            row["shared (ours)"] = cell(tables["shared"], "identity", "shared", cat, True)
            row["shared (published)"] = PUBLISHED["shared"].get(cat, "—")
        if "per-layer" in tables:
            row["per-layer L0 (ours)"] = cell(tables["per-layer"], "identity", "L0", cat, True)
            row["per-layer L0 (published)"] = PUBLISHED["L0"].get(cat, "—")
        ident.append(row)
    context_rows = []
    for cat in cats:
        row: dict[str, Any] = {"category": cat}
        if "shared" in tables:
            row["shared"] = cell(tables["shared"], "context", "shared", cat, False)
        if "per-layer" in tables:
            t = tables["per-layer"]
            for layer in dict.fromkeys(t[t.source == "context"].layer):
                row[f"per-layer {layer}"] = cell(t, "context", layer, cat, False)
        any_t = next(iter(tables.values()))
        occ = any_t[(any_t.source == "context") & (any_t.category == cat) & (any_t["head"] == "mean")]
        row["occurrences"] = int(occ.occurrences.iloc[0]) if len(occ) and not pd.isna(occ.occurrences.iloc[0]) else 0
        context_rows.append(row)
    parts = [
        "**From byte identity** (the published protocol, §3.1): δ of every byte of the category "
        "computed from the byte alone (`model.byte_deltas()`: the shared table, or the per-layer "
        "model's L0, whose increment MLP reads the embedding); `min–max (mean)` over the "
        "category's bytes.",
        "",
        markdown_table(pd.DataFrame(ident)),
        "",
        f"**In context** over held-out text (the first {n_docs} rows, i.e. document parts, of `{ctx.texts['all']}`, "
        f"{n_bytes:,} bytes, both languages; character-aligned windows of ≤ {window} tokens, separator first): mean δ "
        "over every occurrence of the category's bytes, per layer of the per-layer model. The "
        "`separator` row is the separator at the start of every window.",
        "",
        markdown_table(pd.DataFrame(context_rows)),
        "",
        "Reproduce (figures `byte_increments.png` and full tables with min/max per layer under "
        f"`{rel(ctx.out / 'byte_increments', ctx.out)}/`):",
        "",
        code_block(commands),
    ]
    if "per-layer" in tables:
        t = tables["per-layer"]
        ctx_t = t[(t.source == "context") & (t["head"] == "mean") & (t.category != "separator")]
        items = []
        for layer, sub in ctx_t.groupby("layer", sort=False):
            top = sub.sort_values("mean", ascending=False).iloc[0]
            low = sub.sort_values("mean").iloc[0]
            items.append(f"{layer} {top.category} {top['mean']:.2f} / {low.category} {low['mean']:.2f}")
        ctx.observations.append(
            "Per-layer model in context, largest / smallest mean δ by byte category: "
            + "; ".join(items) + "."
        )
        ident = t[(t.source == "identity") & (t["head"] == "mean")].set_index("category")
        if "space" in ident.index and not math.isnan(ident.loc["space", "mean"]):
            ctx.observations.append(
                f"Per-layer L0 from byte identity does not saturate: space {ident.loc['space', 'mean']:.2f}, "
                f"`. ! ?` {ident.loc['. ! ?', 'mean']:.2f}, A-Z {ident.loc['A-Z', 'mean']:.2f} "
                "(published ≈ 9.5-10, at the bound)."
            )
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- 3. words
def section_boundaries(ctx: Context) -> str:
    from analyses.word_boundaries import PUBLISHED_ZH_PER_LAYER, PUBLISHED_ZH_SHARED

    published = {**PUBLISHED_ZH_PER_LAYER, **PUBLISHED_ZH_SHARED}
    b = ctx.bounds
    zh_rows, en_rows, head_rows, commands, counts = [], [], [], [], []
    window = "?"
    for variant in ("per-layer", "per-layer-per-head", "shared"):
        if not ctx.has(variant):
            continue
        out = ctx.out / "word_boundaries" / variant
        argv = ["--model", ctx.models[variant], "--text-file", str(ctx.texts["zh"]),
                "--en-file", str(ctx.texts["en"]), "--max-gaps", str(b.max_gaps),
                "--n-boot", str(b.n_boot), "--seed", "0", *ctx.common(), "--out", str(out)]  # fmt: skip
        result = ctx.run("word_boundaries", argv, out)
        table = result.tables["word_boundaries"]
        window = result.facts["window_tokens"]
        commands.append(command("word_boundaries", argv))
        for task, sub in table.groupby("task", sort=False):
            first = sub.iloc[0]
            counts.append({
                "variant": variant, "task": "Chinese gaps vs jieba" if task == "zh" else "English word starts",
                "scored": int(first.n_gaps), "boundaries": int(first.n_boundaries),
                "base_rate": float(first.base_rate),
            })  # fmt: skip
            mean_rows = sub[sub["head"] == "mean"]
            for r in mean_rows.itertuples():
                row = {
                    "variant": variant, "layer": r.layer, "AUC": r.auc,
                    "95% CI": f"{r.ci_low:.3f}–{r.ci_high:.3f}" if not math.isnan(r.ci_low) else "—",
                    "mean δ boundary": r.mean_boundary, "mean δ within": r.mean_within,
                }  # fmt: skip
                row["ci_low"], row["ci_high"] = r.ci_low, r.ci_high
                if task == "zh":
                    ref = published.get(r.layer) if variant in ("per-layer", "shared") else None
                    row["published"] = ref if ref is not None else float("nan")
                    zh_rows.append(row)
                else:
                    en_rows.append(row)
            per_head = sub[sub["head"] != "mean"]
            if len(per_head):
                for layer, h in per_head.groupby("layer", sort=False):
                    best = h.loc[(h.auc - 0.5).abs().idxmax()]
                    head_rows.append({
                        "task": task, "layer": layer, "lowest head AUC": h.auc.min(),
                        "highest head AUC": h.auc.max(), "most extreme head": f"H{best['head']}",
                    })  # fmt: skip
    _auc_observations(ctx, pd.DataFrame(zh_rows), "Chinese")
    _auc_observations(ctx, pd.DataFrame(en_rows), "English")
    zh_rows = [{k: v for k, v in r.items() if k not in ("ci_low", "ci_high")} for r in zh_rows]
    en_rows = [{k: v for k, v in r.items() if k not in ("ci_low", "ci_high")} for r in en_rows]
    parts = [
        "Protocol (§3.3): held-out Chinese documents segmented by jieba (precise mode); every gap "
        f"between two adjacent CJK characters in a window of ≤ {window} tokens is scored by δ at the second "
        "character's lead byte; label = jieba boundary. ROC-AUC per layer with a 95% bootstrap "
        f"interval ({b.n_boot} resamples of the gaps). Below 0.5: the layer *compresses* "
        "boundaries. Documents are taken in file order until ≥ "
        f"{b.max_gaps:,} gaps (the published run used ~40,000). Per-head model: δ averaged over "
        "heads.",
        "",
        markdown_table(pd.DataFrame(counts), {"base_rate": ".3f"}),
        "",
        "#### Chinese word boundaries",
        "",
        markdown_table(pd.DataFrame(zh_rows), {"published": ".2f", "AUC": ".3f"}) if zh_rows else "_none_",
        "",
        "#### English word starts (our protocol: a letter after a space/punctuation vs a letter "
        "after a letter; δ at the letter)",
        "",
        markdown_table(pd.DataFrame(en_rows), {"AUC": ".3f"}) if en_rows else "_none_",
        "",
        "The shared model's δ depends on the byte alone, so its row is the byte-identity "
        "baseline: lead bytes (Chinese) and letters (English) are not distributed alike at "
        "boundaries and inside words, so it need not sit at exactly 0.5. Context-dependent "
        "layers should be judged against it.",
    ]
    if head_rows:
        parts += [
            "",
            "#### Per-layer-per-head model: spread of the single heads' AUCs",
            "",
            markdown_table(pd.DataFrame(head_rows), {"lowest head AUC": ".3f", "highest head AUC": ".3f"}),
        ]
    parts += [
        "",
        "Reproduce (AUC figures `word_boundaries.png` and per-head rows under "
        f"`{rel(ctx.out / 'word_boundaries', ctx.out)}/`):",
        "",
        code_block(commands),
    ]
    return "\n".join(parts)


def _auc_observations(ctx: Context, df: pd.DataFrame, language: str) -> None:
    """Observations on one language's AUC rows (variant, layer, AUC, ci_low, ci_high)."""
    if df.empty:
        return
    base = df[df.variant == "shared"]
    base_ci = (float(base.ci_low.iloc[0]), float(base.ci_high.iloc[0])) if len(base) else None
    if base_ci is not None and not math.isnan(base_ci[0]) and (base_ci[0] > 0.5 or base_ci[1] < 0.5):
        ctx.observations.append(
            f"{language} boundaries, shared model: AUC {float(base.AUC.iloc[0]):.3f} (CI "
            f"{base_ci[0]:.3f}–{base_ci[1]:.3f}), not chance although its δ sees only byte identity: "
            "the bytes that open a word are not distributed like those inside one. This is the "
            "baseline the context-dependent layers must beat."
        )
    for variant, sub in df[df.variant != "shared"].groupby("variant", sort=False):
        sub = sub.dropna(subset=["ci_low"])
        if sub.empty:
            continue
        aucs = ", ".join(f"{r.layer} {r.AUC:.2f}" for r in sub.itertuples())
        below = [r.layer for r in sub.itertuples() if r.ci_high < 0.5]
        above = [r.layer for r in sub.itertuples() if base_ci is not None and r.ci_low > base_ci[1]]
        text = f"{language} boundaries, {variant}: AUC {aucs}"
        if base_ci is not None:
            text += f"; CI above the byte-identity (shared) CI: {', '.join(above) or 'none'}"
        if below:
            text += f"; below 0.5 (boundaries compressed): {', '.join(below)}"
        ctx.observations.append(text + ".")


# ---------------------------------------------------------------------------------------- 4. entities
def _write_pairs(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    return write_text_atomic(path, "".join(f"{a}\t{b}\n" for a, b in pairs))


def section_entities(ctx: Context) -> str:
    from analyses.entities import default_conditions

    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "entities" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--seed", "0"]
    n = ctx.bounds.entity_pairs
    if n is not None:  # the module reads trimmed lists from files named after the conditions
        files = [
            str(_write_pairs(ctx.out / "entities" / "pairs" / f"{cond}.txt", pairs[:n]))
            for cond, pairs in default_conditions(0).items()
        ]
        argv += ["--pairs", *files]
    argv += [*ctx.common(), "--out", str(out)]
    result = ctx.run("entities", argv, out)
    summary = result.tables["entities"]
    s = summary[summary["head"] == "mean"]
    rows = []
    for layer in dict.fromkeys(s.layer):
        for cond in dict.fromkeys(s.condition):
            r = s[(s.layer == layer) & (s.condition == cond)].iloc[0]
            rows.append({
                "layer": layer, "condition": cond, "pairs": int(r.n), "mean real": r.mean_real,
                "mean reversed": r.mean_reversed, "reversed − real": r.mean_diff,
                "% real smaller": r.pct_real_smaller, "Wilcoxon p": fmt_p(r.wilcoxon_p),
                "published (entities)": r.reference if isinstance(r.reference, str) else "—",
            })  # fmt: skip
    df = pd.DataFrame(rows)
    ent = s[s.condition == "entities"]
    if len(ent) and not (ent.wilcoxon_p < 0.01).any():
        ctx.observations.append(
            "Entities: no layer of the per-layer model gives real-order entities a smaller δ at "
            f"p < 0.01 (smallest p {ent.wilcoxon_p.min():.2g}); the post found it in L2-L5."
        )
    for cond in ("nonce", "bigrams"):
        sig = s[(s.condition == cond) & (s.wilcoxon_p < 0.01)]
        for r in sig.itertuples():
            ctx.observations.append(
                f"Entities control `{cond}`, {r.layer}: reversed − real {r.mean_diff:+.3f} "
                f"(p {fmt_p(r.wilcoxon_p)}), an order effect without any entity."
            )
    for r in ent.itertuples():
        if r.wilcoxon_p < 0.01:
            ctrl = s[(s.layer == r.layer) & (s.condition != "entities") & (s.wilcoxon_p < 0.01)]
            ctrl_note = (
                "; the control(s) " + ", ".join(
                    f"{c.condition} ({c.mean_diff:+.3f}, p {fmt_p(c.wilcoxon_p)})" for c in ctrl.itertuples()
                ) + " differ too"
                if len(ctrl) else "; neither control differs at p < 0.01"
            )
            ctx.observations.append(
                f"Entities, per-layer {r.layer}: reversed − real δ {r.mean_diff:+.3f} "
                f"({r.pct_real_smaller:.0f}% real smaller, p {fmt_p(r.wilcoxon_p)}){ctrl_note}."
            )
    parts = [
        "δ at the space inside a two-word pair, real order (\"New York\") against reversed "
        f"(\"York New\"), averaged over the {result.facts['carriers']} published carriers, per layer of the "
        "per-layer model. Conditions: `entities` (the module's named entities, no shared words), "
        "`nonce` (invented capitalised words: no order can be expected) and `bigrams` "
        "(length-matched common lower-case adjective + noun pairs). `reversed − real` > 0 and "
        "`% real smaller` > 50 mean the real order gets the smaller gap. Two-sided Wilcoxon "
        "signed-rank over pairs. The published column is the post's 6-layer per-layer model "
        "(its own 59 entities). δ is causal: at the space the model has not seen the second word, "
        "so this measures how strongly the first word (in its carrier) predicts a continuation.",
        "",
        markdown_table(df, {"% real smaller": ".0f", "pairs": ".0f"}),
        "",
        "Reproduce (figure `entities.png`, per-pair table `entity_pairs.csv`):",
        "",
        code_block(command("entities", argv)),
    ]
    fig = out / "entities.png"
    if fig.is_file():
        parts += ["", image(fig, ctx.out, "entities: reversed − real δ per layer")]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- 5. heads
def section_heads(ctx: Context) -> str:
    if not ctx.has("per-layer-per-head"):
        return "_No per-layer-per-head model given._"
    n_docs, n_bytes = docs_for_bytes(ctx.texts["all"], ctx.bounds.head_bytes)
    out = ctx.out / "head_rates" / "per-layer-per-head"
    argv = ["--model", ctx.models["per-layer-per-head"], "--text-file", str(ctx.texts["all"]),
            "--max-docs", str(n_docs), *ctx.common(), "--out", str(out)]  # fmt: skip
    result = ctx.run("head_rates", argv, out)
    corr = result.tables["head_rate_correlations"].copy()
    corr["published"] = [PUBLISHED_HEAD_RATES if s == "all" else "—" for s in corr.scope]
    corr = corr.drop(columns=["reference"], errors="ignore")
    heads = result.tables["head_rates"]
    per_layer = heads.groupby("layer", sort=False).agg(
        mean_delta_min=("mean_delta", "min"), mean_delta_max=("mean_delta", "max"),
        lookback_units_min=("lookback_units", "min"), lookback_units_max=("lookback_units", "max"),
        lookback_learned_mean=("lookback_learned", "mean"),
    ).reset_index()  # fmt: skip
    c = corr[corr.scope == "all"].iloc[0]
    if not math.isnan(c.pearson_r):
        note = ""
        dev = (heads.mean_delta - heads.mean_delta.median()).abs()
        top = heads.loc[dev.idxmax()]
        mad = float((heads.mean_delta - heads.mean_delta.median()).abs().median())
        if len(heads) > 3 and dev.max() > 10 * max(mad, 1e-6):
            from scipy.stats import pearsonr

            rest = heads.drop(index=dev.idxmax())
            r_rest = float(pearsonr(rest.mean_delta, rest.lookback_units).statistic)
            note = (
                f"; one outlier head, {top.layer}H{top['head']} (mean δ "
                f"{top.mean_delta:.2f}, look-back {top.lookback_units:.0f} bytes): without it "
                f"r = {r_rest:.2f}"
            )
        ctx.observations.append(
            f"Head rates: mean δ vs look-back over {int(c.n)} layer-heads: Pearson r = "
            f"{c.pearson_r:.2f} (p {c.pearson_p:.2g}), Spearman {c.spearman_rho:.2f} "
            f"(p {c.spearman_p:.2g}); published −0.35 / −0.48{note}."
        )
    return "\n".join([
        f"Per-layer-per-head model over the first {n_docs} rows (document parts) of `{ctx.texts['all']}` "
        f"({n_bytes:,} bytes): every head's mean δ and mean attention look-back "
        "(Σ_k pattern·(q − k), bytes; query 0 left out), correlated over all layer-heads and "
        "within each layer (§3.5).",
        "",
        markdown_table(corr, {"pearson_p": ".2g", "spearman_p": ".2g", "n": ".0f"}),
        "",
        "Per layer, the range over its heads (`lookback_learned_mean` = look-back in learned "
        "position units, head mean):",
        "",
        markdown_table(per_layer),
        "",
        image(out / "head_rates.png", ctx.out, "head rates vs look-back"),
        "",
        "Reproduce (per-head table `head_rates.csv`):",
        "",
        code_block(command("head_rates", argv)),
    ])


# ---------------------------------------------------------------------------------------- 7. spaced
def section_spaced(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "spaced_text" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--top", "4", *ctx.common(), "--out", str(out)]
    result = ctx.run("spaced_text", argv, out)
    gaps = result.tables["spaced_text_gaps"]
    return "\n".join([
        "The two example sentences (§3.2) drawn at their learned positions, one row per layer of "
        "the per-layer model; each row scaled by its own mean increment (first figure) and all rows "
        "on one scale (second). Hover views in `spaced_text.html`.",
        "",
        image(out / "spaced_text_row.png", ctx.out, "spaced text, per-row scale"),
        "",
        image(out / "spaced_text_shared.png", ctx.out, "spaced text, shared scale"),
        "",
        markdown_table(gaps),
        "",
        "Reproduce:",
        "",
        code_block(command("spaced_text", argv)),
    ])



__all__ = [
    "section_boundaries", "section_bytes", "section_entities", "section_heads", "section_spaced",
]  # fmt: skip
