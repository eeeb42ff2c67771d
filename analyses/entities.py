"""Multi-word entities: δ at the space inside "New York" against "York New" (§3.4 of the learned-increments post).

For every pair (a, b) and each carrier of `CARRIERS`, the model reads ``carrier.format(a=a, b=b)``
(real order) and ``carrier.format(a=b, b=a)`` (reversed), separator first. The score is δ at the
space between the two words, averaged over the carriers, per reported layer. Per condition and
layer the table gives the mean over pairs in each order, the percentage of pairs whose real order
has the strictly smaller δ, and a two-sided Wilcoxon signed-rank p over the paired differences
(scipy; zero differences dropped; p = 1 when every difference is zero, as for byte-identity δ).

δ is causal: at the space the model has read the prefix and the first word only, so the score
measures how strongly the first word predicts a continuation, not that the two words are
grouped. Three conditions separate these readings:

- ``entities``: `ENTITIES`, 70 two-word named entities (cities, countries, people,
  organisations, geography, events, titles), no word shared between two pairs;
- ``nonce``: `nonce_pairs`, capitalised pronounceable invented words (seeded) — no pair can be
  expected, so real and reversed should not differ beyond noise;
- ``bigrams``: `BIGRAMS`, frequency-matched non-entity bigrams (adjective + noun, lower case).
  Matching, done by hand without a corpus: the i-th bigram's words are within one letter of the
  lengths of the i-th entity's words, and every bigram word is a common English word (roughly the
  few thousand most frequent); as collocations the bigrams are frequent but not fixed names. They
  keep natural lower case (title case would make them read as names), so compare conditions by
  their real-minus-reversed *differences*, not by raw δ.

Per-head models: ``head = "mean"`` rows average δ over heads; ``per_head=True`` adds each head.

Pretrained rotary bridges (``--model smollm2-135m`` or ``smollm2-135m-per-layer``): ``run``
hands them to `analyses._entities_bpe`, the same pairs, carriers, controls and statistics at the
token level: δ at the second word's first token (``" York"``), located by the tokenizer's
character offsets in the whole prompt.

Command::

    python -m analyses.entities --out out/entities
    python -m analyses.entities --model bilingual-per-layer --pairs my_pairs.txt   # "a b" per line
    python -m analyses.entities --model smollm2-135m-per-layer --out out/entities_bpe
"""

from __future__ import annotations

import argparse
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy.stats import wilcoxon

from analyses import _common
from analyses._common import HookSpec, Result, delta_rows, head_axis, run_batches
from lens_positions import HookedIncrementTransformer
from lens_positions.tokenizer import encode

Pair = tuple[str, str]

#: The published carriers (§3.4).
CARRIERS: tuple[str, ...] = (
    "{a} {b}",
    "the {a} {b}",
    "I visited {a} {b}",
    "near {a} {b}",
    "they went to {a} {b}",
)

#: Two-word named entities, no word shared between two pairs (our own list).
ENTITIES: tuple[Pair, ...] = (
    ("New", "York"), ("Hong", "Kong"), ("Los", "Angeles"), ("San", "Francisco"),
    ("Buenos", "Aires"), ("Tel", "Aviv"), ("Las", "Vegas"), ("Sri", "Lanka"),
    ("Costa", "Rica"), ("Puerto", "Rico"), ("Saudi", "Arabia"), ("Sierra", "Leone"),
    ("Cape", "Town"), ("Kuala", "Lumpur"), ("Abu", "Dhabi"), ("Monte", "Carlo"),
    ("Forbidden", "City"), ("Marie", "Curie"), ("Albert", "Einstein"), ("Isaac", "Newton"),
    ("Charles", "Darwin"), ("William", "Shakespeare"), ("Abraham", "Lincoln"),
    ("Winston", "Churchill"), ("Nelson", "Mandela"), ("Pablo", "Picasso"), ("Jane", "Austen"),
    ("Charlie", "Chaplin"), ("Galileo", "Galilei"), ("Karl", "Marx"), ("Sigmund", "Freud"),
    ("Alan", "Turing"), ("Nikola", "Tesla"), ("Julius", "Caesar"), ("Bruce", "Lee"),
    ("Red", "Cross"), ("World", "Bank"), ("Supreme", "Court"), ("White", "House"),
    ("Wall", "Street"), ("Silicon", "Valley"), ("Federal", "Reserve"), ("Royal", "Navy"),
    ("General", "Motors"), ("Pacific", "Ocean"), ("Mount", "Everest"), ("Niagara", "Falls"),
    ("Sahara", "Desert"), ("Yellow", "River"), ("Mediterranean", "Sea"), ("Rocky", "Mountains"),
    ("Grand", "Canyon"), ("Persian", "Gulf"), ("Milky", "Way"), ("Solar", "System"),
    ("Arctic", "Circle"), ("Cold", "War"), ("Big", "Bang"), ("Black", "Death"),
    ("Middle", "Ages"), ("Industrial", "Revolution"), ("Olympic", "Games"),
    ("Great", "Depression"), ("Harry", "Potter"), ("Star", "Trek"), ("Pearl", "Harbor"),
    ("Times", "Square"), ("Eiffel", "Tower"), ("Easter", "Island"), ("Iron", "Curtain"),
)  # fmt: skip

#: The entities of `analyses.position_patching` (written for it before `ENTITIES`, whose 70 pairs
#: share no word between pairs; the post used 79 such pairs). Kept as they are: the committed
#: results/ tables were measured on them.
PATCHING_ENTITIES: tuple[tuple[str, str], ...] = (
    ("New", "York"), ("Hong", "Kong"), ("Cold", "War"), ("Marie", "Curie"), ("Pacific", "Ocean"),
    ("Los", "Angeles"), ("San", "Francisco"), ("United", "Kingdom"), ("Middle", "East"),
    ("Prime", "Minister"), ("Red", "Cross"), ("Silicon", "Valley"), ("Wall", "Street"),
    ("Mount", "Everest"), ("Nobel", "Prize"), ("Albert", "Einstein"), ("Isaac", "Newton"),
    ("Great", "Wall"), ("Black", "Sea"), ("North", "Pole"), ("South", "Africa"),
    ("Buenos", "Aires"), ("Sri", "Lanka"), ("Costa", "Rica"), ("Puerto", "Rico"),
    ("Saudi", "Arabia"), ("New", "Zealand"), ("Las", "Vegas"), ("Abraham", "Lincoln"),
    ("Charles", "Darwin"), ("World", "Bank"), ("Stone", "Age"), ("Dead", "Sea"),
    ("Star", "Wars"), ("Harry", "Potter"), ("Big", "Ben"),
    ("Grand", "Canyon"), ("Easter", "Island"), ("Lake", "Geneva"), ("Eiffel", "Tower"),
)

#: Non-entity bigrams, the i-th matched to ENTITIES[i] on word lengths (±1 letter each).
BIGRAMS: tuple[Pair, ...] = (
    ("old", "road"), ("long", "walk"), ("hot", "kitchen"), ("bad", "direction"),
    ("simple", "words"), ("dry", "land"), ("low", "price"), ("few", "hours"),
    ("small", "boat"), ("strong", "wind"), ("quiet", "garden"), ("bright", "light"),
    ("good", "food"), ("young", "mother"), ("raw", "fruit"), ("happy", "child"),
    ("important", "part"), ("early", "stage"), ("modern", "building"), ("heavy", "stones"),
    ("private", "school"), ("careful", "preparation"), ("popular", "program"),
    ("natural", "resource"), ("recent", "history"), ("fresh", "chicken"), ("warm", "summer"),
    ("serious", "problem"), ("perfect", "weather"), ("dark", "room"), ("certain", "ideas"),
    ("nice", "person"), ("little", "table"), ("famous", "writer"), ("clean", "car"),
    ("wet", "paper"), ("short", "film"), ("massive", "crowd"), ("empty", "glass"),
    ("main", "office"), ("foreign", "market"), ("average", "student"), ("thick", "book"),
    ("typical", "family"), ("special", "event"), ("third", "chapter"), ("ancient", "trees"),
    ("narrow", "bridge"), ("silver", "spoon"), ("international", "law"), ("basic", "questions"),
    ("lucky", "number"), ("evening", "news"), ("plain", "tea"), ("local", "police"),
    ("public", "health"), ("free", "time"), ("wide", "door"), ("final", "score"),
    ("second", "half"), ("historical", "collection"), ("regular", "meals"),
    ("daily", "newspaper"), ("funny", "animal"), ("hard", "work"), ("broken", "window"),
    ("cheap", "ticket"), ("silent", "night"), ("useful", "advice"), ("blue", "blanket"),
)  # fmt: skip

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kl",
    "pl",
    "st",
    "tr",
    "sk",
)
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "m", "x", "sk", "nd")


def nonce_word(rng: random.Random, syllables: int) -> str:
    """A capitalised pronounceable invented word: (onset vowel)^(syllables-1) onset vowel coda."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def nonce_pairs(n: int = 70, seed: int = 0) -> list[Pair]:
    """``n`` pairs of invented words (2-3 syllables), all words distinct and none a word of
    `ENTITIES` or `BIGRAMS`; the same list for the same seed."""
    rng = random.Random(seed)
    taken = {w.lower() for pair in ENTITIES + BIGRAMS for w in pair}
    pairs: list[Pair] = []
    while len(pairs) < n:
        a, b = nonce_word(rng, rng.choice((2, 3))), nonce_word(rng, rng.choice((2, 3)))
        if a.lower() in taken or b.lower() in taken or a == b:
            continue
        taken |= {a.lower(), b.lower()}
        pairs.append((a, b))
    return pairs


def default_conditions(seed: int = 0) -> dict[str, list[Pair]]:
    """The three built-in conditions: entities, nonce pairs and matched bigrams."""
    return {
        "entities": list(ENTITIES),
        "nonce": nonce_pairs(len(ENTITIES), seed),
        "bigrams": list(BIGRAMS),
    }


def read_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a text file: one pair per line, the two words separated by a tab or, without a
    tab, by the first run of spaces; blank lines and lines starting with ``#`` are skipped."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split(maxsplit=1)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"{path}:{n}: expected two words, got {line!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def space_index(carrier: str, a: str, b: str) -> int:
    """Token index (separator at 0) of the space between ``a`` and ``b`` in the carrier."""
    head = carrier.split("{a}")[0].format(a=a, b=b)
    index = 1 + len((head + a).encode("utf-8"))
    ids = encode(carrier.format(a=a, b=b))
    if ids[index] != ord(" "):
        raise ValueError(f"carrier {carrier!r} must put one space between {{a}} and {{b}}")
    return index


@dataclass
class PairDeltas:
    """δ at the internal space, averaged over carriers.

    real, reversed: [n_pairs, n_rows, n_heads_out]; rows: row labels.
    """

    pairs: list[Pair]
    rows: list[str]
    real: Float[np.ndarray, "pairs rows heads"]
    reversed: Float[np.ndarray, "pairs rows heads"]


def measure_pairs(
    model: HookedIncrementTransformer,
    pairs: Sequence[Pair],
    carriers: Sequence[str] = CARRIERS,
    batch_size: int = 64,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> PairDeltas:
    """δ at the space of every pair in both orders, each averaged over the carriers."""
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    n_out = model.cfg.n_delta_outputs
    token_lists, targets = [], []
    for a, b in pairs:
        for first, second in ((a, b), (b, a)):
            for carrier in carriers:
                token_lists.append(encode(carrier.format(a=first, b=second)))
                targets.append(space_index(carrier, first, second))
    values = np.zeros((len(token_lists), len(rows), n_out))
    for idx, _, captured in run_batches(
        model, token_lists, names, batch_size, fwd_hooks, progress=progress, desc="pairs"
    ):
        for row, i in enumerate(idx):
            for r, name in enumerate(names):
                values[i, r] = head_axis(captured[name][row], n_out).numpy()[targets[i]]
    values = values.reshape(len(pairs), 2, len(carriers), len(rows), n_out).mean(axis=2)
    return PairDeltas(list(pairs), [label for _, label in rows], values[:, 0], values[:, 1])


def wilcoxon_p(real: np.ndarray, rev: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired differences; 1.0 if all are zero."""
    diff = np.asarray(real, float) - np.asarray(rev, float)
    if np.allclose(diff, 0.0, atol=1e-9):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(wilcoxon(real, rev, alternative="two-sided").pvalue)


#: Published per-layer results (§3.4 and the post's table) for a 6-layer per-layer model.
PUBLISHED = {
    "L0": "9.99 vs 9.99 (0%, p 1.0)",
    "L1": "1.42 vs 1.43 (51%, p 0.28)",
    "L2": "1.43 vs 1.54 (71%, p 3e-5)",
    "L3": "0.06 vs 0.10 (66%, p 6e-5)",
    "L4": "0.86 vs 1.21 (77%, p 3e-8)",
    "L5": "0.47 vs 0.64 (78%, p 3e-7)",
}


@dataclass
class EntityResult:
    """summary: one row per condition, layer and head (columns condition, layer, head, n,
    mean_real, mean_reversed, mean_diff (reversed - real), pct_real_smaller, wilcoxon_p,
    reference). pairs: one row per condition, pair, layer and head with real, reversed."""

    summary: pd.DataFrame
    pairs: pd.DataFrame


def entity_analysis(
    model: HookedIncrementTransformer,
    conditions: dict[str, Sequence[Pair]] | None = None,
    carriers: Sequence[str] = CARRIERS,
    per_head: bool = False,
    batch_size: int = 64,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
) -> EntityResult:
    """Real vs reversed δ at the internal space for every condition (default: `default_conditions`)."""
    conditions = default_conditions() if conditions is None else conditions
    summary, detail = [], []
    n_out = model.cfg.n_delta_outputs
    heads: list[str | int] = ["mean"] + (list(range(n_out)) if per_head and n_out > 1 else [])
    for condition, pairs in conditions.items():
        pd_ = measure_pairs(model, pairs, carriers, batch_size, fwd_hooks, progress)
        for r, label in enumerate(pd_.rows):
            for h in heads:
                real = pd_.real[:, r].mean(-1) if h == "mean" else pd_.real[:, r, h]
                rev = pd_.reversed[:, r].mean(-1) if h == "mean" else pd_.reversed[:, r, h]
                ref = None
                if (
                    condition == "entities"
                    and h == "mean"
                    and n_out == 1
                    and model.cfg.n_layers == 6
                ):
                    ref = PUBLISHED.get(label)
                summary.append(
                    {
                        "condition": condition,
                        "layer": label,
                        "head": str(h),
                        "n": len(pairs),
                        "mean_real": float(real.mean()),
                        "mean_reversed": float(rev.mean()),
                        "mean_diff": float((rev - real).mean()),
                        "pct_real_smaller": float(100.0 * (real < rev).mean()),
                        "wilcoxon_p": wilcoxon_p(real, rev),
                        "reference": ref,
                    }
                )
                detail += [
                    {
                        "condition": condition,
                        "a": a,
                        "b": b,
                        "layer": label,
                        "head": str(h),
                        "real": float(x),
                        "reversed": float(y),
                    }
                    for (a, b), x, y in zip(pairs, real, rev, strict=True)
                ]
    return EntityResult(pd.DataFrame(summary), pd.DataFrame(detail))


def draw_differences(ax, detail: pd.DataFrame, versus: str = "reversed") -> None:
    """Bars of mean (``versus`` - real) δ per layer and condition, ± the standard error over pairs,
    on ``ax``; ``detail`` has columns condition, layer, real and ``versus``."""
    conds = list(dict.fromkeys(detail["condition"]))
    layers = list(dict.fromkeys(detail["layer"]))
    width = 0.8 / max(1, len(conds))
    for k, cond in enumerate(conds):
        sub = detail[detail["condition"] == cond]
        means, sems = [], []
        for layer in layers:
            rows = sub[sub["layer"] == layer]
            diff = (rows[versus] - rows["real"]).to_numpy()
            means.append(diff.mean())
            sems.append(diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0)
        x = np.arange(len(layers)) + (k - (len(conds) - 1) / 2) * width
        ax.bar(x, means, width, yerr=sems, capsize=2, label=cond)
    ax.axhline(0, color="0.5", lw=0.7)
    ax.margins(x=0.01)
    ax.set_xticks(np.arange(len(layers)), layers, fontsize=8 if len(layers) <= 12 else 6)
    ax.set_ylabel(f"δ {versus} − δ real (mean ± s.e.)")
    ax.legend(fontsize=8)


def plot_entities(result: EntityResult, title: str = ""):
    """Mean (reversed - real) δ per layer and condition, with the standard error over pairs
    (head-mean rows). Positive: the real order gets the smaller space."""
    from matplotlib.figure import Figure

    detail = result.pairs
    if "head" in detail:  # token-level tables have one δ per layer and no head column
        detail = detail[detail["head"] == "mean"]
    n_layers = detail["layer"].nunique()
    fig = Figure(figsize=(min(14.0, max(5.0, 1.1 * n_layers + 2)), 3.6))
    ax = fig.subplots()
    draw_differences(ax, detail)
    ax.set_title(title or "space inside two-word pairs", fontsize=10)
    fig.tight_layout()
    return fig


@dataclass
class Params:
    """Options of `run` (the command's flags of the same names)."""

    pairs: list[str] = field(default_factory=list)
    with_defaults: bool = False
    seed: int = 0
    per_head: bool = False
    batch_size: int = 64
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analyses.entities", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    _common.add_common_args(parser, "out/entities", batch_size=64)
    parser.add_argument(
        "--pairs", nargs="*", default=[],
        help="pair files (condition = file name); replace the built-in conditions",
    )  # fmt: skip
    parser.add_argument(
        "--with-defaults", action="store_true", help="with --pairs, keep the built-in conditions too"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the nonce pairs")
    parser.add_argument(
        "--per-head", action="store_true", help="per-head models: one row per head too"
    )
    return parser


def conditions_of(params: Params) -> dict[str, list[Pair]]:
    """The conditions ``params`` names: the built-in ones and/or one per pair file (its stem)."""
    conditions: dict[str, list[Pair]] = {}
    if not params.pairs or params.with_defaults:
        conditions.update(default_conditions(params.seed))
    for path in params.pairs:
        conditions[Path(path).stem] = read_pairs(path)
    return conditions


def run(model: HookedIncrementTransformer, params: Params) -> Result:
    """`entity_analysis` of the conditions: tables entities (summary) and entity_pairs, a figure.
    A pretrained rotary bridge (`analyses._tokens.is_token_model`) goes to the token-level
    protocol, `analyses._entities_bpe.run`."""
    from analyses import _tokens

    if _tokens.is_token_model(model):
        from analyses import _entities_bpe

        return _entities_bpe.run(model, params)
    p = params
    conditions = conditions_of(p)
    result = entity_analysis(
        model, conditions, per_head=p.per_head, batch_size=p.batch_size, progress=p.progress
    )
    variant = model.cfg.variant_name
    lines = [
        f"# Two-word pairs: δ at the internal space, real vs reversed — {variant}",
        f"(mean over {len(CARRIERS)} carriers; two-sided Wilcoxon signed-rank"
        + ("; head = mean: δ averaged over heads" if model.cfg.per_head else "") + ")\n",
    ]  # fmt: skip
    for cond, sub in result.summary.groupby("condition", sort=False):
        shown = sub.drop(columns=["condition", "n"] + ([] if model.cfg.per_head else ["head"]))
        if shown["reference"].isna().all():
            shown = shown.drop(columns=["reference"])
        lines += [
            f"## {cond} ({sub['n'].iloc[0]} pairs)\n",
            _common.markdown_table(shown, {"wilcoxon_p": ".2g", "pct_real_smaller": ".0f"}) + "\n",
        ]
    return Result(
        "\n".join(lines),
        tables={"entities": result.summary, "entity_pairs": result.pairs},
        figures={"entities": plot_entities(result, f"two-word pairs — {variant}")},
        facts={"variant": variant, "n_layers": model.cfg.n_layers, "carriers": len(CARRIERS),
               "conditions": {c: len(v) for c, v in conditions.items()}},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> Result:
    return _common.command_main("entities", argv)


if __name__ == "__main__":
    main()
