"""What every section of the results document shares: bounds, the run context, formatting.

`Context.run` runs one analysis module on its command line (`analyses._common.invoke`), writes its
outputs and printed report under the section's folder, and returns its `Result`: sections read
the tables and facts of that object, never the files (the CSV files are for readers).
"""

from __future__ import annotations

import math
import pickle
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from analyses._common import Result, invoke
from lens_positions.atomic import atomic_open, write_text_atomic
from lens_positions.checkpoints import list_models, load_config, resolve
from lens_positions.config import IncrementConfig
from lens_positions.runs import METRICS_FILE, VARIANT_ORDER, read_card, read_metrics
from lens_positions.subject import WINDOW_BYTES

#: How a shipped model is named after its variant (``bilingual-per-layer``).
SHIPPED_PREFIX = "bilingual-"
#: The shipped models by variant, in report order (`lens_positions.runs.VARIANT_ORDER`).
SHIPPED: dict[str, str] = {
    v: SHIPPED_PREFIX + v for v in VARIANT_ORDER if SHIPPED_PREFIX + v in list_models()
}
VARIANTS: tuple[str, ...] = tuple(SHIPPED)
#: A stored Result (tables, report, facts) beside the module's outputs, for ``--reuse``.
RESULT_FILE = "result.pickle"


# ---------------------------------------------------------------------------------------- bounds
@dataclass(frozen=True)
class Bounds:
    """How much of the held-out text each analysis reads (the cost knobs).

    *_bytes bounds are turned into ``--max-docs``: the fewest documents of ``all.jsonl`` (in its
    order) holding at least that many UTF-8 bytes.
    """

    byte_bytes: int = 60_000  # byte-increment tables (shared and per-layer models)
    max_gaps: int = 20_000  # Chinese gaps (and English letters) per model
    n_boot: int = 200  # bootstrap resamples of the AUCs
    head_bytes: int = 36_000  # head rates (per-layer-per-head model)
    entity_pairs: int | None = None  # pairs per condition (None: the module's full lists)
    probe_train: int = 800  # word-index probe prompts (7 examples each)
    probe_test: int = 300
    patch_windows: int = 16  # 255-byte windows for the position interventions
    patch_entities: int = 40  # entities x carriers for entity patching
    patch_carriers: int = 3
    attr_windows: int = 16  # 255-byte windows for δ attribution
    axis_windows: int = 32  # 255-byte windows for the learned-axis look-back
    window_bytes: int = WINDOW_BYTES  # bytes per window of the three analyses above
    quick_docs: int = 0  # >0: read excerpts of this many documents per language (--quick)
    quick_chars: int = 0  # ... of at most this many characters


FULL = Bounds()
QUICK = Bounds(
    byte_bytes=1_500, max_gaps=150, n_boot=20, head_bytes=600, entity_pairs=6, probe_train=30,
    probe_test=15, patch_windows=2, patch_entities=3, patch_carriers=1, attr_windows=2,
    axis_windows=2, window_bytes=128, quick_docs=3, quick_chars=500,
)  # fmt: skip


# ---------------------------------------------------------------------------------------- formatting
def log(message: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def command(module: str, argv: Sequence[str]) -> str:
    """The shell command that runs ``analyses.<module>`` with these arguments."""
    return f"python -m analyses.{module} " + shlex.join(list(argv))


def code_block(lines: str | Sequence[str]) -> str:
    lines = [lines] if isinstance(lines, str) else list(lines)
    return "```bash\n" + "\n".join(lines) + "\n```"


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (for links inside RESULTS.md)."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def image(path: Path, base: Path, alt: str) -> str:
    return f"![{alt}]({rel(path, base)})" if path.is_file() else f"({alt}: not written)"


def fmt(value: Any, spec: str = ".2f") -> str:
    """A number, or an em dash for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(float(value), spec)


def fmt_p(value: float) -> str:
    """A p-value: scientific below 0.001."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def fmt_range(lo: float, hi: float, mean: float | None = None) -> str:
    """``lo–hi (mean)``, or one number when the range is below the printed precision."""
    if math.isnan(lo):
        return "—"
    if abs(hi - lo) < 5e-3:
        return fmt(lo)
    return f"{lo:.2f}–{hi:.2f}" + (f" ({mean:.2f})" if mean is not None else "")


def stage_list(n_layers: int) -> str:
    """The residual stages the word-index probes read, as the document names them."""
    entering = ["`embed`"] + [f"`L{i}`" for i in range(n_layers - 1)]
    shown = ", ".join(entering) if len(entering) <= 3 else f"{entering[0]} … {entering[-1]}"
    return f"{shown}, then the final stream `L{n_layers - 1}`"


# ---------------------------------------------------------------------------------------- context
@dataclass
class ModelInfo:
    """What the document says about one model: its folder, config, card and metrics."""

    name: str
    folder: Path
    config: IncrementConfig
    card: dict[str, Any] | None
    metrics: list[dict[str, Any]]

    @classmethod
    def load(cls, name: str) -> ModelInfo:
        folder = resolve(name)
        metrics = read_metrics(folder) if (folder / METRICS_FILE).is_file() else []
        return cls(name, folder, load_config(folder), read_card(folder), metrics)

    def relative_folder(self) -> str:
        """The folder, relative to the working directory when it is inside it."""
        try:
            return str(self.folder.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.folder)


@dataclass
class Context:
    """What every section needs; `run` runs an analysis module."""

    out: Path
    models: dict[str, str]
    texts: dict[str, Path]
    bounds: Bounds
    threads: int
    quick: bool
    reuse: bool = False
    observations: list[str] = field(default_factory=list)
    loaded: dict[str, Any] = field(default_factory=dict)  # --model value -> loaded model
    infos: dict[str, ModelInfo] = field(default_factory=dict)

    def common(self) -> list[str]:
        return ["--threads", str(self.threads), "--no-progress"]

    def windows(self, n: int) -> list[str]:
        """``--max-windows`` (and ``--window-bytes`` unless the modules' default 255)."""
        b = self.bounds.window_bytes
        return ["--max-windows", str(n), *([] if b == WINDOW_BYTES else ["--window-bytes", str(b)])]

    def has(self, variant: str) -> bool:
        return variant in self.models

    def info(self, variant: str) -> ModelInfo:
        """The variant's model folder, config, card and metrics (read once)."""
        if variant not in self.infos:
            self.infos[variant] = ModelInfo.load(self.models[variant])
        return self.infos[variant]

    def run(self, module: str, argv: Sequence[str], out: Path, reuse: bool | None = None) -> Result:
        """Run ``analyses.<module>`` on ``argv`` (which names ``--out out``), as its command does:
        the outputs under ``out``, its printed report in ``out/report.md`` and the command in
        ``out/command.txt``; returns its Result.

        reuse (default: the context's): take the stored Result of an earlier run with the same
        command instead of recomputing (delete the folder to recompute).
        """
        cmd = command(module, argv)
        stamp, stored = out / "command.txt", out / RESULT_FILE
        if (self.reuse if reuse is None else reuse) and stored.is_file() and stamp.is_file():
            if stamp.read_text(encoding="utf-8").strip() == cmd:
                log(f"  reusing {out} ({cmd})")
                with stored.open("rb") as f:
                    return pickle.load(f)
        log(f"  {cmd}")
        try:
            _, result = invoke(module, argv, self.loaded)
        except SystemExit as e:  # argparse usage errors
            raise RuntimeError(f"analyses.{module} exited with status {e.code}") from e
        result.save(out)
        write_text_atomic(out / "report.md", result.markdown.rstrip("\n") + "\n")
        with atomic_open(stored, "wb") as f:
            pickle.dump(result.without_figures(), f)
        write_text_atomic(stamp, cmd + "\n")
        return result


@dataclass
class Section:
    key: str
    title: str
    body: str = "_not run yet_"
    seconds: float = 0.0
    status: str = "pending"  # pending, ok, skipped


__all__ = [
    "FULL", "QUICK", "RESULT_FILE", "SHIPPED", "SHIPPED_PREFIX", "VARIANTS", "Bounds", "Context", "ModelInfo",
    "Section", "code_block", "command", "fmt", "fmt_p", "fmt_range", "image", "log", "rel",
    "stage_list",
]  # fmt: skip
