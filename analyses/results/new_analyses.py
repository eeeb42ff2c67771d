"""Section 6 of the results document: the new analyses (word-index probes, position patching,
δ attribution, attention on the learned axis), each from its module's Result."""

from __future__ import annotations

import pandas as pd

from analyses._common import markdown_table
from analyses.results.context import (
    Context,
    code_block,
    command,
    fmt_range,
    image,
    rel,
    stage_list,
)


def section_probes(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    b = ctx.bounds
    out = ctx.out / "word_index_probes" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--n-train", str(b.probe_train),
            "--n-test", str(b.probe_test), "--seed", "0", *ctx.common(), "--out", str(out)]  # fmt: skip
    result = ctx.run("word_index_probes", argv, out)
    summary = result.tables["summary"]
    cols = [c for c in ("stage", "resid test", "learned test", "abs test", "abs lookup test",
                        "resid balanced", "learned balanced", "abs lookup balanced",
                        "random letters resid", "shuffled labels resid", "chance test",
                        "chance balanced") if c in summary.columns]  # fmt: skip
    best = summary.loc[summary["resid test"].idxmax()]
    ctx.observations.append(
        f"Word-index probes (per-layer, {result.facts['n_words']} words): best residual probe at {best.stage} "
        f"({best['resid test']:.2f} test, {best.get('resid balanced', float('nan')):.2f} balanced for "
        f"absolute position; absolute position alone {best['abs test']:.2f}); the learned "
        f"position alone reaches at most {summary['learned test'].max():.2f} "
        f"({summary['learned balanced'].max():.2f} on the position-balanced set, where the best "
        f"position-only guess gets {summary['chance balanced'].iloc[0]:.2f})."
    )
    return "\n".join([
        f"§4 adapted to bytes: a fixed prefix then {result.facts['n_words']} random lowercase words; at each word's last "
        "byte a logistic-regression probe predicts the word index from the residual stream "
        f"entering each block ({stage_list(result.facts['n_layers'])}), from the block's "
        "learned cumulative position alone (`learned`), and from the absolute byte position alone "
        "(`abs`, `abs lookup` = best position-only guess). `balanced` = test examples balanced for "
        "absolute position (position alone is then at chance). Controls: random letters instead "
        f"of words; shuffled training labels. {b.probe_train} train / {b.probe_test} test prompts "
        "(test words unseen in training). The post (GPT-2, 10 words) reported 74.9% at layer 3.",
        "",
        markdown_table(summary[cols]),
        "",
        image(out / "accuracy_by_layer.png", ctx.out, "word-index accuracy by layer"),
        "",
        "Reproduce (per-index F1 in the module's report and `f1.csv`):",
        "",
        code_block(command("word_index_probes", argv)),
    ])


def section_patching(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    b = ctx.bounds
    out = ctx.out / "position_patching" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(b.patch_windows), "--max-entities", str(b.patch_entities),
            "--carriers", str(b.patch_carriers), "--no-per-position", "--seed", "0",
            *ctx.common(), "--out", str(out)]  # fmt: skip
    result = ctx.run("position_patching", argv, out)
    inter = result.tables["interventions"].copy()
    inter["layer"] = [f"L{x}" if str(x).isdigit() else str(x) for x in inter.layer]
    inter["cell"] = [f"{d:+.4f} ± {s:.4f}" for d, s in zip(inter.d_loss, inter.d_loss_se, strict=True)]
    pivot = inter.pivot(index="layer", columns="intervention", values="cell").reset_index()
    pivot.columns.name = None
    moved = inter.pivot(index="layer", columns="intervention", values="mean_abs_dpos")
    pivot["mean |Δpos| (integer)"] = pivot.layer.map(moved.get("integer", pd.Series(dtype=float)))
    parts = [
        f"Interventions on the per-layer model over held-out windows of {result.facts['window_bytes']} bytes "
        f"({int(inter.n_windows.iloc[0])} windows from `{ctx.texts['all']}`): change in next-byte "
        "loss (nats/byte, intervened − clean, ± s.e. over windows) when one layer's (or every "
        "layer's, `all`) positions are replaced: `integer` = integer RoPE positions, `mean_delta` "
        "= δ flattened to its window mean, `other_prompt` = another window's δ, `shuffled_delta` "
        "= the window's own δ permuted (control). Later layers recompute their δ (total effects).",
        "",
        markdown_table(pivot, {"mean |Δpos| (integer)": ".1f"}),
    ]
    all_int = inter[(inter.layer == "all") & (inter.intervention == "integer")]
    if len(all_int):
        ctx.observations.append(
            f"Position patching: integer positions in every layer of the per-layer model change the "
            f"loss by {float(all_int.d_loss.iloc[0]):+.3f} nats/byte."
        )
    worst = inter[inter.layer != "all"].sort_values("d_loss").iloc[-1]
    same = inter[(inter.layer == worst.layer) & (inter.intervention == "mean_delta")]
    scale = (
        f"; keeping that layer's mean δ but flattening it (`mean_delta`) costs only "
        f"{float(same.d_loss.iloc[0]):+.3f}, so the model mostly relies on the scale of the positions"
        if worst.intervention == "integer" and len(same) else ""
    )
    ctx.observations.append(
        f"Position patching: the single most costly layer intervention is {worst.intervention} at "
        f"{worst.layer} ({worst.d_loss:+.3f} nats/byte){scale}."
    )
    if "entity_patching" in result.tables:
        ent = result.tables["entity_patching"]
        cols = [c for c in ("activation", "layer", "n", "clean_minus_corrupt", "whole_layer",
                            "whole_layer_se", "control_unrelated", "toward_clean",
                            "prefix_max_abs") if c in ent.columns and ent[c].notna().any()]  # fmt: skip
        parts += [
            "",
            f"Entity patching ({b.patch_entities} entities × {b.patch_carriers} carriers, "
            "continuation \".\"): log-prob of the continuation in the reversed prompt (\"York "
            "New.\") when one layer's whole δ or position activation comes from the real-order "
            "prompt (`whole_layer`, patched − reversed), against the same patch from an unrelated "
            "real entity of equal length (`control_unrelated`); `toward_clean` = share of prompts "
            "moved toward the real-order value. Whole-layer δ and position patches are the same "
            "intervention (positions are the running sum of δ), hence identical rows.",
            "",
            markdown_table(ent[cols], {"prefix_max_abs": ".1e", "n": ".0f"}),
        ]
    parts += [
        "",
        image(out / "interventions.png", ctx.out, "position interventions"),
        "",
        "Reproduce:",
        "",
        code_block(command("position_patching", argv)),
    ]
    return "\n".join(parts)


def section_attribution(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "delta_attribution" / "per-layer"
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(ctx.bounds.attr_windows), "--seed", "0", *ctx.common(),
            "--out", str(out)]  # fmt: skip
    result = ctx.run("delta_attribution", argv, out)
    checks = result.tables["checks"]
    parts_df = result.tables["parts"]
    mean = parts_df.groupby(["layer", "part"], sort=False)[
        ["abs_zero_ablation", "zero_ablation", "abs_grad_x_input_frozen", "share"]
    ].mean().reset_index()
    tops = []
    for layer, g in mean.groupby("layer", sort=False):
        g = g.sort_values("abs_zero_ablation", ascending=False).head(3)
        tops.append({
            "layer": f"L{layer}" if str(layer).isdigit() else layer,
            "top parts by mean |zero-ablation effect| on the δ-logit": ", ".join(
                f"{r.part} {r.abs_zero_ablation:.2f} ({r.zero_ablation:+.2f})" for r in g.itertuples()
            ),
        })  # fmt: skip
    keep = [c for c in ("layer", "positions", "parts", "mean_abs_raw", "r_gxi_zero", "r_frozen_zero",
                        "r_centered_mean", "sign_agree", "gxi_over_random", "completeness_err")
            if c in checks.columns]  # fmt: skip
    return "\n".join([
        "Which upstream components set each layer's δ (per-layer model, "
        f"{int(checks.positions.iloc[0]) if 'positions' in checks else '?'} positions per layer "
        f"from {result.facts.get('windows', '?')} held-out windows of {result.facts.get('window_bytes', '?')} bytes). The δ-logit (pre-sigmoid) of "
        "layer l is attributed to the embedding, every earlier head and MLP. Because the increment "
        "MLP's RMSNorm is scale-invariant, gradient × input sums to ≈ 0; the zero-ablation effect "
        "(recompute the increment MLP without the part: raw(x) − raw(x − c)) is the direct "
        "measure. `r_*` = correlations of linear attributions with the ablations; "
        "`gxi_over_random` = |g·c| over a random vector of the same norm.",
        "",
        markdown_table(checks[keep], {"completeness_err": ".1e"}),
        "",
        markdown_table(pd.DataFrame(tops)),
        "",
        "(mean |effect| and, in brackets, the signed mean; δ-logit units.)",
        "",
        image(out / "attribution.png", ctx.out, "δ attribution"),
        "",
        "Reproduce:",
        "",
        code_block(command("delta_attribution", argv)),
    ])


def section_axis(ctx: Context) -> str:
    if not ctx.has("per-layer"):
        return "_No per-layer model given._"
    out = ctx.out / "learned_axis_attention" / "per-layer"
    n_layers = ctx.info("per-layer").config.n_layers
    # The HTML views hold every head's pattern: two layers (L1 and the last) and 80 bytes keep the
    # page at a few MB instead of ~10.
    views = ["--layers", "1", str(n_layers - 1), "--view-bytes", "80"] if n_layers > 2 else []
    argv = ["--model", ctx.models["per-layer"], "--text-file", str(ctx.texts["all"]),
            *ctx.windows(ctx.bounds.axis_windows), *views, *ctx.common(), "--out", str(out)]  # fmt: skip
    result = ctx.run("learned_axis_attention", argv, out)
    table = result.tables["look_back"]
    cols = ["lookback_learned", "lookback_units", "uniform_learned", "uniform_units", "mean_delta", "ratio"]
    layers = table.groupby("layer", sort=False)[cols].mean().reset_index()
    spread = table.groupby("layer", sort=False).ratio.agg(["min", "max"]).reset_index(drop=True)
    layers["ratio range (heads)"] = [fmt_range(a, b) for a, b in zip(spread["min"], spread["max"], strict=True)]
    return "\n".join([
        "Attention look-back of the per-layer model measured on the learned axis, over "
        f"{int(table.n_queries.iloc[0]):,} queries ({result.facts['windows']} held-out windows of "
        f"{result.facts['window_units']} bytes): mean over heads of Σ_k pattern·(p_q − p_k) (`lookback_learned`) and "
        "Σ_k pattern·(q − k) in bytes (`lookback_units`), uniform causal attention as the position-blind "
        "baseline, and `ratio` = learned / (bytes × mean δ): above 1 when a head's keys lie across "
        "larger-than-average increments.",
        "",
        markdown_table(layers),
        "",
        "Interactive attention on the byte and learned axes (offline circuitsvis"
        + (f"; layers 1 and {n_layers - 1}, the first {result.facts['view_units']} bytes of the sample paragraph" if views else "")
        + "): "
        f"[{rel(out / 'attention.html', ctx.out)}]({rel(out / 'attention.html', ctx.out)}).",
        "",
        image(out / "look_back.png", ctx.out, "look-back per head"),
        "",
        "Reproduce:",
        "",
        code_block(command("learned_axis_attention", argv)),
    ])



__all__ = ["section_attribution", "section_axis", "section_patching", "section_probes"]
