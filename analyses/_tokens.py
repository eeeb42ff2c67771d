"""Token-level access to pretrained rotary models, shared by the analyses that run on them.

The byte models of `lens_positions` see one token per UTF-8 byte after a separator; a pretrained
rotary model opened by `lens_positions.load_rotary_model` (a TransformerLens bridge with grafted
increments, e.g. ``smollm2-135m-per-layer``) sees its own BPE tokens after a BOS token. Analyses
that make sense at the token level ask `lens_positions.subject.subject_of` which kind they were
given and take their windows, padding and token texts from here, so that one fact (the BOS, the pad id, how documents
are joined) lives in one place:

- `token_windows`: consecutive windows of ``n_tokens`` tokens of the concatenated documents
  (EOS between documents), each after a BOS;
- `document_windows`: at most ``per_doc`` windows per document (BOS + the document's tokens), so a
  few long documents do not make up the whole sample;
- `held_out_windows`: `token_windows` of an analysis's ``--text-file`` (default the English
  held-out sample), with the description its report prints;
- `add_window_tokens_arg` (``--window-tokens``, default `WINDOW_TOKENS`), `variant_label`;
- `encode`, `token_texts`, `bos_id`, `pad_id`, `model_name`.

The facts `lens_positions` itself needs (which models are token models, the BOS, the tokenizer's
ids of a text) live in `lens_positions.token_units` (the report uses them) and are re-exported here.

Positions: with every δ = 1 the graft gives the BOS position 0 and the t-th token position t, as
HF's own ``position_ids`` (see `lens_positions.rotary_models`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from torch import nn

from analyses._common import InputError, read_text_files
from lens_positions.samples import sample_file
from lens_positions.subject import WINDOW_TOKENS, subject_of
from lens_positions.token_units import bos_id, encode

__all__ = [
    "WINDOW_TOKENS",
    "add_window_tokens_arg",
    "bos_id",
    "document_windows",
    "encode",
    "held_out_windows",
    "model_name",
    "pad_id",
    "token_texts",
    "token_windows",
    "variant_label",
]



def pad_id(model: nn.Module) -> int:
    """The id right-padding uses (`lens_positions.subject.Subject.pad_id`)."""
    return subject_of(model).pad_id


def token_texts(model: nn.Module, ids: Sequence[int]) -> list[str]:
    """Each token's decoded text (``" the"``, ``"\\n"``; BOS/EOS as their special strings)."""
    tok = model.tokenizer
    return [tok.decode([int(i)]) for i in ids]


def model_name(model: nn.Module) -> str:
    """The canonical name of a bridge's base (``smollm2-135m``; `Subject.name`)."""
    return subject_of(model).name


def variant_label(model: nn.Module) -> str:
    """``"smollm2-135m per_layer"``: the base's name and the graft's variant (`Subject.label`)."""
    return subject_of(model).label


def add_window_tokens_arg(parser: argparse.ArgumentParser) -> None:
    """``--window-tokens`` (default `WINDOW_TOKENS`), read only when ``--model`` is a bridge."""
    parser.add_argument("--window-tokens", type=int, default=WINDOW_TOKENS,
                        help=f"pretrained rotary models: tokens per window after the BOS (default {WINDOW_TOKENS})")


def held_out_windows(model: nn.Module, params: Any) -> tuple[list[list[int]], str]:
    """`token_windows` of ``params.window_tokens`` tokens (at most ``params.max_windows``) of the
    documents of ``params.text_file`` (default the shipped English held-out sample; ``max_docs``
    and ``held_out`` as `analyses._common.read_text_files` takes them), and the description of the
    text a report prints. Too little text is an `InputError` naming the files."""
    files = params.text_file or [str(sample_file("en"))]
    texts = read_text_files(files, max_docs=params.max_docs, held_out=params.held_out)
    try:
        windows = token_windows(model, texts, params.window_tokens, params.max_windows)
    except ValueError as e:
        raise InputError(f"{', '.join(files)}: {e}") from e
    source = ", ".join(params.text_file) if params.text_file else "the English held-out sample"
    return windows, source


def token_windows(
    model: nn.Module, texts: Sequence[str], n_tokens: int, max_windows: int
) -> list[list[int]]:
    """Windows [BOS, t_1 .. t_n_tokens] of the documents' tokens joined with EOS, consecutive and
    non-overlapping; at most ``max_windows``. Raises ValueError when there is less than one."""
    if n_tokens < 1:
        raise ValueError(f"windows need at least one token, got {n_tokens}")
    if n_tokens + 1 > model.cfg.n_ctx:
        raise ValueError(f"windows of {n_tokens} tokens + BOS exceed the context (n_ctx={model.cfg.n_ctx})")
    eos = model.tokenizer.eos_token_id
    stream: list[int] = []
    need = n_tokens * max_windows
    for text in texts:
        stream += encode(model, text) + ([int(eos)] if eos is not None else [])
        if len(stream) >= need:
            break
    n_windows = min(max_windows, len(stream) // n_tokens)
    if n_windows == 0:
        raise ValueError(f"only {len(stream)} tokens of text: less than one window of {n_tokens}")
    bos = bos_id(model)
    return [[bos, *stream[k * n_tokens : (k + 1) * n_tokens]] for k in range(n_windows)]


def document_windows(
    model: nn.Module, texts: Sequence[str], n_tokens: int, max_windows: int, per_doc: int = 2
) -> list[list[int]]:
    """Windows [BOS, up to ``n_tokens`` tokens] cut from each document on its own (at most
    ``per_doc`` per document, the last one may be shorter but has at least 2 tokens)."""
    if n_tokens + 1 > model.cfg.n_ctx:
        raise ValueError(f"windows of {n_tokens} tokens + BOS exceed the context (n_ctx={model.cfg.n_ctx})")
    bos = bos_id(model)
    windows: list[list[int]] = []
    for text in texts:
        ids = encode(model, text)
        for k in range(per_doc):
            piece = ids[k * n_tokens : (k + 1) * n_tokens]
            if len(piece) < 2:
                break
            windows.append([bos, *piece])
            if len(windows) >= max_windows:
                return windows
    return windows
