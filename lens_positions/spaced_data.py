"""The data of a spaced-text view: every unit of a text at its learned cumulative position.

A character's increment is the sum of its bytes' δ (a Chinese character is three bytes), and its
position is the running sum of character increments, i.e. the learned position of its last byte
(counted from the separator that precedes the text). Per-layer models get one row per layer;
models whose δ is the same in every layer (none, shared, frozen) get one row. A grafted bridge's
unit is a token (a character split over several tokens whole: `token_spaced_text_data`).

The drawings are `lens_positions.spaced_figure` (matplotlib) and `lens_positions.spaced_html`
(an interactive page); `lens_positions.plots` gathers the three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from jaxtyping import Float

from lens_positions.subject import subject_of
from lens_positions.token_units import token_chunks
from lens_positions.tokenizer import CharSpan, char_spans, encode

if TYPE_CHECKING:
    from lens_positions.model import HookedIncrementTransformer

Scale = Literal["row", "shared"]

#: Default example sentences: an English sentence about a person with commas and a hyphenated
#: word, and a short Chinese definition ("Photosynthesis is the process by which plants use
#: sunlight to make nutrients.").
DEFAULT_SENTENCES: tuple[str, ...] = (
    "Ada Lovelace, the daughter of Lord Byron, wrote a step-by-step method for Babbage's engine.",
    "光合作用是植物利用阳光制造养分的过程。",
)


# ------------------------------------------------------------------------------------------ rows
def increments_of(model: HookedIncrementTransformer) -> tuple[str, bool]:
    """(increments variant, per-head) of a byte model or a pretrained rotary bridge (whose
    TransformerLens config knows neither: its graft names the variant, and it has no per-head rates)."""
    s = subject_of(model)
    return s.increments, s.per_head


def delta_rows(model: HookedIncrementTransformer) -> list[tuple[int, str]]:
    """The layers whose δ differ, as ``(layer index, label)``.

    Per-layer models: every layer, labelled ``L0``, ``L1``, ... Other variants compute one δ that
    every layer uses, so one row, labelled ``shared`` (shared or frozen table) or ``none``.
    """
    increments = increments_of(model)[0]
    if increments == "per_layer":
        return [(layer, f"L{layer}") for layer in range(model.cfg.n_layers)]
    return [(0, "shared" if increments == "shared" else "none")]


# ------------------------------------------------------------------------------------------ data
@dataclass
class SpacedText:
    """Per-unit learned positions of one text, one row per reported layer.

    The unit is a character (byte models) or a token (pretrained rotary models, ``unit="token"``:
    one token, or the few tokens of a character the tokenizer splits; `lens_positions.token_units`).
    Read "byte" below as "token" for those.

    chars: the text's units (the separator / BOS the model saw first is not included).
    char_bytes: each unit's UTF-8 bytes.
    rows: row labels (``L0``... or ``shared``/``none``), with ``head_note`` saying how per-head
        increments were reduced (``""``, ``"head mean"`` or ``"head h"``).
    byte_deltas: δ of every byte [n_rows, n_bytes] (the separator's δ dropped).
    char_increments: sum of each character's bytes' δ [n_rows, n_chars].
    positions: running sums of ``char_increments`` [n_rows, n_chars], the learned position of each
        character's last byte relative to the separator.
    """

    text: str
    chars: list[str]
    char_bytes: list[bytes]
    rows: list[str]
    head_note: str
    byte_deltas: Float[np.ndarray, "rows bytes"]
    char_increments: Float[np.ndarray, "rows chars"]
    positions: Float[np.ndarray, "rows chars"]
    unit: str = "character"
    unit_tokens: list[list[int]] = field(default_factory=list)  # each unit's token ids (tokens only)

    def byte_slices(self) -> list[slice]:
        """For each unit, the slice of ``byte_deltas`` columns that are its bytes (tokens)."""
        sizes = [len(t) for t in self.unit_tokens] if self.unit_tokens else [len(b) for b in self.char_bytes]
        out, i = [], 0
        for n in sizes:
            out.append(slice(i, i + n))
            i += n
        return out

    def units(self, scale: Scale) -> Float[np.ndarray, "rows 1"]:
        """The number each row is divided by: its own mean character increment (``"row"``) or the
        mean over all rows (``"shared"``)."""
        if scale == "row":
            unit = self.char_increments.mean(axis=1, keepdims=True)
        elif scale == "shared":
            unit = np.full((len(self.rows), 1), self.char_increments.mean())
        else:
            raise ValueError(f"unknown scale {scale!r}: use 'row' or 'shared'")
        return np.where(unit > 0, unit, 1.0)

    def scaled_positions(self, scale: Scale) -> Float[np.ndarray, "rows chars"]:
        """Positions divided by `units`, shifted so that the first character sits at 0 (the gap
        from the separator to the first character says nothing about the text)."""
        return (self.positions - self.positions[:, :1]) / self.units(scale)

    def scaled_byte_positions(self, scale: Scale) -> Float[np.ndarray, "rows bytes"]:
        """Every byte's own position on the same scale as `scaled_positions` (a character's
        last byte sits exactly at the character)."""
        byte_pos = np.cumsum(self.byte_deltas, axis=1)
        return (byte_pos - self.positions[:, :1]) / self.units(scale)


@torch.no_grad()
def spaced_text_data(
    model: HookedIncrementTransformer,
    text: str,
    head: int | None = None,
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]]
    | Callable[[torch.Tensor], Sequence[Any]]
    | None = None,
) -> SpacedText:
    """Run ``text`` (after the separator) and collect every reported layer's δ per character.

    head: with per-head rates, the head to show; None averages δ over heads (the running sum of
        the mean is the mean of the heads' positions).
    fwd_hooks: hooks applied while running (a list, or a function of the tokens [1, pos] that
        returns one), e.g. to draw an edited δ.
    """
    if not text:
        raise ValueError("empty text: nothing to draw")
    ids = encode(text, prepend_separator=True)
    if len(ids) > model.cfg.n_ctx:
        raise ValueError(
            f"text is {len(ids)} tokens with the separator; the context is {model.cfg.n_ctx}"
        )
    tokens = torch.tensor([ids], dtype=torch.long, device=model.W_E.device)
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    user = list(fwd_hooks(tokens) if callable(fwd_hooks) else (fwd_hooks or []))
    with model.hooks(fwd_hooks=user):
        _, cache = model.run_with_cache(tokens, names_filter=names, return_type=None)
    deltas = torch.stack([cache[n][0] for n in names]).float().cpu()  # [rows, pos(, heads)]
    head_note = ""
    if model.cfg.per_head:
        if head is None:
            deltas, head_note = deltas.mean(-1), "head mean"
        else:
            if not 0 <= head < model.cfg.n_heads:
                raise ValueError(f"head {head} out of range (0-{model.cfg.n_heads - 1})")
            deltas, head_note = deltas[..., head], f"head {head}"
    elif head is not None:
        raise ValueError("head is only meaningful for per-head models")
    return spaced_text_from_deltas(text, deltas.numpy(), [label for _, label in rows], head_note)


def spaced_text_from_deltas(
    text: str,
    deltas: Float[np.ndarray, "rows pos"],
    rows: Sequence[str],
    head_note: str = "",
) -> SpacedText:
    """`SpacedText` of a text from δ already computed for the separator and the text's bytes
    (``deltas[:, 0]`` is the separator's and is dropped), e.g. by one cached pass of the report."""
    ids = encode(text, prepend_separator=True)
    if deltas.shape[1] != len(ids):
        raise ValueError(f"deltas cover {deltas.shape[1]} tokens; the text with its separator is {len(ids)}")
    spans = char_spans(ids[1:])
    return spaced_text_from_spans(
        text, spans, [bytes(ids[1 + s.start : 1 + s.end]) for s in spans], deltas[:, 1:], rows, head_note
    )


def spaced_text_from_spans(
    text: str,
    spans: Sequence[CharSpan],
    unit_bytes: Sequence[bytes],
    deltas: Float[np.ndarray, "rows tokens"],
    rows: Sequence[str],
    head_note: str = "",
    unit: str = "character",
    ids: Sequence[int] | None = None,
) -> SpacedText:
    """`SpacedText` from the δ of a text's tokens (separator / BOS excluded) and its unit spans
    over them; ``ids`` (the tokens) are kept per unit for the token tooltips."""
    byte_deltas = np.asarray(deltas, dtype=np.float64)
    char_inc = np.stack([byte_deltas[:, s.start : s.end].sum(axis=1) for s in spans], axis=1)
    return SpacedText(
        text=text,
        chars=[s.text for s in spans],
        char_bytes=list(unit_bytes),
        rows=list(rows),
        head_note=head_note,
        byte_deltas=byte_deltas,
        char_increments=char_inc,
        positions=np.cumsum(char_inc, axis=1),
        unit=unit,
        unit_tokens=[list(ids[s.start : s.end]) for s in spans] if ids is not None else [],
    )


@torch.no_grad()
def token_spaced_text_data(
    model: Any,
    text: str,
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]]
    | Callable[[torch.Tensor], Sequence[Any]]
    | None = None,
) -> SpacedText:
    """`lens_positions.plots.spaced_text_data` of a pretrained rotary bridge: ``text`` after a BOS,
    one unit per token (a split character whole), every reported layer's δ from
    ``blocks.{l}.hook_delta``; fwd_hooks as there (a list, or a function of the tokens [1, pos])."""
    if not text:
        raise ValueError("empty text: nothing to draw")
    chunks, spans = token_chunks(model, text, window=int(model.cfg.n_ctx) - 1)
    if len(chunks) > 1:
        raise ValueError(f"text is longer than the context ({model.cfg.n_ctx} tokens with the BOS)")
    ids = chunks[0]
    tokens = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    rows = delta_rows(model)
    names = [f"blocks.{layer}.hook_delta" for layer, _ in rows]
    user = list(fwd_hooks(tokens) if callable(fwd_hooks) else (fwd_hooks or []))
    with model.hooks(fwd_hooks=user):
        _, cache = model.run_with_cache(tokens, names_filter=names)
    deltas = torch.stack([cache[n][0] for n in names]).float().cpu().numpy()  # [rows, pos]
    units = [CharSpan(s.text, s.start - 1, s.end - 1) for s in spans[1:]]  # after the BOS
    return spaced_text_from_spans(
        text, units, [u.text.encode("utf-8") for u in units], deltas[:, 1:], [label for _, label in rows],
        unit="token", ids=ids[1:],
    )
