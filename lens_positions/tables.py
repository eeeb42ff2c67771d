"""Markdown tables from DataFrames (no `tabulate` needed), shared by the analyses and training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["markdown_table"]


def _format_cell(value: Any, fmt: str | Callable[[Any], str] | None) -> str:
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if callable(fmt):
        return fmt(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return format(float(value), fmt or ".3f")
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    df: pd.DataFrame,
    formats: dict[str, str | Callable[[Any], str]] | None = None,
    default_format: str = ".3f",
) -> str:
    """A DataFrame as a GitHub Markdown table (no `tabulate` needed).

    formats: per-column format spec (``".2e"``) or function; other float columns use
    ``default_format``. NaN and None print as an em dash. Numeric columns are right-aligned.
    """
    formats = formats or {}
    cols = [str(c) for c in df.columns]
    rows = [
        [_format_cell(v, formats.get(c, default_format)) for c, v in zip(cols, rec, strict=True)]
        for rec in df.itertuples(index=False, name=None)
    ]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    widths = [max([len(c)] + [len(r[j]) for r in rows]) for j, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            (cell.rjust(w) if num else cell.ljust(w))
            for cell, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cols), rule] + [line(r) for r in rows])
