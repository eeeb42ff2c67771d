"""Dequantise a GGUF model once: later loads read float32 safetensors from the user cache.

``transformers`` reads a GGUF by dequantising every tensor to float32, on every load: about 25 s
of Gemma 3 270M's 38 s, and its tokenizer is rebuilt from the GGUF's vocabulary for another 11 s.
`load_gguf` does that once per GGUF and saves the result (config, ``model.safetensors``,
tokenizer files) in ``cache_root()/dequantised/<name>-<sha256[:16]>/``:

- the folder is keyed by the GGUF's SHA-256, so another GGUF never reads it;
- it is written as a hidden sibling and renamed into place only when complete, with a manifest
  (``cache.json``: the GGUF's hash, the cache format, the ``transformers`` and ``gguf`` versions,
  each file's size and SHA-256) written last, so a crash leaves no half-cache behind;
- every read checks the manifest first: a missing, corrupt or stale cache (another format or
  library version, a file that changed) is rebuilt from the GGUF with a warning saying why;
- an unwritable cache folder costs only speed: a warning, and the GGUF is read as before.

The first load returns the model read back from the cache it just wrote, so the first and every
later load hand out the same weights the same way (the logits match the GGUF's bit for bit; a test
checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lens_positions.wheel_models import cache_root, sha256_file

#: Bumped whenever the cache's layout changes: older caches are then rebuilt.
CACHE_FORMAT = 1
MANIFEST = "cache.json"


def cache_dir(name: str, gguf_sha256: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return cache_root() / "dequantised" / f"{safe}-{gguf_sha256[:16]}"


def _versions() -> dict[str, str]:
    return {pkg: metadata.version(pkg) for pkg in ("transformers", "gguf")}


def cache_problem(folder: Path, gguf_sha256: str) -> str | None:
    """Why ``folder`` cannot be read as the cache of that GGUF, or None when it can."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return "no cache yet"
    except (OSError, ValueError) as e:
        return f"its manifest is unreadable ({e})"
    if manifest.get("format") != CACHE_FORMAT:
        return f"cache format {manifest.get('format')}, this version writes {CACHE_FORMAT}"
    if manifest.get("gguf_sha256") != gguf_sha256:
        return "it was made from another GGUF"
    if manifest.get("versions") != _versions():
        return f"it was made with {manifest.get('versions')}, this is {_versions()}"
    for name, want in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != want["size"]:
            return f"{name} is missing or truncated"
        if sha256_file(path) != want["sha256"]:
            return f"{name} does not match its SHA-256 (corrupt)"
    if "model.safetensors" not in manifest.get("files", {}):
        return "it holds no weights"
    return None


def read_hf(folder: str | os.PathLike, gguf_file: str | None = None) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def _write(folder: Path, model: nn.Module, tokenizer: Any, gguf_sha256: str, architecture: str | None) -> None:
    """Write the cache as a hidden sibling of ``folder`` and rename it into place."""
    from safetensors.torch import save_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are float32 now
        if architecture and not config.get("architectures"):
            config["architectures"] = [architecture]
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"format": CACHE_FORMAT, "gguf_sha256": gguf_sha256, "versions": _versions(),
                    "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if folder.exists() and cache_problem(folder, gguf_sha256) is not None:
            # An invalid old cache goes out of the way by one rename (a reader never sees half).
            trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.old")
            with contextlib.suppress(OSError):
                os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if cache_problem(folder, gguf_sha256) is not None:  # not another process's good cache
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_gguf(
    gguf_path: Path, name: str, architecture: str | None = None, gguf_sha256: str | None = None,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The HF model (float32, eval) and tokenizer of a GGUF file, through the dequantised cache.

    gguf_sha256: the file's hash when the caller has just checked it (else it is computed here).
    Returns also what happened: ``{"cache": "hit" | "built" | "off", "folder": Path, "why": str}``.
    """
    digest = gguf_sha256 or sha256_file(gguf_path)
    folder = cache_dir(name, digest)
    problem = cache_problem(folder, digest)
    if problem is None:
        try:
            model, tokenizer = read_hf(folder)
            return model, tokenizer, {"cache": "hit", "folder": folder, "why": ""}
        except Exception as e:  # noqa: BLE001 - any unreadable cache is rebuilt
            problem = f"it could not be read ({type(e).__name__}: {e})"
    if problem != "no cache yet":
        warnings.warn(f"{name}: the dequantised cache {folder} is rebuilt: {problem}", stacklevel=3)
    model, tokenizer = read_hf(gguf_path.parent, gguf_path.name)
    if architecture and not getattr(model.config, "architectures", None):
        model.config.architectures = [architecture]
    try:
        _write(folder, model, tokenizer, digest, architecture)
    except OSError as e:
        warnings.warn(f"{name}: could not write the dequantised cache to {folder} ({e}); it is read "
                      "from the GGUF each time (set LENS_POSITIONS_CACHE to a writable folder)", stacklevel=3)
        return model, tokenizer, {"cache": "off", "folder": folder, "why": str(e)}
    del model
    model, tokenizer = read_hf(folder)
    return model, tokenizer, {"cache": "built", "folder": folder, "why": problem}
