"""The word pairs and carriers of the entity analyses (`analyses.entities`, the entity patching
of `analyses.position_patching`): one home for the lists, the controls and the pair-file reader.

- `CARRIERS`: the published carriers (§3.4 of the learned-increments post);
- `ENTITIES`: 70 two-word named entities, no word shared between two pairs;
- `PATCHING_ENTITIES`: the entities of the patching experiment;
- `BIGRAMS`: non-entity bigrams matched to `ENTITIES` on word lengths;
- `nonce_pairs`: invented capitalised word pairs (seeded), the no-expectation control;
- `default_conditions`, `read_pairs`.
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = [
    "BIGRAMS", "CARRIERS", "ENTITIES", "PATCHING_ENTITIES", "Pair", "default_conditions",
    "nonce_pairs", "nonce_word", "read_pairs",
]  # fmt: skip

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
