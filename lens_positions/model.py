"""`HookedIncrementTransformer`: a byte-level transformer whose RoPE positions are learned sums.

Built on TransformerLens's `HookedRootModule`, so `run_with_cache`, `run_with_hooks`, `hooks()`,
`ActivationCache` and `transformer_lens.patching` work on it as on a HookedTransformer. Hook names
follow TransformerLens (``hook_embed``, ``blocks.{l}.hook_resid_pre``, ``blocks.{l}.attn.hook_pattern``
...) plus ``blocks.{l}.hook_delta`` and ``blocks.{l}.hook_position``, and for the increment MLPs
``delta_mlp.hook_pre/post/raw`` (shared) or ``blocks.{l}.delta_mlp.*`` (per layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from lens_positions import tokenizer
from lens_positions.block import TransformerBlock
from lens_positions.components import RMSNorm
from lens_positions.config import SEPARATOR_ID, IncrementConfig
from lens_positions.increments import DeltaMLP, DeltaTable, check_delta_table
from lens_positions.kv_cache import IncrementKVCache

TextInput = str | Sequence[str] | Tensor


class Embed(nn.Module):
    """Token embedding W_E [d_vocab, d_model]; tied with the unembedding."""

    def __init__(self, cfg: IncrementConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        nn.init.normal_(self.W_E, std=cfg.initializer_range)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(tokens, self.W_E)  # its dense backward beats index_put's accumulate


class HookedIncrementTransformer(HookedRootModule):
    """Decoder-only byte transformer with learned position increments and TransformerLens hooks.

    >>> cfg = IncrementConfig(d_model=64, n_heads=4, n_layers=2, d_mlp=128, n_ctx=64,
    ...                       increments="per_layer")
    >>> model = HookedIncrementTransformer(cfg).eval()
    >>> logits, cache = model.run_with_cache("New York")
    >>> cache["blocks.1.hook_delta"].shape   # [batch, pos]: separator + 8 bytes
    torch.Size([1, 9])
    """

    def __init__(self, cfg: IncrementConfig):
        super().__init__()
        if not isinstance(cfg, IncrementConfig):
            raise TypeError(f"expected an IncrementConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.delta_mlp = (
            DeltaMLP(cfg, per_layer=False)
            if cfg.increments == "shared" and not cfg.frozen_deltas
            else None
        )
        self.delta_table = DeltaTable(cfg) if cfg.frozen_deltas else None
        self.blocks = nn.ModuleList(TransformerBlock(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = RMSNorm(cfg.d_model, cfg.eps)
        self.setup()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: TextInput,
        return_type: Literal["logits", "loss", "both"] | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool = True,
        past_kv_cache: IncrementKVCache | None = None,
        stop_at_layer: int | None = None,
    ) -> Any:
        """Run the model.

        input: text (prepended with the separator unless ``prepend_bos=False``), a list of texts,
            or tokens [batch, pos] / [pos].
        return_type: "logits" [batch, pos, d_vocab]; "loss" (mean next-byte cross-entropy, nats,
            or [batch, pos-1] with ``loss_per_token``); "both" -> (logits, loss); None -> None.
        past_kv_cache: an `IncrementKVCache`; the tokens continue the cached ones.
        stop_at_layer: return the residual stream [batch, pos, d_model] entering that block.
        """
        tokens = self._input_tokens(input, prepend_bos, past_kv_cache)
        resid = self.hook_embed(self.embed(tokens))
        shared_delta = None
        if self.delta_mlp is not None:
            shared_delta = self.delta_mlp(resid)
        elif self.delta_table is not None:
            shared_delta = self.delta_table(tokens)
        for layer, block in enumerate(self.blocks[:stop_at_layer]):
            cache = None if past_kv_cache is None else past_kv_cache[layer]
            resid = block(resid, shared_delta, cache)
        if stop_at_layer is not None:
            return resid
        if return_type is None:
            return None
        logits = self.ln_final(resid) @ self.W_U
        if return_type == "logits":
            return logits
        loss = self.loss_fn(logits, tokens, per_token=loss_per_token)
        if return_type == "loss":
            return loss
        if return_type == "both":
            return logits, loss
        raise ValueError(f"unknown return_type {return_type!r}: use 'logits', 'loss', 'both' or None")

    @staticmethod
    def loss_fn(
        logits: Float[Tensor, "batch pos d_vocab"],
        tokens: Int[Tensor, "batch pos"],
        per_token: bool = False,
    ) -> Tensor:
        """Next-byte cross-entropy in nats: mean, or [batch, pos-1] with ``per_token``."""
        if tokens.shape[1] < 2:
            raise ValueError("the loss needs at least two tokens (one prediction)")
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none"
        ).view(tokens.shape[0], -1)
        return loss if per_token else loss.mean()

    def run_with_cache(
        self, *model_args: Any, return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs: Any
    ) -> tuple[Any, ActivationCache | dict[str, Tensor]]:
        """Run and cache activations; returns (output, `transformer_lens.ActivationCache`)."""
        out, cache_dict = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        if return_cache_object:
            return out, ActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)
        return out, cache_dict

    # ------------------------------------------------------------------ input checks
    def _check_token_range(self, tokens: Int[Tensor, "batch pos"], on_host: bool | None = None) -> None:
        """Raise on ids outside [0, d_vocab) before they index the embedding.

        On CPU this is a cheap host check with a readable error. On an accelerator reading the
        range back would stall the host once per forward pass (the GPU waits idle while Python
        catches up), so there the check is queued on the device instead (``_assert_async``): a bad
        id still stops the run, as a device-side assertion, without a per-call synchronisation.
        Inside ``torch.compile`` the check is left to the embedding's own bounds check.
        ``on_host`` overrides the choice (default: host check for CPU tensors only).
        """
        if torch.compiler.is_compiling():
            return
        if on_host if on_host is not None else tokens.device.type == "cpu":
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.cfg.d_vocab:
                raise ValueError(
                    f"token ids must lie in [0, {self.cfg.d_vocab}); got values in [{lo}, {hi}]"
                )
        else:
            in_range = ((tokens >= 0) & (tokens < self.cfg.d_vocab)).all()
            torch._assert_async(in_range, f"token ids must lie in [0, {self.cfg.d_vocab})")

    def _input_tokens(
        self, input: TextInput, prepend_bos: bool, past_kv_cache: IncrementKVCache | None
    ) -> Int[Tensor, "batch pos"]:
        if isinstance(input, Tensor):
            tokens = input
            if tokens.ndim == 1:
                tokens = tokens.unsqueeze(0)
            if tokens.ndim != 2:
                raise ValueError(f"tokens must be [batch, pos] or [pos], got shape {tuple(tokens.shape)}")
            if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
                raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
            if tokens.shape[1] == 0:
                raise ValueError("empty input: tokens have no positions")
            self._check_token_range(tokens)
            tokens = tokens.to(self.W_E.device)
        else:
            tokens = self.to_tokens(input, prepend_bos=prepend_bos)
        past = 0 if past_kv_cache is None else past_kv_cache.n_tokens
        if past + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"input of {past + tokens.shape[1]} tokens"
                + (f" ({past} cached)" if past else "")
                + f" is longer than the context (n_ctx={self.cfg.n_ctx}); "
                "split it with model.to_token_chunks(text)"
            )
        return tokens

    # ------------------------------------------------------------------ tokenizer helpers
    def to_tokens(
        self, input: str | Sequence[str], prepend_bos: bool = True, move_to_device: bool = True
    ) -> Int[Tensor, "batch pos"]:
        """UTF-8 bytes of a text (or texts) as [batch, pos] token ids.

        The separator (id 256) is prepended by default, like TransformerLens's prepend_bos. Texts of
        different byte lengths are right-padded with the separator. Empty text and text longer than
        n_ctx are errors (`to_token_chunks` splits long text).
        """
        texts = [input] if isinstance(input, str) else list(input)
        if not texts:
            raise ValueError("empty input: no texts given")
        rows = []
        for text in texts:
            ids = tokenizer.encode(text, prepend_separator=prepend_bos)
            if not text:
                raise ValueError("empty text: there is nothing to tokenize")
            if len(ids) > self.cfg.n_ctx:
                raise ValueError(
                    f"text is {len(ids)} tokens long (with the separator) but the context is "
                    f"{self.cfg.n_ctx}; split it with model.to_token_chunks(text)"
                )
            rows.append(ids)
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), SEPARATOR_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return tokens.to(self.W_E.device) if move_to_device else tokens

    def to_token_chunks(
        self, text: str, max_tokens: int | None = None, prepend_bos: bool = True
    ) -> list[Int[Tensor, "1 pos"]]:
        """Split a long text into pieces that fit the context, cutting only between characters.

        Each chunk is [1, pos] with pos <= ``max_tokens`` (n_ctx by default), separator included.
        """
        if not text:
            raise ValueError("empty text: there is nothing to tokenize")
        limit = (max_tokens or self.cfg.n_ctx) - int(prepend_bos)
        if limit < 4:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for a 4-byte character")
        chunks, current, size = [], [], 0
        for ch in text:
            n = len(ch.encode("utf-8"))
            if size + n > limit:
                chunks.append("".join(current))
                current, size = [], 0
            current.append(ch)
            size += n
        chunks.append("".join(current))
        return [self.to_tokens(c, prepend_bos=prepend_bos) for c in chunks]

    def to_string(self, tokens: Tensor | list[int]) -> str | list[str]:
        """Text of tokens [pos] (a str) or [batch, pos] (a list); separators become newlines."""
        if isinstance(tokens, Tensor) and tokens.ndim == 2:
            return [tokenizer.decode(row) for row in tokens]
        return tokenizer.decode(tokens)

    def to_str_tokens(self, input: str | Tensor, prepend_bos: bool = True) -> list[str]:
        """One label per token (see `tokenizer.str_tokens`): characters on their first byte."""
        if isinstance(input, str):
            input = self.to_tokens(input, prepend_bos=prepend_bos)[0]
        if input.ndim == 2:
            if input.shape[0] != 1:
                raise ValueError("to_str_tokens takes one sequence")
            input = input[0]
        return tokenizer.str_tokens(input)

    def to_single_token(self, string: str) -> int:
        """The id of a one-byte string (or ``"<sep>"``)."""
        if string == tokenizer.SEPARATOR_STR:
            return SEPARATOR_ID
        ids = tokenizer.encode(string, prepend_separator=False)
        if len(ids) != 1:
            raise ValueError(f"{string!r} is {len(ids)} bytes, not a single token")
        return ids[0]

    def char_spans(self, tokens: Tensor | list[int]) -> list[tokenizer.CharSpan]:
        """Characters of a token sequence and the token range each covers."""
        return tokenizer.char_spans(tokens)

    # ------------------------------------------------------------------ weights, TL style
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        """Unembedding, tied to the embedding."""
        return self.embed.W_E.T

    def _stack(self, name: str, part: str) -> Tensor:
        return torch.stack([getattr(getattr(b, part), name) for b in self.blocks])

    @property
    def W_Q(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("W_Q", "attn")

    @property
    def W_K(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("W_K", "attn")

    @property
    def W_V(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("W_V", "attn")

    @property
    def W_O(self) -> Float[Tensor, "n_layers n_heads d_head d_model"]:
        return self._stack("W_O", "attn")

    @property
    def W_in(self) -> Float[Tensor, "n_layers d_model d_mlp"]:
        return self._stack("W_in", "mlp")

    @property
    def W_gate(self) -> Float[Tensor, "n_layers d_model d_mlp"]:
        return self._stack("W_gate", "mlp")

    @property
    def W_out(self) -> Float[Tensor, "n_layers d_mlp d_model"]:
        return self._stack("W_out", "mlp")

    def tokens_to_residual_directions(self, tokens: str | int | Tensor) -> Tensor:
        """Unembedding directions of tokens: [d_model] for one token, else [..., d_model]."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        if isinstance(tokens, Tensor) and tokens.numel() == 1:
            tokens = int(tokens.item())
        if isinstance(tokens, int):
            return self.W_U[:, tokens]
        return self.W_U[:, tokens].movedim(0, -1)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> Tensor:
        """The model has no biases: zeros [d_model] (for ActivationCache's decompositions)."""
        return torch.zeros(self.cfg.d_model, device=self.W_E.device)

    def _apply(self, fn: Any, recurse: bool = True) -> HookedIncrementTransformer:
        out = super()._apply(fn, recurse)
        self.cfg.device = str(self.embed.W_E.device)  # patching reads cfg.device
        return out

    # ------------------------------------------------------------------ increments
    @torch.no_grad()
    def get_deltas(self, input: TextInput, prepend_bos: bool = True) -> Float[Tensor, "n_layers batch pos *heads"]:
        """Every layer's δ for an input, stacked: [n_layers, batch, pos] (or [..., n_heads])."""
        names = [f"blocks.{layer}.hook_delta" for layer in range(self.cfg.n_layers)]
        _, cache = self.run_with_cache(input, names_filter=names, prepend_bos=prepend_bos, return_type=None)
        return torch.stack([cache[n] for n in names])

    @torch.no_grad()
    def get_positions(self, input: TextInput, prepend_bos: bool = True) -> Float[Tensor, "n_layers batch pos *heads"]:
        """Every layer's cumulative positions, stacked like `get_deltas`."""
        names = [f"blocks.{layer}.hook_position" for layer in range(self.cfg.n_layers)]
        _, cache = self.run_with_cache(input, names_filter=names, prepend_bos=prepend_bos, return_type=None)
        return torch.stack([cache[n] for n in names])

    @torch.no_grad()
    def byte_deltas(self) -> Float[Tensor, "d_vocab ..."]:
        """δ of every token id from its identity alone (shared and frozen variants; per-layer L0 uses
        the residual stream, which at layer 0 is the embedding, so it is given too, for layer 0)."""
        if self.delta_table is not None:
            return self.delta_table.deltas.clone()
        emb = self.W_E.unsqueeze(0)  # [1, d_vocab, d_model]
        if self.delta_mlp is not None:
            return self.delta_mlp(emb)[0]
        if self.cfg.increments == "per_layer":
            return self.blocks[0].delta_mlp(emb)[0]
        return torch.ones(self.cfg.d_vocab, device=self.W_E.device)

    def set_frozen_deltas(self, table: Tensor) -> None:
        """Load a per-token δ table [d_vocab] (or [d_vocab, n_heads]) into a frozen-deltas model.

        Entries must be finite and positive, or with ``signed`` lie in `increments.signed_range`."""
        if self.delta_table is None:
            raise ValueError("this model has no delta table: build it with frozen_deltas=True")
        expected = self.delta_table.deltas.shape
        if tuple(table.shape) != tuple(expected):
            raise ValueError(f"delta table must have shape {tuple(expected)}, got {tuple(table.shape)}")
        check_delta_table(table, self.cfg)
        self.delta_table.deltas.copy_(table.to(self.delta_table.deltas))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        input: str | Tensor,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        stop_at_separator: bool = True,
        use_past_kv_cache: bool = True,
        prepend_bos: bool = True,
        seed: int | None = None,
        return_type: Literal["str", "tokens"] | None = None,
        verbose: bool = False,
    ) -> str | list[str] | Tensor:
        """Sample a continuation byte by byte (greedy with ``temperature=0``).

        ``verbose`` is accepted as TransformerLens's ``generate`` accepts it; no progress bar is shown.

        With ``use_past_kv_cache`` each step feeds only the new byte, reusing cached keys, values
        and each layer's last position; the result equals recomputing the whole sequence.
        Returns text for text input (default) or tokens [batch, pos] for token input.
        """
        if return_type is None:
            return_type = "str" if isinstance(input, str) else "tokens"
        tokens = self._input_tokens(input, prepend_bos, None)
        if tokens.shape[1] + max_new_tokens > self.cfg.n_ctx:
            raise ValueError(
                f"prompt ({tokens.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                f"the context (n_ctx={self.cfg.n_ctx})"
            )
        generator = None
        if seed is not None:
            generator = torch.Generator(device=tokens.device).manual_seed(seed)
        cache = IncrementKVCache(self.cfg.n_layers) if use_past_kv_cache else None
        finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        new_input = tokens
        for _ in range(max_new_tokens):
            logits = self(new_input if cache is not None else tokens, past_kv_cache=cache)[:, -1]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits.float(), -1), 1, generator=generator)[:, 0]
            nxt = torch.where(finished, torch.full_like(nxt, SEPARATOR_ID), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            new_input = nxt[:, None]
            if stop_at_separator:
                finished |= nxt == SEPARATOR_ID
                if finished.all():
                    break
        if return_type == "tokens":
            return tokens
        skip = int(prepend_bos and isinstance(input, str))
        texts = [tokenizer.decode(row[skip:][row[skip:] != SEPARATOR_ID]) for row in tokens]
        return texts[0] if isinstance(input, str) else texts

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, card: str | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (and ``card.md``) atomically into a folder."""
        from lens_positions.checkpoints import save_pretrained

        return save_pretrained(self, directory, card=card)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, device: str | None = None) -> HookedIncrementTransformer:
        """Load a shipped model by name (see `lens_positions.checkpoints.list_models`) or a saved folder."""
        from lens_positions.checkpoints import load_pretrained

        return load_pretrained(name_or_dir, device=device, model_class=cls)

    @classmethod
    def from_reference_checkpoint(cls, path: str | Path, device: str | None = None) -> HookedIncrementTransformer:
        """Import a checkpoint written by the reference experiment (brendanlong/learned-position-
        increments-experiment): a torch file with ``model_config`` and ``model_state_dict``."""
        from lens_positions.reference import load_reference_checkpoint

        return load_reference_checkpoint(path, device=device, model_class=cls)
