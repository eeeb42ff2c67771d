"""Adapters for pretrained rotary models: the trained δ MLPs and LoRA weights of a graft, small.

An adapter is a folder with

- ``adapter.json``: format tag, the base model's name and fingerprint (`base_fingerprint`), the
  increments variant, the increment MLP sizes, and the LoRA set-up (rank, alpha, the HF module
  paths it adapts) or ``"full": true`` when it carries every base weight (a full fine-tune);
- ``adapter.safetensors``: ``delta.delta_mlp.*`` (shared) or ``delta.blocks.{l}.*`` (per-layer)
  and ``lora.{module}.A`` [r, in] / ``lora.{module}.B`` [out, r] (or ``base.{param}`` when full);
- ``card.md`` / ``card.json``: how it was trained (written by `training.graft`).

Loading merges LoRA into the base weights (``W += alpha / r * B @ A``, what peft's merge does), so
the bridged model is a plain Llama with no peft layers in its way. Shipped adapters live in
``lens_positions/pretrained/NAME`` and are found by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lens_positions.atomic import atomic_open, write_json_atomic

FORMAT = "lens_positions.rotary-adapter/v1"
META_NAME = "adapter.json"
TENSORS_NAME = "adapter.safetensors"
SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"


class RotaryModelError(ValueError):
    """A model name, architecture or adapter that `load_rotary_model` cannot use."""


def base_fingerprint(hf_model: nn.Module) -> str:
    """Short hash of the base model's shape and (a strided sample of) its embedding weights."""
    cfg = hf_model.config
    emb = hf_model.get_input_embeddings().weight.detach()
    h = hashlib.sha256()
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size"):
        h.update(f"{key}={getattr(cfg, key, None)};".encode())
    h.update(emb[::97].to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]



def resolve_adapter(adapter: str | os.PathLike) -> Path:
    """An adapter folder given as a path or as the name of a shipped adapter."""
    path = Path(adapter).expanduser()
    if not path.is_dir() and (SHIPPED_DIR / str(adapter)).is_dir():
        path = SHIPPED_DIR / str(adapter)
    if not path.is_dir():
        shipped = sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / META_NAME).is_file())
        raise RotaryModelError(
            f"adapter {str(adapter)!r}: no such folder and no shipped adapter of that name "
            f"(shipped: {', '.join(shipped) or 'none'})"
        )
    return path


def shipped_adapters() -> list[Path]:
    """Folders of the adapters shipped inside the package."""
    return sorted(p for p in SHIPPED_DIR.iterdir() if (p / META_NAME).is_file())


def read_adapter_meta(folder: Path) -> dict[str, Any]:
    """``adapter.json``, checked for the format tag and the fields the loader needs."""
    path = folder / META_NAME
    if not path.is_file():
        raise RotaryModelError(f"{folder}: not an adapter (no {META_NAME})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RotaryModelError(f"{path}: corrupt adapter metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RotaryModelError(f"{path}: not a rotary-model adapter (format {found!r})")
    missing = [k for k in ("base", "base_fingerprint", "increments", "n_layers") if k not in meta]
    if missing:
        raise RotaryModelError(f"{path}: corrupt adapter metadata (missing {', '.join(missing)})")
    return meta


def read_adapter_tensors(folder: Path, meta: dict[str, Any], hf_model: nn.Module) -> dict[str, Tensor]:
    """The adapter's tensors, after checking they were made for this base model."""
    fingerprint = base_fingerprint(hf_model)
    if meta["base_fingerprint"] != fingerprint:
        raise RotaryModelError(
            f"{folder}: adapter made for base {meta['base']!r} (fingerprint "
            f"{meta['base_fingerprint']}), not for this model (fingerprint {fingerprint})"
        )
    if meta["n_layers"] != hf_model.config.num_hidden_layers:
        raise RotaryModelError(f"{folder}: adapter has {meta['n_layers']} layers, the model has "
                               f"{hf_model.config.num_hidden_layers}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / TENSORS_NAME
    if not path.is_file():
        raise RotaryModelError(f"{folder}: corrupt adapter (no {TENSORS_NAME})")
    try:
        tensors = {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise RotaryModelError(f"{path}: corrupt adapter weights ({e})") from e
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise RotaryModelError(f"{path}: corrupt adapter weights ({name} is not finite)")
    return tensors


def merge_lora(hf_model: nn.Module, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Add the LoRA updates (or copy the full weights) into the HF model, before it is bridged."""
    if meta.get("full"):
        params = dict(hf_model.named_parameters())
        for name, param in params.items():
            key = f"base.{name}"
            if key not in tensors:
                raise RotaryModelError(f"corrupt full-weight adapter: {key} missing")
            with torch.no_grad():
                param.copy_(tensors[key].to(param.dtype))
        return
    lora = meta.get("lora")
    if not lora:
        return
    scale = float(lora["alpha"]) / float(lora["r"])
    for path in lora["modules"]:
        try:
            linear = hf_model.get_submodule(path)
        except AttributeError as e:
            raise RotaryModelError(f"adapter adapts {path!r}, which this model does not have") from e
        a, b = tensors.get(f"lora.{path}.A"), tensors.get(f"lora.{path}.B")
        if a is None or b is None:
            raise RotaryModelError(f"corrupt adapter: LoRA weights of {path!r} missing")
        if (b.shape[0], a.shape[1]) != tuple(linear.weight.shape):
            raise RotaryModelError(f"corrupt adapter: LoRA of {path!r} has shape "
                                   f"{tuple(b.shape)} x {tuple(a.shape)}, weight {tuple(linear.weight.shape)}")
        with torch.no_grad():
            linear.weight += (scale * (b.float() @ a.float())).to(linear.weight.dtype)


def delta_state(bridge: nn.Module) -> dict[str, Tensor]:
    """The bridge's increment-MLP weights under their adapter names (empty for ``none``)."""
    out: dict[str, Tensor] = {}
    if getattr(bridge, "increments", "none") == "shared":
        for k, v in bridge.delta_mlp.state_dict().items():
            out[f"delta.delta_mlp.{k}"] = v
    elif getattr(bridge, "increments", "none") == "per_layer":
        for layer, block in enumerate(bridge.blocks):
            for k, v in block.delta_mlp.state_dict().items():
                out[f"delta.blocks.{layer}.{k}"] = v
    return out


def load_delta_weights(bridge: nn.Module, tensors: dict[str, Tensor], folder: Path) -> None:
    """Copy the adapter's δ-MLP weights into the grafted bridge (every one must be there)."""
    expected = delta_state(bridge)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(k for k in tensors if k.startswith("delta.") and k not in expected)
    if missing or extra:
        raise RotaryModelError(
            f"{folder}: adapter does not match the {bridge.increments!r} graft "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    modules = (
        {"delta.delta_mlp.": bridge.delta_mlp}
        if bridge.increments == "shared"
        else {f"delta.blocks.{i}.": b.delta_mlp for i, b in enumerate(bridge.blocks)}
    )
    for prefix, module in modules.items():
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            raise RotaryModelError(f"{folder}: corrupt adapter δ weights ({e})") from e


def lora_tensors(lora_modules: dict[str, nn.Module], adapter_name: str = "default") -> dict[str, Tensor]:
    """``lora.{path}.A/B`` from peft LoRA layers, keyed by their paths in the un-bridged HF model."""
    out = {}
    for path, layer in lora_modules.items():
        out[f"lora.{path}.A"] = layer.lora_A[adapter_name].weight.detach().float().contiguous()
        out[f"lora.{path}.B"] = layer.lora_B[adapter_name].weight.detach().float().contiguous()
    return out


def save_adapter(
    folder: str | os.PathLike,
    bridge: nn.Module,
    *,
    base: str,
    fingerprint: str,
    lora: dict[str, Any] | None = None,
    lora_modules: dict[str, nn.Module] | None = None,
    full_weights: dict[str, Tensor] | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` atomically; return the folder.

    lora: ``{"r", "alpha", "modules": [paths]}`` with ``lora_modules`` the peft layers at those paths;
    full_weights: every HF parameter by name (a full fine-tune) instead.
    dtype: storage type of the tensors (float16 halves the file; loading casts back to float32).
    """
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {k: v.detach().float().contiguous() for k, v in delta_state(bridge).items()}
    if lora_modules:
        tensors.update(lora_tensors(lora_modules))
    if full_weights is not None:
        tensors.update({f"base.{k}": v.detach().float().contiguous() for k, v in full_weights.items()})
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    with atomic_open(folder / TENSORS_NAME, "wb", fsync=True) as f:
        f.write(save(tensors))
    meta = {
        "format": FORMAT,
        "base": base,
        "base_fingerprint": fingerprint,
        "increments": bridge.increments,
        "n_layers": len(bridge.blocks),
        "delta_mlp": {"max_delta": bridge.increment_graft.cfg.max_delta,
                      "d_delta": bridge.increment_graft.cfg.d_delta},
        "lora": lora,
        "full": full_weights is not None,
        "dtype": str(dtype).removeprefix("torch."),
        **(extra or {}),
    }
    write_json_atomic(folder / META_NAME, meta)
    return folder
