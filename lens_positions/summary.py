"""Per-layer summaries of where a model puts its boundaries in a text.

Shared by the ``lens-positions report`` command and the HTML report: per layer (and per head for
per-head models, averaged over heads here), each character's increment (the sum of its bytes' δ)
relative to that layer's mean increment per byte, the strongest boundaries (largest relative
increments) and the most compressed spans (runs of characters packed closer than usual).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lens_positions.config import SEPARATOR_ID
from lens_positions.model import HookedIncrementTransformer
from lens_positions.tokenizer import CharSpan, char_spans


@dataclass
class LayerSummary:
    layer: int
    mean_delta: float  # mean δ per byte (head-mean for per-head models)
    boundaries: list[tuple[int, float]]  # (character index, relative increment), strongest first
    compressed: list[tuple[int, int, float]]  # (first char, end char, mean relative increment)


@dataclass
class TextIncrements:
    """Everything the report shows about one text.

    tokens: [pos] token ids of the whole text (chunks concatenated, each chunk's separator kept).
    deltas / positions: [n_layers, pos] (head-mean) or [n_layers, pos, n_heads].
    chars: character spans over ``tokens``; char_increments: [n_layers, n_chars] relative increments.
    """

    text: str
    tokens: Tensor
    deltas: Tensor
    positions: Tensor
    chars: list[CharSpan]
    char_increments: Tensor
    layers: list[LayerSummary] = field(default_factory=list)
    n_chunks: int = 1

    @property
    def n_text_chars(self) -> int:
        """Characters of the text (separators the model was given are not counted)."""
        return sum(s.text != "<sep>" for s in self.chars)

    @property
    def n_text_bytes(self) -> int:
        return int((self.tokens != SEPARATOR_ID).sum())


def compute_increments(model: HookedIncrementTransformer, text: str, progress: bool = False) -> TextIncrements:
    """Run the model over a text (chunked to the context with a warning) and collect δ and positions."""
    if not text:
        raise ValueError("empty text: there is nothing to report on")
    chunks = model.to_token_chunks(text)
    if len(chunks) > 1:
        warnings.warn(
            f"text is longer than the context ({model.cfg.n_ctx} tokens): it was split into "
            f"{len(chunks)} chunks, each starting at position 0 after a separator",
            stacklevel=2,
        )
    tokens, deltas, positions = [], [], []
    iterator = chunks
    if progress and len(chunks) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(chunks, desc="chunks")
    for chunk in iterator:
        tokens.append(chunk[0])
        deltas.append(model.get_deltas(chunk)[:, 0])
        positions.append(model.get_positions(chunk)[:, 0])
    tokens_t = torch.cat(tokens)
    deltas_t = torch.cat(deltas, dim=1).cpu()
    positions_t = torch.cat(positions, dim=1).cpu()
    spans = char_spans(tokens_t)
    flat = deltas_t.mean(-1) if deltas_t.ndim == 3 else deltas_t
    per_char = torch.stack([flat[:, s.start : s.end].sum(1) / (s.end - s.start) for s in spans], dim=1)
    relative = per_char / flat.mean(1, keepdim=True)
    result = TextIncrements(text, tokens_t, deltas_t, positions_t, spans, relative, n_chunks=len(chunks))
    result.layers = [_summarize_layer(layer, flat[layer], relative[layer], spans) for layer in range(flat.shape[0])]
    return result


def _summarize_layer(layer: int, delta: Tensor, rel: Tensor, spans: list[CharSpan], top: int = 5) -> LayerSummary:
    text_chars = [i for i, s in enumerate(spans) if s.text != "<sep>"]
    order = sorted(text_chars, key=lambda i: -float(rel[i]))
    boundaries = [(i, float(rel[i])) for i in order[:top]]
    # Compressed spans: maximal runs of at least 2 characters below 0.75 of the mean increment,
    # ranked by how much distance they save (length x (1 - mean relative increment)).
    runs, start = [], None
    for i in text_chars + [len(spans)]:
        low = i < len(spans) and float(rel[i]) < 0.75
        if low and start is None:
            start = i
        elif not low and start is not None:
            if i - start >= 2:
                runs.append((start, i, float(rel[start:i].mean())))
            start = None
    runs.sort(key=lambda r: -(r[1] - r[0]) * (1 - r[2]))
    return LayerSummary(layer, float(delta.mean()), boundaries, runs[:3])


def context_snippet(spans: list[CharSpan], index: int, width: int = 8) -> str:
    """Text around a character with the character bracketed: ``…Marie ⟦C⟧urie…``."""
    left = "".join(s.text for s in spans[max(0, index - width) : index] if s.text != "<sep>")
    right = "".join(s.text for s in spans[index + 1 : index + 1 + width] if s.text != "<sep>")
    show = lambda t: t.replace("\n", "⏎")  # noqa: E731
    return f"…{show(left)}⟦{show(spans[index].text)}⟧{show(right)}…"


def terminal_summary(result: TextIncrements) -> str:
    """A compact plain-text summary: per layer mean δ, strongest boundaries, compressed spans."""
    lines = [f"{result.n_text_chars} characters, {result.n_text_bytes} bytes"
             + (f", {result.n_chunks} chunks" if result.n_chunks > 1 else "")]
    for s in result.layers:
        lines.append(f"\nlayer {s.layer}: mean δ {s.mean_delta:.3f}")
        bounds = ", ".join(f"{context_snippet(result.chars, i, 6)} ×{r:.2f}" for i, r in s.boundaries[:3])
        lines.append(f"  strongest boundaries: {bounds}")
        if s.compressed:
            spans = ", ".join(
                "«" + "".join(c.text for c in result.chars[a:b]).replace("\n", "⏎") + f"» ×{m:.2f}"
                for a, b, m in s.compressed
            )
            lines.append(f"  most compressed: {spans}")
        else:
            lines.append("  most compressed: (none below 0.75× the mean)")
    return "\n".join(lines)
