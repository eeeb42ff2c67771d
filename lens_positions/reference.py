"""Import checkpoints written by the reference experiment code.

The reference (brendanlong/learned-position-increments-experiment, ``experiments/selective_pe``)
saves a torch file with ``model_config`` (pos_encoding, dim, n_heads, n_layers, intermediate_dim,
vocab_size, max_seq_len, rope_theta, norm_eps, per_layer_delta, per_head_delta, decay, ...) and
``model_state_dict``. Its conventions, which this importer maps onto ours:

- weights are ``nn.Linear`` matrices [out, in]; ours are TransformerLens-shaped [in, out] per head;
- RoPE rotates interleaved pairs (2i, 2i+1) of each head, as ours does, but at integer positions
  0, 1, 2 ... for plain RoPE (ours are 1, 2, 3 ...: the same model, RoPE sees only differences);
- the increment MLPs are Linear -> GELU -> Linear with biases; the per-layer one has an
  ``nn.RMSNorm`` with torch's default epsilon on its input and is bounded at 10 * sigmoid;
- a frozen model stores a ``frozen_delta.deltas`` table instead of an MLP.

Options this architecture does not have (PoPE, ALiBi or learned decay, GELU MLPs, LayerNorm) are
refused with an error instead of loading a silently different model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lens_positions.checkpoints import CheckpointError, load_state
from lens_positions.config import IncrementConfig

if TYPE_CHECKING:
    from lens_positions.model import HookedIncrementTransformer

REFERENCE_MAX_DELTA = 10.0  # hard-coded default of the reference's bounded increment MLP


def config_from_reference(rc: dict[str, Any], source: str, frozen: bool) -> IncrementConfig:
    """Our config for a reference ``model_config`` dict; unsupported options raise."""
    def unsupported(what: str) -> CheckpointError:
        return CheckpointError(f"{source}: reference checkpoint uses {what}, which lens_positions does not implement")

    pe = rc.get("pos_encoding", "rope")
    if pe in ("pope", "selective_pope"):
        raise unsupported(f"pos_encoding={pe!r} (PoPE)")
    if pe not in ("rope", "selective_rope"):
        raise unsupported(f"an unknown pos_encoding {pe!r}")
    decay = rc.get("decay", "none")
    if decay != "none":
        raise unsupported(f"decay={decay!r} ({'ALiBi' if decay == 'alibi' else 'learned decay'})")
    if rc.get("activation", "swiglu") != "swiglu":
        raise unsupported(f"activation={rc['activation']!r} (GELU MLPs)")
    if rc.get("norm_type", "rmsnorm") != "rmsnorm":
        raise unsupported(f"norm_type={rc['norm_type']!r}")
    missing = [k for k in ("dim", "n_heads", "n_layers", "intermediate_dim") if k not in rc]
    if missing:
        raise CheckpointError(f"{source}: model_config lacks {', '.join(missing)}")
    per_layer = bool(rc.get("per_layer_delta", False))
    increments = "none" if pe == "rope" else ("per_layer" if per_layer else "shared")
    try:
        return IncrementConfig(
            d_model=rc["dim"],
            n_heads=rc["n_heads"],
            n_layers=rc["n_layers"],
            d_mlp=rc["intermediate_dim"],
            n_ctx=rc.get("max_seq_len", 256),
            d_vocab=rc.get("vocab_size", 257),
            increments=increments,
            per_head=bool(rc.get("per_head_delta", False)) and increments != "none",
            frozen_deltas=frozen,
            max_delta=REFERENCE_MAX_DELTA,
            d_delta=rc.get("delta_hidden_dim") or rc["dim"] // 4,
            rope_theta=float(rc.get("rope_theta", 10_000.0)),
            eps=float(rc.get("norm_eps", 1e-5)),
            delta_eps=None,
        )
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e


def _heads_from_linear_in(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """nn.Linear weight [n_heads*d_head, d_model] -> [n_heads, d_model, d_head]."""
    d_model = w.shape[1]
    return w.T.reshape(d_model, n_heads, -1).permute(1, 0, 2)


def state_from_reference(sd: dict[str, torch.Tensor], cfg: IncrementConfig) -> dict[str, torch.Tensor]:
    """Rename and reshape a reference state dict into ours."""
    out: dict[str, torch.Tensor] = {"embed.W_E": sd["tok_emb.weight"], "ln_final.w": sd["final_norm.weight"]}
    H = cfg.n_heads
    for i in range(cfg.n_layers):
        src, dst = f"layers.{i}.", f"blocks.{i}."
        out[dst + "ln1.w"] = sd[src + "attn_norm.weight"]
        out[dst + "ln2.w"] = sd[src + "ffn_norm.weight"]
        for name in ("q", "k", "v"):
            out[dst + f"attn.W_{name.upper()}"] = _heads_from_linear_in(sd[src + f"attn.w{name}.weight"], H)
        wo = sd[src + "attn.wo.weight"]  # [d_model, n_heads*d_head]
        out[dst + "attn.W_O"] = wo.T.reshape(H, -1, wo.shape[0])
        out[dst + "mlp.W_gate"] = sd[src + "ffn.w_gate.weight"].T
        out[dst + "mlp.W_in"] = sd[src + "ffn.w_up.weight"].T
        out[dst + "mlp.W_out"] = sd[src + "ffn.w_down.weight"].T
    mlps: list[tuple[str, str]] = []
    if cfg.frozen_deltas:
        out["delta_table.deltas"] = sd["frozen_delta.deltas"].float()
    elif cfg.increments == "shared":
        mlps.append(("delta_mlp.", "delta_mlp."))
    elif cfg.increments == "per_layer":
        mlps += [(f"delta_mlps.{i}.", f"blocks.{i}.delta_mlp.") for i in range(cfg.n_layers)]
        for i in range(cfg.n_layers):
            out[f"blocks.{i}.delta_mlp.ln.w"] = sd[f"delta_mlps.{i}.norm.weight"]
    for src, dst in mlps:
        out[dst + "W_in"] = sd[src + "fc1.weight"].T
        out[dst + "b_in"] = sd[src + "fc1.bias"]
        out[dst + "W_out"] = sd[src + "fc2.weight"].T
        out[dst + "b_out"] = sd[src + "fc2.bias"]
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def load_reference_checkpoint(
    path: str | Path, device: str | None = None, *, model_class: type[HookedIncrementTransformer]
) -> HookedIncrementTransformer:
    """Load a reference-experiment checkpoint as a ``model_class`` (`HookedIncrementTransformer`,
    which passes itself), in eval mode."""

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such reference checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt pickles/zips
        raise CheckpointError(f"{path}: cannot read the torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model_state_dict" not in ckpt:
        raise CheckpointError(f"{path}: expected a dict with 'model_config' and 'model_state_dict'")
    sd = ckpt["model_state_dict"]
    sd = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}  # torch.compile'd models
    frozen = "frozen_delta.deltas" in sd
    cfg = config_from_reference(dict(ckpt["model_config"]), str(path), frozen)
    try:
        state = state_from_reference(sd, cfg)
    except KeyError as e:
        raise CheckpointError(f"{path}: model_state_dict lacks {e.args[0]!r} needed by this config") from e
    model = model_class(cfg)
    load_state(model, state, str(path))
    if device is not None:
        model.to(device)
    return model.eval()
