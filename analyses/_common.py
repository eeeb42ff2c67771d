"""Helpers shared by the analysis commands: models, texts, windows, batched runs, results.

Every analysis module has one shape:

- ``Params``: a dataclass of everything the analysis reads besides the model (its command-line
  options: ``build_parser`` parses them, `params_from_args` fills the dataclass);
- ``run(model, params) -> Result``: the analysis; a `Result` holds its tables (DataFrames),
  figures, printed report (Markdown) and the few numbers the results document quotes;
- ``main(argv)``: `command_main`: parse, load ``--model`` (default: the shipped default model),
  run, print the Markdown, write CSV tables and PNG + SVG figures under ``--out``.

Model access goes through `load_model`, the window helpers (`char_windows`, `byte_windows`,
`text_windows`) and `run_batches` (capture through TransformerLens's ``run_with_cache``), so that
other kinds of model need changes in these few places only.

Two kinds of window cut text for the model: `char_windows` (character-aligned, every character's
first byte indexed: the post's reproductions score characters and words) and `byte_windows`
(equal-length byte pieces: the newer analyses average over positions and want one length).
Texts default to the held-out sample shipped with the package (`lens_positions.samples`).

Hook specifications
-------------------
Every analysis function takes an optional ``fwd_hooks`` argument, applied while the model runs:

- a list of TransformerLens hooks ``[(name_or_filter, fn), ...]``, as for ``model.hooks``; or
- a *hook factory*, a callable ``tokens -> list of hooks`` that receives each batch's token ids
  [batch, pos] first. Hooks that depend on the bytes (e.g. "δ = f(byte)") need this, because a
  hook function only sees activations.

User hooks run before the hooks that record activations, so what is recorded is what the model
used (e.g. an edited ``hook_delta``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lens_positions import SEPARATOR_ID, HookedIncrementTransformer
from lens_positions.atomic import atomic_path, output_problem, write_text_atomic
from lens_positions.checkpoints import CheckpointError
from lens_positions.plots import delta_rows
from lens_positions.rotary_models import RotaryModelError, rotary_model_names
from lens_positions.runs import DEFAULT_MODEL
from lens_positions.samples import in_held_out, is_cjk, sample_files
from lens_positions.subject import WINDOW_BYTES, Window, byte_char_windows, subject_of
from lens_positions.tables import markdown_table

__all__ = [
    "DEFAULT_MODEL",
    "SAMPLE_TEXTS",
    "Hook",
    "HookSpec",
    "InputError",
    "Result",
    "Window",
    "add_common_args",
    "add_text_args",
    "byte_windows",
    "char_windows",
    "command_main",
    "default_text_files",
    "delta_rows",
    "head_axis",
    "head_mean",
    "in_held_out",
    "invoke",
    "is_cjk",
    "load_model",
    "markdown_table",
    "model_from_args",
    "pad_batch",
    "params_from_args",
    "read_text_files",
    "read_texts",
    "resolve_hooks",
    "run_batches",
    "save_figure",
    "save_png",
    "save_table",
    "text_windows",
    "use_agg",
    "window_limit",
]

Hook = tuple[Any, Callable[..., Any]]
HookSpec = Sequence[Hook] | Callable[[Tensor], Sequence[Hook]] | None



# ---------------------------------------------------------------------------------------- models
def load_model(name_or_dir: str | Path, device: str | None = None) -> HookedIncrementTransformer:
    """A shipped model by name or a checkpoint folder (``from_pretrained`` returns it in eval
    mode); a pretrained rotary model's name or HF folder (`lens_positions.rotary_models`, e.g.
    ``smollm2-135m-per-layer``) gives its grafted bridge instead, for the analyses made for one."""
    from lens_positions.rotary_models import is_rotary_model_name, load_named_rotary

    if is_rotary_model_name(name_or_dir):
        return load_named_rotary(name_or_dir, device=device or "cpu")
    return HookedIncrementTransformer.from_pretrained(name_or_dir, device=device)


def resolve_hooks(spec: HookSpec, tokens: Tensor) -> list[Hook]:
    """The hooks of a `HookSpec` for one batch of tokens [batch, pos]."""
    if spec is None:
        return []
    if callable(spec):
        return list(spec(tokens))
    return list(spec)


def head_axis(x: Tensor, n_heads_out: int | None = None) -> Tensor:
    """δ or positions with a trailing head axis (size 1 unless the model has per-head rates).

    With ``n_heads_out`` (``cfg.n_delta_outputs``) any leading shape works: [..., pos] ->
    [..., pos, 1] unless ``n_heads_out > 1``, when ``x`` already is [..., pos, heads]. Without
    it ``x`` must be batched: [batch, pos] -> [batch, pos, 1]; [batch, pos, heads] as is.
    """
    if n_heads_out is None:
        return x.unsqueeze(-1) if x.ndim == 2 else x
    return x if n_heads_out > 1 else x.unsqueeze(-1)


def head_mean(x: Tensor) -> Float[Tensor, "batch pos"]:
    """δ or positions averaged over heads: [batch, pos, h] -> [batch, pos]; [batch, pos] as is.

    Per-head models give every head its own positions; analyses that want one number per token
    use the head mean (and say so in their output).
    """
    return x.mean(-1) if x.ndim == 3 else x


def pad_batch(
    token_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu", pad: int = SEPARATOR_ID
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Right-pad token lists with ``pad`` (default the byte models' separator): tokens
    [batch, max_len] and lengths [batch].

    The model is causal, so padding after a sequence never changes its real positions.
    """
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
    tokens = torch.full((len(token_lists), int(lengths.max())), pad, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tokens[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return tokens.to(device), lengths


# ---------------------------------------------------------------------------------------- texts
#: A few paragraphs written for these analyses (the learned-axis views draw the first one).
SAMPLE_TEXTS: tuple[str, ...] = (
    "Marie Curie was a Polish-born physicist and chemist who worked in Paris, where she shared "
    "a Nobel Prize with her husband, Pierre, and later won a second one on her own. Her notebooks "
    "are still kept in lead-lined boxes.",
    "The old harbour in New York was crowded every morning: ferries, fishing boats and barges "
    "waited in long lines, while gulls circled above the market stalls and shouted at the crowd.",
    "To install the package, open a terminal and type the command below. If the download fails, "
    "check your proxy settings, then try again; most errors come from a missing certificate.",
    "She said that the river had frozen twice that winter, once in December and again in late "
    "February, and that nobody in the village could remember anything like it.",
    "人工智能是计算机科学的一个分支，它试图理解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。",
)


def read_texts(
    paths: str | Path | Sequence[str | Path],
    source: str | None = None,
    max_docs: int | None = None,
    held_out: float | None = None,
) -> list[str]:
    """Documents from plain-text or JSON-lines files.

    ``.jsonl`` files hold one JSON object per line with a ``"text"`` field (and optionally
    ``"source"``, kept only if it equals ``source`` when that is given); any other file is one
    document. Empty documents are skipped; at most ``max_docs`` are returned.

    held_out: keep only documents of the hash-split validation set with this fraction (see
    `in_held_out`), i.e. text the shipped models never trained on.
    """
    if isinstance(paths, str | Path):
        paths = [paths]

    def keep(text: str) -> bool:
        return bool(text) and (held_out is None or in_held_out(text, held_out))

    docs: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such text file")
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{path}:{n}: not valid JSON ({e})") from e
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise InputError(f'{path}:{n}: expected an object with a "text" string')
                    if source is not None and row.get("source") != source:
                        continue
                    if keep(row["text"]):
                        docs.append(row["text"])
                    if max_docs is not None and len(docs) >= max_docs:
                        return docs
        else:
            text = path.read_text(encoding="utf-8")
            if keep(text):
                docs.append(text)
        if max_docs is not None and len(docs) >= max_docs:
            return docs[:max_docs]
    return docs


def default_text_files() -> list[str]:
    """The held-out sample shipped with the package: Chinese, then English JSON lines."""
    return [str(p) for p in sample_files()]


def read_text_files(
    paths: Sequence[str | Path] | None,
    max_docs: int | None = None,
    held_out: float | None = None,
    source: str | None = None,
) -> list[str]:
    """Documents of several files interleaved (zh, en, zh, en, ...), so that a bound on windows or
    documents does not fill up from the first file alone; ``max_docs`` applies per file.

    paths: None reads the shipped held-out sample (`default_text_files`).
    """
    per_file = [
        read_texts(f, source, max_docs=max_docs, held_out=held_out)
        for f in (paths or default_text_files())
    ]
    return [doc for group in itertools.zip_longest(*per_file) for doc in group if doc is not None]


def window_limit(model: HookedIncrementTransformer, max_tokens: int | None = None) -> int:
    """Window size in units, start included: ``min(n_ctx, 512)`` unless told otherwise
    (`lens_positions.subject.Subject.window_limit`)."""
    return subject_of(model).window_limit(max_tokens)


def char_windows(text: str, max_tokens: int, doc: int = 0) -> list[Window]:
    """Cut a document into consecutive byte windows of at most ``max_tokens`` tokens (separator
    included), only between characters, so that no character is split across windows (a byte
    model's `lens_positions.subject.Subject.windows`)."""
    return byte_char_windows(text, max_tokens, doc)


def byte_windows(
    texts: Sequence[str], n_bytes: int, max_windows: int, per_doc: int = 2
) -> list[list[int]]:
    """Windows of exactly ``n_bytes`` UTF-8 bytes (separator prepended: n_bytes + 1 tokens).

    Consecutive, non-overlapping pieces, at most ``per_doc`` from each document so that a few long
    documents do not make up the whole sample. Pieces may cut a multi-byte character, as the
    training windows did. Texts shorter than ``n_bytes`` give no window.
    """
    if n_bytes < 2:
        raise ValueError(f"windows need at least 2 bytes, got {n_bytes}")
    windows: list[list[int]] = []
    for text in texts:
        data = text.encode("utf-8")
        for k in range(min(per_doc, len(data) // n_bytes)):
            windows.append([SEPARATOR_ID, *data[k * n_bytes : (k + 1) * n_bytes]])
            if len(windows) >= max_windows:
                return windows
    return windows


# ---------------------------------------------------------------------------------------- runs
@torch.no_grad()
def run_batches(
    model: HookedIncrementTransformer,
    token_lists: Sequence[Sequence[int]],
    capture: Sequence[str] = (),
    batch_size: int = 8,
    fwd_hooks: HookSpec = None,
    extra_hooks: Callable[[Tensor, Tensor], Sequence[Hook]] | None = None,
    progress: bool = True,
    desc: str = "batches",
) -> Iterator[tuple[list[int], Tensor, dict[str, Tensor]]]:
    """Run the model (a byte model or a pretrained rotary bridge) over many token sequences in
    right-padded batches.

    Sequences are grouped by length (longest first) so that padding stays small; padding uses the
    separator (a rotary bridge: its tokenizer's pad id, `lens_positions.subject.Subject.pad_id`) and, the model
    being causal, never changes the activations of real positions.

    capture: hook names whose activations to return (detached, on the CPU).
    fwd_hooks: the user's hooks (see the module docstring); they run first.
    extra_hooks: ``(tokens, lengths) -> hooks`` added after the user's, for analyses that reduce
        large activations (attention patterns) as they are produced instead of storing them.
    Yields ``(indices, lengths, captured)``: the indices into ``token_lists`` of the batch's rows,
    their lengths [batch], and ``captured[name]`` [batch, pos, ...] with pos the longest length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))
    device = model.W_E.device
    pad = subject_of(model).pad_id
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
        tokens, lengths = pad_batch([token_lists[i] for i in idx], device, pad)
        if tokens.shape[1] > model.cfg.n_ctx:
            raise ValueError(
                f"a sequence of {tokens.shape[1]} tokens exceeds n_ctx={model.cfg.n_ctx}"
            )
        hooks = resolve_hooks(fwd_hooks, tokens)
        if extra_hooks is not None:
            hooks += list(extra_hooks(tokens, lengths))
        # run_with_cache adds its recording hooks after the ones of this context: what is
        # recorded is what the model used.
        with model.hooks(fwd_hooks=hooks):
            if capture:
                _, cache = model.run_with_cache(
                    tokens, names_filter=list(capture), return_type=None
                )
                captured = {name: cache[name].float().cpu() for name in capture}
            else:
                model(tokens, return_type=None)
                captured = {}
        yield idx, lengths, captured


# ---------------------------------------------------------------------------------------- results
def save_table(df: pd.DataFrame, out_dir: str | Path, stem: str) -> Path:
    """Write a table as CSV under ``out_dir`` (created if missing), atomically."""
    path = Path(out_dir) / f"{stem}.csv"
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def save_figure(
    fig: Any,
    out_dir: str | Path,
    stem: str,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 150,
    close: bool = False,
) -> list[Path]:
    """Save a matplotlib Figure under ``out_dir`` (created) in every format; returns the paths.

    close: close the figure afterwards (commands that make many figures; a notebook user who
    asked for the figure keeps it open)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = out / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return paths


def save_png(fig: Any, out_dir: str | Path, stem: str, dpi: int = 130) -> Path:
    """``out_dir/stem.png`` (folder created), then close the figure."""
    return save_figure(fig, out_dir, stem, formats=("png",), dpi=dpi, close=True)[0]


def use_agg() -> None:
    """Select matplotlib's file-only backend (commands run without a display)."""
    import matplotlib

    matplotlib.use("Agg")


class InputError(ValueError):
    """The analysis's input cannot be used (no documents, nothing to report): the command turns it
    into a usage error naming the problem."""


@dataclass
class Result:
    """What every analysis's ``run(model, params)`` returns.

    markdown: the printed report (headings, notes, tables as Markdown).
    tables: name -> DataFrame, saved as ``NAME.csv``.
    figures: name -> matplotlib Figure, saved as ``NAME.png`` and ``NAME.svg``.
    pages: name -> text of another file to write (e.g. ``"attention.html"``).
    facts: the numbers a document quoting the tables needs (windows, bytes, queries, the model's
        variant and layers), JSON-ready.
    """

    markdown: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
        """Write every table (CSV), figure (PNG and SVG, then closed) and page under ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [save_table(df, out, name) for name, df in self.tables.items()]
        for name, fig in self.figures.items():
            paths += save_figure(fig, out, name, formats, close=True)
        paths += [write_text_atomic(out / name, text) for name, text in self.pages.items()]
        self.figures = {}  # closed: a saved Result keeps its tables, not open figures
        return paths

    def without_figures(self) -> Result:
        """A copy without figures (for storing: tables, report and facts only)."""
        return dataclasses.replace(self, figures={})


# ---------------------------------------------------------------------------------------- commands
def add_common_args(
    parser: argparse.ArgumentParser, out_default: str, batch_size: int | None = 8, seed: bool = False
) -> argparse.ArgumentParser:
    """The options every analysis command shares (``--seed`` where the command samples)."""
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"shipped model name or checkpoint folder (default {DEFAULT_MODEL})",
    )  # fmt: skip
    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    parser.add_argument(
        "--device", default=None, help="torch device (default: where the checkpoint loads, CPU)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"sequences per forward pass (default {batch_size if batch_size else 'by the kind of model'})",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def add_text_args(
    parser: argparse.ArgumentParser, max_windows: int = 64, window_bytes: bool = True
) -> None:
    """--text-file, --max-docs, --held-out (and --window-bytes, --max-windows for `text_windows`)."""
    parser.add_argument(
        "--text-file", nargs="+", default=None,
        help="plain text or JSON lines (field 'text'); several are interleaved "
        "(default: the held-out sample shipped with the package, Chinese and English)",
    )  # fmt: skip
    parser.add_argument(
        "--max-docs", type=int, default=None, help="read at most this many documents"
    )
    parser.add_argument(
        "--held-out", type=float, default=None, metavar="FRACTION",
        help="keep only documents of the training hash split's validation set with this fraction "
        "(0.03 for data/tokens, see its meta.json)",
    )  # fmt: skip
    if window_bytes:
        parser.add_argument("--window-bytes", type=int, default=None, help="bytes per window")
        parser.add_argument(
            "--max-windows", type=int, default=max_windows, help=f"windows (default {max_windows})"
        )


def text_windows(
    model: HookedIncrementTransformer,
    text_file: Sequence[str | Path] | None,
    window_bytes: int | None,
    max_windows: int,
    max_docs: int | None = None,
    held_out: float | None = None,
    default_bytes: int = WINDOW_BYTES,
) -> list[list[int]]:
    """Equal-length byte windows (`byte_windows`) of the documents of some files.

    text_file: None reads the shipped held-out sample; several files are interleaved
    (`read_text_files`). Windows of ``window_bytes`` (default ``min(default_bytes, n_ctx - 1)``).
    """
    n_bytes = min(window_bytes or default_bytes, model.cfg.n_ctx - 1)
    texts = read_text_files(text_file, max_docs=max_docs, held_out=held_out)
    windows = byte_windows(texts, n_bytes, max_windows)
    if not windows:
        raise InputError(f"no text window of {n_bytes} bytes: give longer texts or --window-bytes")
    return windows


def params_from_args(cls: type, args: argparse.Namespace) -> Any:
    """A ``Params`` dataclass from parsed options: every field from the option of the same name
    (``progress`` from ``--no-progress``); fields without an option keep their default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "progress" and hasattr(args, "no_progress"):
            values["progress"] = not args.no_progress
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return cls(**values)


def model_from_args(args: argparse.Namespace) -> HookedIncrementTransformer:
    """Set the thread count, then load ``--model``; prints what was loaded to stderr."""
    torch.set_num_threads(max(1, args.threads))
    model = load_model(args.model, device=args.device)
    cfg = model.cfg
    print(
        f"model {args.model}: {subject_of(model).label}, {cfg.n_layers} layers x {cfg.n_heads} heads, "
        f"d_model {cfg.d_model}, n_ctx {cfg.n_ctx}",
        file=sys.stderr,
    )
    return model


def invoke(
    module: str,
    argv: Sequence[str] | None,
    models: dict[str, HookedIncrementTransformer] | None = None,
) -> tuple[argparse.Namespace, Result]:
    """Parse ``argv`` with ``analyses.<module>``'s parser and run it; returns (options, Result).

    models: already loaded models by ``--model`` value, reused (and filled) so that a report
    running many analyses loads each model once. Bad input (`InputError`) becomes a usage
    error of the module's parser, as on its command line.
    """
    mod = importlib.import_module(f"analyses.{module}")
    parser = mod.build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "out", None):
        problem = output_problem(args.out)
        if problem:  # checked before the work, so that finished work is never lost
            parser.error(f"--out {args.out}: {problem}")
    params = params_from_args(mod.Params, args)
    use_agg()
    try:
        if getattr(mod, "NEEDS_MODEL", True):
            if models is not None and args.model in models:
                torch.set_num_threads(max(1, args.threads))
                model = models[args.model]
            else:
                try:
                    model = model_from_args(args)
                except (CheckpointError, RotaryModelError) as e:  # unknown, corrupt or mismatched
                    parser.error(f"--model {args.model}: {e} (pretrained rotary models: "
                                 f"{', '.join(rotary_model_names())})")
                if models is not None:
                    models[args.model] = model
            n_layers = int(model.cfg.n_layers)
            for name in ("layers", "layer"):
                value = getattr(params, name, None)
                asked = [] if value is None else [value] if isinstance(value, int) else list(value)
                bad = [v for v in asked if not 0 <= v < n_layers]
                if bad:
                    flag = "--" + name.replace("_", "-")
                    parser.error(f"{flag} {' '.join(map(str, bad))}: out of range; "
                                 f"{args.model} has layers 0-{n_layers - 1}")
            result = mod.run(model, params)
        else:
            result = mod.run(None, params)
    except (InputError, FileNotFoundError) as e:
        parser.error(str(e))
    return args, result


def command_main(module: str, argv: Sequence[str] | None = None) -> Result:
    """The ``main`` of every analysis: `invoke`, print the Markdown, save under ``--out``."""
    args, result = invoke(module, argv)
    print(result.markdown)
    paths = result.save(args.out)
    print(f"wrote {len(paths)} files under {args.out}", file=sys.stderr)
    return result

