"""Where a model puts its boundaries in a text, and how well it predicts the text.

Shared by the ``lens-positions report`` command and its HTML page. One cached pass per chunk of
the text collects every layer's δ and positions, the next-token loss and (on request) the attention
patterns.

The unit of every view is a character for the byte models and a token for pretrained rotary
models (`lens_positions.token_units`: one token, or the few tokens a split character takes). The
definitions below hold for both with "byte" read as "token": a token's relative increment is its
δ divided by the layer's mean δ.

Definitions, used everywhere in the report:

- a character's **increment** is the sum of its bytes' δ: the distance it adds to the position (a
  Chinese character is three bytes; the spaced-text view draws characters at the running sum);
- its **relative increment** is that sum divided by its byte count times the layer's mean δ per
  byte of the text, so ×1.00 is average spacing whatever the script, ×2 twice as far apart as an
  average stretch of that many bytes (a boundary), ×0.5 packed twice as close;
- per-head models are summarised by the mean over heads.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from lens_positions.subject import subject_of
from lens_positions.token_units import DEFAULT_WINDOW, token_chunks
from lens_positions.tokenizer import SEPARATOR_STR, CharSpan, char_spans, decode

if TYPE_CHECKING:
    from collections.abc import Callable

    from lens_positions.model import HookedIncrementTransformer

#: A text is called out of domain when its bits/byte exceed the model's validation figure by this factor.
OUT_OF_DOMAIN_RATIO = 1.5
#: Relative increments below this are "compressed" (runs of them are listed).
COMPRESSED_BELOW = 0.75
#: Longest run of tokens printed whole in the summaries (longer ones keep their two ends).
SPAN_CHARS = 60


@dataclass
class LayerSummary:
    """One reported row: a layer (``L3``), or ``all layers`` when every layer shares one δ."""

    layer: int
    label: str
    mean_delta: float  # mean δ per byte (token) of the text (head mean for per-head models)
    std: float
    min: float
    max: float
    boundaries: list[tuple[int, float]]  # (unit index, relative increment > 1), strongest first
    compressed: list[tuple[int, int, float]]  # (first unit, end unit, mean relative increment)


@dataclass
class TextIncrements:
    """Everything the report shows about one text.

    tokens: [pos] token ids of the whole text (chunks concatenated, each chunk's separator or
        BOS kept).
    deltas / positions: [n_layers, pos] or [n_layers, pos, n_heads] (per-head models).
    nats: [pos] next-token loss of each token given the ones before it in its chunk (nan at the
        separators / BOS, which are given, not predicted).
    chars: unit spans over ``tokens`` (characters, or tokens: ``unit``); each chunk's first
        span is its separator / BOS (text ``SEPARATOR_STR``); char_increments: [n_layers, n_units]
        the sum of each unit's tokens' δ (head mean); relative: [n_layers, n_units].
    rows: the layers whose δ differ, as (layer, label); one row when every layer shares δ.
    unit: ``"character"`` (byte models) or ``"token"`` (pretrained rotary models); window: the
        most text tokens a chunk holds.
    """

    text: str
    tokens: Tensor
    deltas: Tensor
    positions: Tensor
    nats: Tensor
    chars: list[CharSpan]
    char_increments: Tensor
    relative: Tensor
    rows: list[tuple[int, str]]
    chunk_texts: list[str]
    chunk_starts: list[int]
    learned: bool = True
    head_note: str = ""
    layers: list[LayerSummary] = field(default_factory=list)
    val_bits_per_byte: float | None = None
    unit: str = "character"
    window: int = 0
    val_bits_per_token: float | None = None

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_texts)

    @property
    def starts(self) -> set[int]:
        """Indices in ``chars`` of the chunks' separators / BOS (given to the model, not text)."""
        first = set(self.chunk_starts)
        return {i for i, s in enumerate(self.chars) if s.start in first}

    @property
    def text_units(self) -> list[int]:
        """Indices in ``chars`` of the text's units (every span but the chunk starts)."""
        starts = self.starts
        return [i for i in range(len(self.chars)) if i not in starts]

    @property
    def n_text_chars(self) -> int:
        """Characters of the text (separators the model was given are not counted)."""
        return len(self.text) if self.unit == "token" else len(self.text_units)

    @property
    def n_text_tokens(self) -> int:
        """Tokens the model predicted: all but each chunk's separator / BOS."""
        return len(self.tokens) - self.n_chunks

    @property
    def n_text_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def bits_per_byte(self) -> float:
        """Mean next-token loss on the text in bits per UTF-8 byte of the text (each chunk
        predicted from its separator / BOS on)."""
        return float(torch.nansum(self.nats)) / self.n_text_bytes / math.log(2)

    @property
    def bits_per_token(self) -> float:
        """Mean next-token loss on the text in bits per predicted token."""
        return float(torch.nansum(self.nats)) / self.n_text_tokens / math.log(2)

    @property
    def out_of_domain(self) -> bool:
        """The model predicts this text far worse than its validation text."""
        if self.unit == "token":
            v, got = self.val_bits_per_token, self.bits_per_token
        else:
            v, got = self.val_bits_per_byte, self.bits_per_byte
        return v is not None and got > OUT_OF_DOMAIN_RATIO * v


def validation_bits_per_byte(name_or_dir: str | Path) -> float | None:
    """The validation bits/byte recorded in a model's ``card.json``, or None when there is none."""
    from lens_positions.checkpoints import resolve

    try:
        card = json.loads((resolve(name_or_dir) / "card.json").read_text())
    except (OSError, ValueError):
        return None
    value = card.get("val_bits_per_byte") or card.get("shipped", {}).get("val_bpb")
    return float(value) if isinstance(value, int | float) else None


def validation_bits_per_token(name_or_dir: str | Path) -> float | None:
    """Held-out bits/token of a pretrained model from its adapter's ``card.json`` (written by
    ``training.graft``: ``final_val_loss`` in nats/token), or None (a base model or a folder
    without a card)."""
    from lens_positions.rotary_models import adapter_folder

    folder = adapter_folder(name_or_dir) or Path(name_or_dir)
    try:
        card = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError):
        return None
    value = card.get("final_val_loss")
    return float(value) / math.log(2) if isinstance(value, int | float) else None


@torch.no_grad()
def compute_increments(
    model: HookedIncrementTransformer,
    text: str,
    progress: bool = False,
    on_pattern: Callable[[int, Tensor], None] | None = None,
    window: int = DEFAULT_WINDOW,
) -> TextIncrements:
    """Run the model once per chunk of ``text`` (split to the context with a warning).

    model: a byte model (units: characters, chunks: its context) or a pretrained rotary bridge
        (units: tokens, chunks: ``window`` tokens after a BOS; `lens_positions.token_units`).
    on_pattern: called as ``on_pattern(chunk_index, patterns)`` with the chunk's attention patterns
        [n_layers, n_heads, query, key], which are cached in the same pass only when it is given.
    """
    from lens_positions.plots import delta_rows, increments_of

    if not text:
        raise ValueError("empty text: there is nothing to report on")
    unit = "token" if subject_of(model).unit == "token" else "character"
    if unit == "token":
        window = min(window, int(model.cfg.n_ctx) - 1)
        chunk_ids, spans = token_chunks(model, text, window)
        device = next(model.parameters()).device
        chunks = [torch.tensor([c], dtype=torch.long, device=device) for c in chunk_ids]
        limit = f"the window ({window} tokens)"
        start_name = "BOS"
    else:
        chunks = model.to_token_chunks(text)
        window = int(model.cfg.n_ctx) - 1
        limit = f"the context ({model.cfg.n_ctx} tokens)"
        start_name = "a separator"
    if len(chunks) > 1:
        warnings.warn(
            f"text is longer than {limit}: it was split into "
            f"{len(chunks)} chunks, each starting at position 0 after {start_name}",
            stacklevel=2,
        )
    n = model.cfg.n_layers
    keep = ["hook_delta", "hook_position"] + (["attn.hook_pattern"] if on_pattern else [])
    names = [f"blocks.{layer}.{k}" for k in keep for layer in range(n)]
    iterator = chunks
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(chunks, desc="chunks")
    tokens, deltas, positions, nats, starts = [], [], [], [], []
    for i, chunk in enumerate(iterator):
        logits, cache = model.run_with_cache(chunk, names_filter=names)
        starts.append(sum(len(t) for t in tokens))
        tokens.append(chunk[0].cpu())
        deltas.append(torch.stack([cache["delta", layer][0] for layer in range(n)]).float().cpu())
        positions.append(torch.stack([cache["position", layer][0] for layer in range(n)]).float().cpu())
        loss = F.cross_entropy(logits[0, :-1].float(), chunk[0, 1:], reduction="none").cpu()
        nats.append(torch.cat([torch.tensor([float("nan")]), loss]))
        if on_pattern is not None:
            on_pattern(i, torch.stack([cache["pattern", layer][0] for layer in range(n)]).float().cpu())
        del cache
    tokens_t = torch.cat(tokens)
    deltas_t = torch.cat(deltas, dim=1)
    flat = deltas_t.mean(-1) if deltas_t.ndim == 3 else deltas_t
    if unit == "character":
        spans = char_spans(tokens_t)
    increments = torch.stack([flat[:, s.start : s.end].sum(1) for s in spans], dim=1)
    sizes = torch.tensor([s.end - s.start for s in spans], dtype=flat.dtype)
    is_text = torch.ones(len(tokens_t), dtype=torch.bool)
    is_text[starts] = False  # each chunk's separator / BOS is given, not text
    mean = flat[:, is_text].mean(1, keepdim=True)
    relative = increments / (sizes * mean)
    increments_kind, per_head = increments_of(model)
    result = TextIncrements(
        text=text,
        tokens=tokens_t,
        deltas=deltas_t,
        positions=torch.cat(positions, dim=1),
        nats=torch.cat(nats),
        chars=spans,
        char_increments=increments,
        relative=relative,
        rows=delta_rows(model),
        chunk_texts=(
            [decode(t[1:]) for t in tokens] if unit == "character"
            else _chunk_texts(spans, starts, len(tokens_t))
        ),
        chunk_starts=starts,
        learned=increments_kind != "none",
        head_note=f"means over the {model.cfg.n_heads} heads" if per_head else "",
        unit=unit,
        window=window,
    )
    text_units = result.text_units
    result.layers = [
        _summarize_layer(layer, label, flat[layer, is_text], relative[layer], spans, text_units)
        for layer, label in result.rows
    ]
    return result


def _chunk_texts(spans: list[CharSpan], starts: list[int], n_tokens: int) -> list[str]:
    """The text of each chunk (its units' texts) from the unit spans and the chunks' first tokens."""
    bounds = [*starts, n_tokens]
    return [
        "".join(s.text for s in spans if bounds[k] < s.start < bounds[k + 1]) for k in range(len(starts))
    ]


def _summarize_layer(
    layer: int, label: str, delta: Tensor, rel: Tensor, spans: list[CharSpan], text_chars: list[int],
    top: int = 5,
) -> LayerSummary:
    """Boundaries: the units furthest above the layer mean (×1.01 or more). Compressed spans:
    maximal runs of at least 2 units below `COMPRESSED_BELOW`, ranked by the distance they
    save (length × (1 - mean relative increment)), each text once. text_chars: the indices of
    the text's units (not the chunks' separators / BOS)."""
    above = [i for i in text_chars if float(rel[i]) >= 1.005]
    boundaries = [(i, float(rel[i])) for i in sorted(above, key=lambda i: -float(rel[i]))[:top]]
    # A run is contiguous in ``spans``: a chunk's separator / BOS (not in ``text_chars``) ends it,
    # so no run straddles two chunks and counts the separator's increment as text.
    runs: list[tuple[int, int, float]] = []
    start: int | None = None
    prev = -2
    for i in [*text_chars, None]:
        low = i is not None and float(rel[i]) < COMPRESSED_BELOW
        if start is not None and (not low or i != prev + 1):
            if prev + 1 - start >= 2:
                runs.append((start, prev + 1, float(rel[start : prev + 1].mean())))
            start = None
        if low and start is None:
            start = i
        if i is not None:
            prev = i
    runs.sort(key=lambda r: -(r[1] - r[0]) * (1 - r[2]))
    distinct: dict[str, tuple[int, int, float]] = {}  # a repeated word is listed once
    for run in runs:
        distinct.setdefault("".join(c.text for c in spans[run[0] : run[1]]), run)
    return LayerSummary(
        layer, label, float(delta.mean()), float(delta.std()), float(delta.min()), float(delta.max()),
        boundaries, list(distinct.values())[:3],
    )


def _visible(ch: str, unit: str = "character") -> str:
    """A character as printed in summaries: ⏎ for a newline, ⇥ for a tab, ‹ZWJ› and the like for
    invisible characters (the stand-ins of `lens_positions.glyphs.glyph`); spaces stay spaces.
    A token (``unit="token"``): each of its characters so."""
    from lens_positions.glyphs import glyph

    if unit == "token" and ch != SEPARATOR_STR:
        return "".join(_visible(c) for c in ch)
    if ch == " " or ch == SEPARATOR_STR:
        return ch if ch == " " else ""
    if ch == "\n":
        return "⏎"
    shown = glyph(ch)
    return f"‹{shown}›" if len(shown) > 1 else shown


def context_snippet(spans: list[CharSpan], index: int, width: int = 8, unit: str = "character") -> str:
    """Text around a unit with the unit bracketed: ``…Marie ⟦C⟧urie…`` (``width`` units a side;
    tokens: a third as many, they are longer)."""
    if unit == "token":
        width = max(1, width // 3)
    left = "".join(_visible(s.text, unit) for s in spans[max(0, index - width) : index])
    right = "".join(_visible(s.text, unit) for s in spans[index + 1 : index + 1 + width])
    return f"…{left}⟦{_visible(spans[index].text, unit)}⟧{right}…"


def span_text(spans: list[CharSpan], start: int, end: int, unit: str = "character") -> str:
    """The text of units ``start:end`` as printed in summaries (see `_visible`); a run of tokens
    longer than `SPAN_CHARS` characters keeps its two ends (``«first words … last words»``)."""
    text = "".join(_visible(c.text, unit) for c in spans[start:end])
    if unit == "token" and len(text) > SPAN_CHARS:
        half = (SPAN_CHARS - 3) // 2
        text = f"{text[:half]} … {text[-half:]}"
    return text


def header_lines(result: TextIncrements) -> list[str]:
    """Size, fit and caveats: what to know before reading the per-layer numbers."""
    size = f"{result.n_text_chars} characters, {result.n_text_bytes} bytes"
    if result.unit == "token":
        size = f"{result.n_text_tokens} tokens ({size})"
    lines = [size + (f", {result.n_chunks} chunks" if result.n_chunks > 1 else "")]
    if result.unit == "token":
        fit = f"prediction: {result.bits_per_token:.2f} bits/token ({result.bits_per_byte:.2f} bits/byte) on this text"
        if result.val_bits_per_token is not None:
            fit += f" (the adapter's held-out text: {result.val_bits_per_token:.2f} bits/token)"
    else:
        fit = f"prediction: {result.bits_per_byte:.2f} bits/byte on this text"
        if result.val_bits_per_byte is not None:
            fit += f" (the model's validation text: {result.val_bits_per_byte:.2f})"
    lines.append(fit)
    if result.out_of_domain:
        lines.append(
            f"warning: that is over {OUT_OF_DOMAIN_RATIO:g}x the validation loss: the text is unlike "
            "the model's training data, so its boundaries say little about what the model learned"
        )
    if not result.learned:
        every = "token" if result.unit == "token" else "byte"
        lines.append(f"this model has no learned increments: δ = 1 for every {every}, positions are integers")
    elif len(result.rows) == 1:
        lines.append("one δ shared by every layer: one block for all layers")
    if result.head_note:
        lines.append(f"per-head model: δ below are {result.head_note}")
    return lines


def terminal_summary(result: TextIncrements) -> str:
    """A compact plain-text summary: fit, then per reported layer mean δ, boundaries, compressed spans."""
    lines = header_lines(result)
    if not result.learned:
        return "\n".join(lines)
    lines.append(f"boundaries: {result.unit}s spaced further apart than the layer's mean (relative increment)")
    for s in result.layers:
        name = f"layer {s.layer}" if s.label.startswith("L") else "all layers"
        lines.append(f"\n{name}: mean δ {s.mean_delta:.3f} (min {s.min:.3f}, max {s.max:.3f})")
        bounds = ", ".join(f"{context_snippet(result.chars, i, 6, result.unit)} ×{r:.2f}" for i, r in s.boundaries[:3])
        lines.append(f"  strongest boundaries: {bounds or '(none above the mean)'}")
        if s.compressed:
            spans = ", ".join(f"«{span_text(result.chars, a, b, result.unit)}» ×{m:.2f}" for a, b, m in s.compressed)
            lines.append(f"  most compressed: {spans}")
        else:
            lines.append(f"  most compressed: (none below {COMPRESSED_BELOW}× the mean)")
    return "\n".join(lines)
