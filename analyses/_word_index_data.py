"""The prompts and features of `analyses.word_index_probes`, one protocol per unit.

Byte models (the post's §4 adapted to bytes): a fixed prefix, then N random lowercase words from
the project's own list (`analyses._wordlist`), each word's byte length uniform over the lengths
available, train and test pools split per length (`split_words`, `make_prompts`); the features are
the residual stream entering every block and the final one, and each block's learned position, at
each word's last byte (`collect_features`).

Grafted bridges (BPE; e.g. SmolLM2-135M): the prefix `TOKEN_PREFIX`, then N words of Debian's
English word list (``/usr/share/dict/words``: lowercase a-z only), each fed with a leading space;
each word's *token* length is drawn uniformly from 1-3, then a word of that length (``" " + word``
tokenised alone), the words of each token length split 80/20 into train and test pools
(`token_pools`, `make_token_prompts`). Prompts are built as token lists (BOS, prefix tokens, then
each ``" " + word``'s tokens), so the probed token is exactly each word's last; BPE splits at the
leading spaces, so this equals tokenising the whole string (counted and reported). The features
are every layer's ``blocks.{l}.hook_resid_post`` and ``hook_position`` at each word's last token
(`collect_token_features`). The random-letters control replaces each word by random lowercase
letters with the same token count (`random_letter_pools`).
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import nn

from analyses._common import HookSpec, head_axis, run_batches
from lens_positions import SEPARATOR_ID, HookedIncrementTransformer

#: The post's prefix: generic filler, then a newline and a capitalised first word, so that every
#: probed word is lowercase and preceded by a space.
DEFAULT_PREFIX = (
    "The United States Declaration of Independence received its first formal public reading, "
    "in Philadelphia.\nWhen"
)
#: Filler ending in a newline and a capitalised "When", so every probed word is lowercase and
#: follows a space (written for this project in the post's spirit; ~19 SmolLM2 tokens).
TOKEN_PREFIX = (
    "The old harbour town held its first public market of the year on a cold morning in March.\nWhen"
)
WORDLIST = Path("/usr/share/dict/words")


# ---------------------------------------------------------------------------------------- bytes
@dataclass(frozen=True)
class WordPrompts:
    """Prompts of a prefix and N words, with one probe example per word.

    tokens: per prompt, the separator then the UTF-8 bytes.
    prompt, pos, label, word_len: per example [n_examples]: prompt index, token index of the
        word's last byte (the absolute position; the separator is 0), word index, word length.
    words: per example, the word.
    """

    tokens: list[list[int]]
    prompt: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    label: Int[np.ndarray, " n"]
    word_len: Int[np.ndarray, " n"]
    words: list[str]


def split_words(
    words: Sequence[str], test_fraction: float, rng: np.random.Generator, min_len: int = 2, max_len: int = 10
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Split words into train and test pools, by length, so that every length is in both.

    Returns two dicts length -> words; lengths outside [min_len, max_len] or with fewer than two
    words are left out (both pools need one).
    """
    by_len: dict[int, list[str]] = defaultdict(list)
    for w in dict.fromkeys(words):
        if min_len <= len(w) <= max_len:
            by_len[len(w)].append(w)
    train: dict[int, list[str]] = {}
    test: dict[int, list[str]] = {}
    for n, group in sorted(by_len.items()):
        if len(group) < 2:
            continue
        group = [group[i] for i in rng.permutation(len(group))]
        n_test = min(len(group) - 1, max(1, round(test_fraction * len(group))))
        test[n], train[n] = group[:n_test], group[n_test:]
    if not train:
        raise ValueError("no word length has two words: cannot split train and test pools")
    return train, test


def make_prompts(
    pool: dict[int, list[str]],
    n_prompts: int,
    n_words: int,
    prefix: str,
    rng: np.random.Generator,
    random_letters: bool = False,
) -> WordPrompts:
    """Prompts ``prefix + " w1 w2 ... wN"``: each word's length uniform over the pool's lengths,
    then a word of that length uniformly (as the post did with token lengths).

    random_letters: replace each word by random lowercase letters of the same length (control).
    """
    lengths = sorted(pool)
    head = [SEPARATOR_ID, *prefix.encode("utf-8")]
    tokens: list[list[int]] = []
    cols: dict[str, list] = defaultdict(list)
    for i in range(n_prompts):
        row = list(head)
        for k in range(n_words):
            n = lengths[int(rng.integers(len(lengths)))]
            if random_letters:
                word = "".join(rng.choice(list(string.ascii_lowercase), size=n))
            else:
                word = pool[n][int(rng.integers(len(pool[n])))]
            row.extend(b" " + word.encode("ascii"))
            cols["prompt"].append(i)
            cols["pos"].append(len(row) - 1)
            cols["label"].append(k)
            cols["word_len"].append(n)
            cols["words"].append(word)
        tokens.append(row)
    return WordPrompts(
        tokens=tokens,
        prompt=np.asarray(cols["prompt"]),
        pos=np.asarray(cols["pos"]),
        label=np.asarray(cols["label"]),
        word_len=np.asarray(cols["word_len"]),
        words=cols["words"],
    )


# ---------------------------------------------------------------------------------------- features
@dataclass
class ProbeFeatures:
    """What the probes read at every example (the last byte of each word).

    resid: stage -> [n_examples, d_model]; stages 0..n_layers-1 are the residual stream entering
        block l (0 = the embedding), stage n_layers the final residual stream.
    positions: block l -> [n_examples, n_out] learned positions (n_out = n_heads for per-head
        models, else 1).
    """

    resid: dict[int, Float[np.ndarray, "n d_model"]]
    positions: dict[int, Float[np.ndarray, "n n_out"]]


@torch.no_grad()
def collect_features(
    model: HookedIncrementTransformer,
    prompts: WordPrompts,
    batch_size: int = 16,
    fwd_hooks: HookSpec = None,
    progress: bool = True,
    desc: str = "features",
) -> ProbeFeatures:
    """Run the model over the prompts and read the residual streams and positions at the examples."""
    n_layers = model.cfg.n_layers
    names = {f"blocks.{li}.hook_resid_pre": ("resid", li) for li in range(n_layers)}
    names[f"blocks.{n_layers - 1}.hook_resid_post"] = ("resid", n_layers)
    names.update({f"blocks.{li}.hook_position": ("positions", li) for li in range(n_layers)})
    out: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for j, i in enumerate(prompts.prompt):
        by_prompt[int(i)].append(j)
    order: list[int] = []
    batches = run_batches(
        model, prompts.tokens, list(names), batch_size, fwd_hooks, progress=progress, desc=desc
    )
    for rows, _, captured in batches:
        # example j of batch row r sits at token prompts.pos[j]
        ex = [j for i in rows for j in by_prompt[i]]
        row_of = torch.tensor([r for r, i in enumerate(rows) for _ in by_prompt[i]])
        pos_of = torch.as_tensor(prompts.pos[ex])
        order.extend(ex)
        for name, key in names.items():
            act = captured[name][row_of, pos_of]
            if key[0] == "positions":
                act = head_axis(act.unsqueeze(0))[0]  # [n, n_out]
            out[key].append(act.numpy())
    inverse = np.argsort(np.asarray(order))
    joined = {key: np.concatenate(v)[inverse] for key, v in out.items()}
    return ProbeFeatures(
        resid={li: joined[("resid", li)] for li in range(n_layers + 1)},
        positions={li: joined[("positions", li)] for li in range(n_layers)},
    )


# ---------------------------------------------------------------------------------------- tokens
class WordListMissing(RuntimeError):
    """The system word list the BPE protocol draws its words from is not installed."""


def load_words(path: Path = WORDLIST) -> list[str]:
    """Lowercase a-z words of the list (proper nouns, accents and possessives dropped)."""
    if not path.is_file():
        raise WordListMissing(
            f"{path} not found: install Debian's English word list (`apt-get install wamerican`)"
        )
    words = [w.strip() for w in path.read_text(encoding="utf-8", errors="ignore").splitlines()]
    return sorted({w for w in words if w and w.isascii() and w.isalpha() and w.islower()})


def token_pools(
    tokenizer: Any, words: Sequence[str], max_tokens: int, test_fraction: float, rng: np.random.Generator
) -> tuple[dict[int, list[list[int]]], dict[int, list[list[int]]], dict[int, int]]:
    """Words' ``" " + word`` token ids grouped by token count 1..max_tokens, split train/test."""
    by_len: dict[int, list[list[int]]] = defaultdict(list)
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    for ids in encoded:
        if 1 <= len(ids) <= max_tokens:
            by_len[len(ids)].append(ids)
    train, test = {}, {}
    for n in range(1, max_tokens + 1):
        group = by_len[n]
        if len(group) < 5:
            raise ValueError(f"only {len(group)} words of {n} token(s): cannot make both pools")
        order = rng.permutation(len(group))
        n_test = max(1, round(test_fraction * len(group)))
        test[n] = [group[i] for i in order[:n_test]]
        train[n] = [group[i] for i in order[n_test:]]
    return train, test, {n: len(v) for n, v in by_len.items()}


def random_letter_pools(
    tokenizer: Any, max_tokens: int, per_length: int, rng: np.random.Generator
) -> dict[int, list[list[int]]]:
    """Random lowercase strings (2-10 letters) grouped by their token count (control)."""
    pools: dict[int, list[list[int]]] = {n: [] for n in range(1, max_tokens + 1)}
    letters = np.array(list(string.ascii_lowercase))
    tries = 0
    while min(len(v) for v in pools.values()) < per_length:
        tries += 1
        if tries > 200 * per_length * max_tokens:
            raise RuntimeError("could not draw enough random-letter strings of every token count")
        s = "".join(rng.choice(letters, size=int(rng.integers(1, 11))))
        ids = tokenizer(" " + s, add_special_tokens=False)["input_ids"]
        if len(ids) in pools and len(pools[len(ids)]) < per_length:
            pools[len(ids)].append(ids)
    return pools


@dataclass
class TokenPrompts:
    """Token rows and one example per word: prompt index, token position, word index, token count."""

    tokens: list[list[int]]
    prompt: Int[np.ndarray, " n"]
    pos: Int[np.ndarray, " n"]
    label: Int[np.ndarray, " n"]
    n_tokens: Int[np.ndarray, " n"]


def make_token_prompts(
    head: list[int], pool: dict[int, list[list[int]]], n_prompts: int, n_words: int, rng: np.random.Generator
) -> TokenPrompts:
    """``head`` then N words: token count uniform over the pool's counts, then a word of that count."""
    counts = sorted(pool)
    rows, cols = [], defaultdict(list)
    for i in range(n_prompts):
        row = list(head)
        for k in range(n_words):
            n = counts[int(rng.integers(len(counts)))]
            row.extend(pool[n][int(rng.integers(len(pool[n])))])
            for key, v in (("prompt", i), ("pos", len(row) - 1), ("label", k), ("n_tokens", n)):
                cols[key].append(v)
        rows.append(row)
    return TokenPrompts(rows, *(np.asarray(cols[k]) for k in ("prompt", "pos", "label", "n_tokens")))


@torch.no_grad()
def collect_token_features(model: nn.Module, prompts: TokenPrompts, batch_size: int, pad_id: int,
            progress: bool = False, desc: str = "prompts") -> dict[str, np.ndarray]:
    """resid_post of every layer [n_layers, n, d_model] and hook_position [n_layers, n] at the examples.

    Rows are right-padded: attention is causal and δ reads only earlier tokens, so padding after
    the last word changes nothing before it. Positions are token indices (BOS = 0).
    """
    n_layers = len(model.blocks)
    resid_names = [f"blocks.{li}.hook_resid_post" for li in range(n_layers)]
    pos_names = [f"blocks.{li}.hook_position" for li in range(n_layers)]
    wanted = set(resid_names + pos_names)
    resid, position = [], []
    starts = range(0, len(prompts.tokens), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    for start in starts:
        rows = range(start, min(len(prompts.tokens), start + batch_size))
        width = max(len(prompts.tokens[i]) for i in rows)
        batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, : len(prompts.tokens[i])] = torch.tensor(prompts.tokens[i])
        sel = np.flatnonzero((prompts.prompt >= start) & (prompts.prompt < start + len(rows)))
        r_idx = torch.as_tensor(prompts.prompt[sel] - start)
        p_idx = torch.as_tensor(prompts.pos[sel])
        _, cache = model.run_with_cache(batch, names_filter=lambda name: name in wanted)
        resid.append(torch.stack([cache[n][r_idx, p_idx] for n in resid_names]).float().numpy())
        position.append(torch.stack([cache[n][r_idx, p_idx] for n in pos_names]).float().numpy())
    return {"resid": np.concatenate(resid, axis=1), "position": np.concatenate(position, axis=1)}
