"""What an analysis may ask of any model it studies: one interface for byte models and bridges.

The project studies two kinds of model:

- **byte models** (`lens_positions.HookedIncrementTransformer`): one unit per UTF-8 byte, a
  separator (id 256) first, δ shared / per layer / per head, positions p_t = sum_{s<=t} δ_s, so
  δ = 1 gives the separator position 1 and the t-th byte position t + 1;
- **grafted bridges** (`lens_positions.load_rotary_model`, e.g. ``smollm2-135m-per-layer``): a
  pretrained rotary model's own BPE tokens after its BOS, one δ per layer, positions starting at
  `lens_positions.rotary_models.POSITION_START` so that δ = 1 gives HF's ``position_ids``
  (BOS at 0, the t-th token at t).

An analysis never asks which of the two it holds: it asks `subject_of(model)` for a `Subject`
and reads the facts from there (the unit, start and pad ids, layers and δ heads, windows of
units with character offsets, hook names, the positions δ = 1 gives, the δ MLP, the label).
`subject_of` is the only place in the project that tells the two kinds apart.

Example::

    from lens_positions import HookedIncrementTransformer
    from lens_positions.subject import subject_of

    s = subject_of(HookedIncrementTransformer.from_pretrained("bilingual-per-layer"))
    s.unit, s.start_id, s.n_layers                      # ('byte', 256, 6)
    w = s.windows("你好, world", 16)[0]                  # separator + 10 bytes, 9 characters
    w.tokens[w.char_tokens[2]]                          # first byte of ','
    _, cache = s.model.run_with_cache(torch.tensor([w.tokens]), names_filter=s.hook_delta(0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lens_positions.tokenizer import SEPARATOR_ID

Unit = Literal["byte", "token"]

# The window sizes every analysis, the report and the summary read (one home for each).
#: Character windows of the byte analyses: at most this many bytes (the published models used
#: 512-byte windows), separator included.
MAX_WINDOW = 512
#: Equal-length byte windows (``--window-bytes``): bytes after the separator.
WINDOW_BYTES = 255
#: Token windows of the token-level analyses (``--window-tokens``): tokens after the BOS.
WINDOW_TOKENS = 128
#: Per-document token windows (head rates, token increments): tokens after the BOS; the shipped
#: adapter was trained on 256-token windows.
DOCUMENT_WINDOW_TOKENS = 256
#: Chunks of the report and summary on a bridge: tokens before the BOS (a page in one or two).
REPORT_WINDOW_TOKENS = 512


@dataclass(frozen=True)
class Window:
    """A piece of a document as the model sees it, cut only between characters.

    doc: the document's index; start, end: the characters ``text[start:end]`` it holds.
    tokens: the start id + the units of those characters (at most the window limit).
    char_tokens: for each character ``text[start + j]``, the index in ``tokens`` of its first unit
        (a character split over several units, or a unit of several characters, shares indices).
    unit_starts: for each character, True when a unit begins exactly at it (the previous unit
        ends with the previous character), so the δ at ``char_tokens[j]`` is the step from the
        previous character to this one; False inside a unit of several characters, or where a
        byte-level token holds the end of one character and the start of the next. Every
        character of a byte window starts a unit. None: not known (all True).
    """

    doc: int
    start: int
    end: int
    tokens: list[int]
    char_tokens: list[int]
    unit_starts: list[bool] | None = None

    def starts_unit(self, j: int) -> bool:
        """Whether character ``text[start + j]`` begins a unit (see ``unit_starts``)."""
        return True if self.unit_starts is None else self.unit_starts[j]


@dataclass(frozen=True)
class Subject:
    """The facts of one model an analysis reads. Build it with `subject_of`.

    unit: ``"byte"`` or ``"token"``; start_id: the id every window starts with (the byte
    separator, a bridge's BOS); pad_id: the id right-padding uses (the models are causal, so
    padding never changes real positions); n_layers, n_heads: the blocks and attention heads;
    delta_heads: δ values per token and layer (n_heads for per-head models, else 1); per_head:
    the model was built with per-head rates;
    increments: ``none`` / ``shared`` / ``per_layer``; label: how titles name the model
    (``per-layer``, ``smollm2-135m per_layer``); name: the base model's name (byte models: their
    variant name).
    """

    model: nn.Module
    unit: Unit
    name: str
    label: str
    increments: str
    start_id: int
    pad_id: int
    n_layers: int
    n_heads: int
    delta_heads: int
    per_head: bool
    n_ctx: int
    d_vocab: int
    signed: bool

    # ------------------------------------------------------------------------------- text
    @property
    def unit_plural(self) -> str:
        """``"bytes"`` or ``"tokens"``: how tables and reports name a count of units."""
        return f"{self.unit}s"

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without the start id: UTF-8 bytes, or the tokenizer's ids."""
        if self.unit == "byte":
            return list(text.encode("utf-8"))
        return list(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def unit_texts(self, ids: Sequence[int]) -> list[str]:
        """Each unit's text: a token's decoded text; a byte's character when it is ASCII, else
        its hex (``"\\xe4"``); the separator as ``"<sep>"``."""
        if self.unit == "token":
            return [self.model.tokenizer.decode([int(i)]) for i in ids]
        from lens_positions.tokenizer import str_tokens

        return str_tokens(list(ids))

    def window_limit(self, max_units: int | None = None) -> int:
        """Window size in units, start included: ``min(n_ctx, MAX_WINDOW)`` unless told; more
        than the context is a ValueError."""
        limit = min(self.n_ctx, MAX_WINDOW) if max_units is None else max_units
        if limit > self.n_ctx:
            raise ValueError(f"windows of {limit} {self.unit_plural} exceed the context (n_ctx={self.n_ctx})")
        if limit < 5:
            raise ValueError(f"windows of {limit} {self.unit_plural} leave no room for a 4-byte character")
        return limit

    def windows(self, text: str, max_units: int, doc: int = 0) -> list[Window]:
        """``text`` cut into consecutive windows of at most ``max_units`` ids (start included),
        only between characters (bytes) or between tokens (a bridge; a character split over
        several tokens stays in one window), with every character's first unit indexed."""
        if self.unit == "byte":
            return byte_char_windows(text, max_units, doc)
        return _token_char_windows(self, text, max_units, doc)

    # ------------------------------------------------------------------------------- hooks
    def hook_delta(self, layer: int) -> str:
        """δ of ``layer``: [batch, pos] ([batch, pos, head] when ``delta_heads > 1``)."""
        return f"blocks.{layer}.hook_delta"

    def hook_position(self, layer: int) -> str:
        """The running sum of δ that ``layer``'s rotary reads, shaped like its δ."""
        return f"blocks.{layer}.hook_position"

    def hook_resid_pre(self, layer: int) -> str:
        """The residual stream entering ``layer``: [batch, pos, d_model]."""
        return f"blocks.{layer}.hook_resid_pre"

    def hook_pattern(self, layer: int) -> str:
        """``layer``'s attention pattern: [batch, head, query, key]."""
        return f"blocks.{layer}.attn.hook_pattern"

    # ------------------------------------------------------------------------------- positions
    @property
    def integer_start(self) -> float:
        """The start token's position when every δ = 1: 1 for byte models (p_t = sum_{s<=t} δ_s),
        0 for a bridge (its sum starts at `rotary_models.POSITION_START`, as HF's ids)."""
        if self.unit == "byte":
            return 1.0
        from lens_positions.rotary_models import POSITION_START

        return POSITION_START + 1.0

    def integer_positions(self, n: int) -> Tensor:
        """The positions [n] (float32) that δ = 1 gives a window of ``n`` ids."""
        return torch.arange(n, dtype=torch.float32) + self.integer_start

    def delta_mlp(self, layer: int) -> nn.Module | None:
        """The δ MLP that sets ``layer``'s δ (the shared one for every layer of a shared model);
        None without learned increments."""
        if self.increments == "none":
            return None
        if self.increments == "shared":
            return self.model.delta_mlp
        return self.model.blocks[layer].delta_mlp

    def delta_mlp_name(self, layer: int) -> str | None:
        """The δ MLP's module path (``delta_mlp`` or ``blocks.{l}.delta_mlp``), as hook names
        start; None without learned increments."""
        if self.increments == "none":
            return None
        return "delta_mlp" if self.increments == "shared" else f"blocks.{layer}.delta_mlp"

    @property
    def device(self) -> torch.device:
        return self.model.W_E.device


def is_bridge(model: Any) -> bool:
    """True for a grafted bridge (`lens_positions.load_rotary_model`), False for a byte model."""
    return hasattr(model, "increment_graft")


def tokenizer_start_id(tokenizer: Any) -> int:
    """The id a bridge starts every window with: its tokenizer's BOS, or EOS without one (the id
    ``to_tokens`` prepends)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return int(start)


def tokenizer_pad_id(tokenizer: Any) -> int:
    """The id a bridge's batches are right-padded with: pad, else EOS, else BOS, else 0."""
    ids = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    return next((int(v) for v in ids if v is not None), 0)


def subject_of(model: nn.Module | Subject) -> Subject:
    """The `Subject` of a byte model or a grafted bridge (a `Subject` is returned as it is)."""
    if isinstance(model, Subject):
        return model
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError(f"{type(model).__name__} is neither a byte model nor a grafted bridge")
    if is_bridge(model):
        start, pad = tokenizer_start_id(model.tokenizer), tokenizer_pad_id(model.tokenizer)
        spec = getattr(model, "base_spec", None)
        name = getattr(spec, "name", None) or type(model).__name__
        return Subject(
            model=model, unit="token", name=name, label=f"{name} {model.increments}",
            increments=model.increments, start_id=int(start), pad_id=pad,
            n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads), delta_heads=1, per_head=False,
            n_ctx=int(cfg.n_ctx), d_vocab=int(cfg.d_vocab), signed=False,
        )  # fmt: skip
    if not hasattr(cfg, "variant_name"):
        raise TypeError(f"{type(model).__name__} is neither a byte model nor a grafted bridge")
    return Subject(
        model=model, unit="byte", name=cfg.variant_name, label=cfg.variant_name,
        increments=cfg.increments, start_id=SEPARATOR_ID, pad_id=SEPARATOR_ID,
        n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads),
        delta_heads=int(cfg.n_delta_outputs), per_head=bool(cfg.per_head), n_ctx=int(cfg.n_ctx), d_vocab=int(cfg.d_vocab),
        signed=bool(cfg.signed),
    )  # fmt: skip


def byte_char_windows(text: str, max_tokens: int, doc: int = 0) -> list[Window]:
    """Byte windows (separator + UTF-8 bytes) of at most ``max_tokens`` ids, cut between characters."""
    windows: list[Window] = []
    start = 0
    tokens: list[int] = [SEPARATOR_ID]
    char_tokens: list[int] = []
    for i, ch in enumerate(text):
        b = ch.encode("utf-8")
        if len(tokens) + len(b) > max_tokens and char_tokens:
            windows.append(Window(doc, start, i, tokens, char_tokens))
            start, tokens, char_tokens = i, [SEPARATOR_ID], []
        char_tokens.append(len(tokens))
        tokens.extend(b)
    if char_tokens:
        windows.append(Window(doc, start, len(text), tokens, char_tokens))
    return windows


def _token_char_windows(subject: Subject, text: str, max_tokens: int, doc: int) -> list[Window]:
    """Token windows with character offsets, from the tokenizer's offset mapping: a window ends
    before the token that would pass ``max_tokens``; a character's unit is the token holding its
    first byte."""
    tok = subject.model.tokenizer
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    windows: list[Window] = []
    i = 0
    while i < len(ids):
        j = min(len(ids), i + max_tokens - 1)
        c0 = offsets[i][0] if windows else 0
        c1 = offsets[j][0] if j < len(ids) else len(text)
        char_tokens, unit_starts = [], []
        k = i
        for c in range(c0, c1):
            # the first token covering c: step past tokens that end at or before it (a
            # character split over byte-level tokens is covered by each of its pieces)
            while k + 1 < j and offsets[k + 1][0] <= c and offsets[k][1] <= c:
                k += 1
            char_tokens.append(1 + k - i)
            unit_starts.append(offsets[k][0] == c and (k == i or offsets[k - 1][1] <= c))
        windows.append(Window(doc, c0, c1, [subject.start_id, *ids[i:j]], char_tokens, unit_starts))
        i = j
    return windows
