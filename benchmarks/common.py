"""Helpers shared by the benchmark scripts: options, model variants, interleaved timing, peak
memory, analytic FLOPs and Markdown tables.

Timing. On CPU the clock is the process's CPU time by default (``--clock cpu``): on a machine
shared with other jobs it leaves out the time this process waited for a core, which wall time
would charge to whichever candidate happened to be running; with one thread on an idle machine
the two agree. On CUDA the clock is wall time around synchronised calls. Candidates are timed in
rounds: every round runs each candidate once (rotating the order
each round, so that no candidate always runs first or last), and the statistics are medians over
rounds. What a call returns (logits, a cache) is freed after its sample ends, so that no candidate
is charged for tearing down its result (or spared it, when a reference cycle leaves it to the
collector). Ratios are medians of per-round ratios: both samples of a pair were taken seconds apart,
so slow drifts of a shared machine's load cancel.

Peak memory. On CUDA, ``torch.cuda.max_memory_allocated`` over the measured call, minus what was
allocated before it. On CPU there is no allocator statistic, so the measured call is run once
under ``torch.profiler`` with ``profile_memory=True``: the profiler records every CPU tensor
allocation and free (``[memory]`` events, signed byte counts) in order; the running sum of those
events is the live tensor memory, and its maximum is the peak increase over the start. This counts
tensor storage exactly (no allocator caching, no Python objects, no fragmentation), identically
for every candidate, and the profiler's time overhead is irrelevant because memory runs are not
timed runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from lens_positions import HookedIncrementTransformer, IncrementConfig

#: The variants every script can measure: label -> IncrementConfig arguments.
VARIANTS: dict[str, dict] = {
    "none": dict(increments="none"),
    "shared": dict(increments="shared"),
    "shared-per-head": dict(increments="shared", per_head=True),
    "per-layer": dict(increments="per_layer"),
    "per-layer-per-head": dict(increments="per_layer", per_head=True),
}

#: The published size (256d / 8 heads / 6 layers / SwiGLU 1024) and a tiny one for ``--quick``.
PAPER_DIMS = dict(d_model=256, n_heads=8, n_layers=6, d_mlp=1024)
TINY_DIMS = dict(d_model=32, n_heads=4, n_layers=2, d_mlp=64)

#: bf16 dense peak of an H100 SXM, TFLOP/s (the MFU denominator unless --peak-tflops says otherwise).
H100_BF16_PEAK_TFLOPS = 989.0


# ---------------------------------------------------------------------------------------- options
def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny config, one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (median is reported)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: stable on a shared 2-core machine)")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (GPU mode)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS,
                        help="accelerator peak for MFU, TFLOP/s (default: H100 SXM bf16 dense)")
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                        help="timer: process CPU time or wall time (auto: CPU time on CPU, wall on CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


@dataclass
class Setup:
    """Where and how to run: device, threads, bf16 autocast on CUDA, optional torch.compile."""

    device: torch.device
    threads: int
    compile: bool = False
    peak_tflops: float = H100_BF16_PEAK_TFLOPS
    seed: int = 0
    clock: str = "wall"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Setup:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available to this torch build")
        torch.set_num_threads(max(1, args.threads))
        if args.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        clock = args.clock if args.clock != "auto" else ("wall" if args.device == "cuda" else "cpu")
        if clock == "cpu" and args.device == "cuda":
            raise SystemExit("--clock cpu measures host CPU time: use wall time with --device cuda")
        return cls(torch.device(args.device), torch.get_num_threads(), args.compile,
                   args.peak_tflops, args.seed, clock)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (as training runs there); plain float32 on CPU."""
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def timer(self) -> float:
        """Seconds: process CPU time (``--clock cpu``) or wall time."""
        return time.process_time() if self.clock == "cpu" else time.perf_counter()

    def maybe_compile(self, fn):
        return torch.compile(fn) if self.compile else fn

    def describe(self) -> str:
        if self.is_cuda:
            where = f"{torch.cuda.get_device_name(self.device)}, bf16 autocast"
        else:
            where = f"CPU ({platform.processor() or platform.machine()}), float32, {self.threads} thread(s)"
        compiled = ", torch.compile" if self.compile else ", eager"
        clock = ", timed in process CPU time" if self.clock == "cpu" else ", timed in wall time"
        return f"torch {torch.__version__}, {where}{compiled}{clock}"


def model_config(variant: str, dims: dict, n_ctx: int, seed: int = 0) -> IncrementConfig:
    return IncrementConfig(**dims, n_ctx=n_ctx, seed=seed, **VARIANTS[variant])


def build_model(variant: str, dims: dict, n_ctx: int, setup: Setup) -> HookedIncrementTransformer:
    """A fresh model of a variant; every variant gets the same seed, so shared weights agree."""
    return HookedIncrementTransformer(model_config(variant, dims, n_ctx, setup.seed)).to(setup.device)


def random_tokens(batch: int, seq: int, setup: Setup, vocab: int = 257) -> torch.Tensor:
    g = torch.Generator().manual_seed(setup.seed + 1)
    return torch.randint(0, vocab, (batch, seq), generator=g).to(setup.device)


# ---------------------------------------------------------------------------------------- timing
def with_attribute(owner: object, name: str, value: object, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` wrapped to run with ``owner.name`` set to ``value`` and restored afterwards (a
    candidate that switches one library path off, such as a hint or a fused node)."""

    def call() -> object:
        saved = getattr(owner, name)
        setattr(owner, name, value)
        try:
            return fn()
        finally:
            setattr(owner, name, saved)

    return call


def interleaved_times(
    candidates: dict[str, Callable[[], object]], repeats: int, setup: Setup, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` rounds, each round running every candidate
    once in a rotated order. Garbage collection runs between samples, never inside one."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    setup.sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way: the collections below are cheap
    try:
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                gc.collect()
                gc.disable()
                setup.sync()
                start = setup.timer()
                result = candidates[name]()
                setup.sync()
                times[name].append(setup.timer() - start)
                del result  # freed outside the sample: a cache's teardown is not the call's time
                gc.enable()
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    return times


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i] (samples of one round are paired)."""
    return median(a / b for a, b in zip(numerator, denominator, strict=True))


def spread(xs: Sequence[float]) -> float:
    """(max - min) / median of a candidate's samples: how noisy its timing was."""
    return (max(xs) - min(xs)) / median(xs) if len(xs) > 1 else 0.0


# ---------------------------------------------------------------------------------------- memory
def peak_memory_bytes(fn: Callable[[], object], setup: Setup) -> int:
    """Peak increase of live tensor memory (bytes) while ``fn`` runs; see the module docstring."""
    gc.collect()
    if setup.is_cuda:
        setup.sync()
        torch.cuda.reset_peak_memory_stats(setup.device)
        base = torch.cuda.memory_allocated(setup.device)
        fn()
        setup.sync()
        return torch.cuda.max_memory_allocated(setup.device) - base
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    events.sort(key=lambda ev: ev[0])  # stable: same-time events keep their recorded order
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct storages among ``tensors`` (tied weights count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


# ---------------------------------------------------------------------------------------- FLOPs
def matmul_params(cfg: IncrementConfig) -> int:
    """Weights that take part in a matrix product per token: attention, SwiGLU, the tied
    unembedding (counted once: the embedding itself is a lookup) and the increment MLPs."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    per_layer = 4 * d * h * dh + 3 * d * cfg.d_mlp
    delta_mlp = d * cfg.d_delta + cfg.d_delta * cfg.n_delta_outputs
    n_delta = {"none": 0, "shared": 0 if cfg.frozen_deltas else 1, "per_layer": cfg.n_layers}
    return cfg.n_layers * per_layer + d * cfg.d_vocab + n_delta[cfg.increments] * delta_mlp


def flops_per_token(cfg: IncrementConfig, seq: int, training: bool) -> float:
    """Model FLOPs per token, the PaLM (Chowdhery et al. 2022, app. B) convention: 6N + 12·L·H·dh·T
    for a training step, 2N + 4·L·H·dh·T for a forward pass (attention counted without the causal
    half, as that convention does; N = `matmul_params`)."""
    n = matmul_params(cfg)
    attention = cfg.n_layers * cfg.n_heads * cfg.d_head * seq
    return (6 * n + 12 * attention) if training else (2 * n + 4 * attention)


def mfu(cfg: IncrementConfig, seq: int, tokens_per_s: float, training: bool, peak_tflops: float) -> float:
    return flops_per_token(cfg, seq, training) * tokens_per_s / (peak_tflops * 1e12)


# ---------------------------------------------------------------------------------------- reports
class Skipped(Exception):
    """A benchmark that cannot run in this checkout or environment; the message says why."""


@dataclass
class Target:
    """A goal checked on measured ratios, e.g. "per-layer tokens/s >= 0.95 x none"."""

    description: str
    value: float
    limit: float
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        return f"- {'met' if self.met else 'MISSED'}: {self.description}: {self.value:.3f} (target {sign} {self.limit:.2f})"


@dataclass
class Report:
    """One script's result: a title, what was measured, a Markdown table and the targets."""

    title: str
    setting: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> str:
        return markdown_table(self.headers, self.rows)

    def markdown(self, level: int = 3) -> str:
        parts = [f"{'#' * level} {self.title}", "", self.setting, ""]
        if self.rows:
            parts += [self.table(), ""]
        if self.targets:
            parts += [t.line() for t in self.targets] + [""]
        if self.notes:
            parts += [f"Note: {n}" for n in self.notes] + [""]
        return "\n".join(parts)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def fmt_mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def today() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
