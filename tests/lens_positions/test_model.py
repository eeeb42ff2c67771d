"""The model's defining properties: δ=1 at init, positions as running sums, invariances,
attention backends, cached generation, shapes and input errors."""

from __future__ import annotations

import pytest
import torch

from lens_positions import HookedIncrementTransformer, IncrementConfig, IncrementKVCache

from ..conftest import VARIANT_IDS, VARIANTS, perturb_deltas, small_config

TEXT = "Marie Curie won two prizes. 人工智能是一个分支。"


@pytest.mark.parametrize(("increments", "per_head", "frozen"), VARIANTS, ids=VARIANT_IDS)
def test_every_model_starts_as_integer_rope(increments, per_head, frozen):
    model = HookedIncrementTransformer(small_config(increments, per_head, frozen)).eval()
    tokens = model.to_tokens(TEXT)
    deltas = model.get_deltas(tokens)
    positions = model.get_positions(tokens)
    n = tokens.shape[1]
    expected_shape = (model.cfg.n_layers, 1, n) + ((model.cfg.n_heads,) if per_head else ())
    assert deltas.shape == expected_shape and positions.shape == expected_shape
    assert torch.equal(deltas, torch.ones_like(deltas))  # exactly 1, not approximately
    steps = torch.arange(1, n + 1, dtype=torch.float32).view(1, 1, n, *([1] * per_head))
    assert torch.equal(positions, steps.expand_as(positions))


def test_positions_are_running_sums_of_learned_deltas(any_model):
    tokens = any_model.to_tokens(TEXT)
    _, cache = any_model.run_with_cache(tokens)
    for layer in range(any_model.cfg.n_layers):
        delta = cache[f"blocks.{layer}.hook_delta"]
        pos = cache[f"blocks.{layer}.hook_position"]
        assert pos.dtype == torch.float32 and (delta > 0).all()
        torch.testing.assert_close(pos, torch.cumsum(delta.double(), dim=1).float())
    if any_model.cfg.increments != "none":  # the perturbed model really has non-integer positions
        assert not torch.allclose(cache["blocks.0.hook_delta"], torch.ones(1))


def test_deltas_hooked_to_one_equal_the_none_variant():
    learned = perturb_deltas(HookedIncrementTransformer(small_config("per_layer", per_head=True)).eval())
    plain = HookedIncrementTransformer(small_config("none")).eval()
    shared_keys = set(plain.state_dict())
    plain.load_state_dict({k: v for k, v in learned.state_dict().items() if k in shared_keys})
    tokens = learned.to_tokens(TEXT)
    ones = [(f"blocks.{i}.hook_delta", lambda d, hook: torch.ones_like(d)) for i in range(3)]
    with torch.no_grad():
        hooked = learned.run_with_hooks(tokens, fwd_hooks=ones)
        reference = plain(tokens)
        unhooked = learned(tokens)
    torch.testing.assert_close(hooked, reference, atol=1e-5, rtol=1e-5)
    assert (unhooked - reference).abs().max() > 1e-3  # the learned deltas do matter


def test_shifting_every_position_changes_nothing(any_model):
    tokens = any_model.to_tokens(TEXT)
    shift = [(f"blocks.{i}.hook_position", lambda p, hook: p + 37.5) for i in range(3)]
    with torch.no_grad():
        base = any_model(tokens)
        shifted = any_model.run_with_hooks(tokens, fwd_hooks=shift)
        scaled = any_model.run_with_hooks(
            tokens, fwd_hooks=[("blocks.1.hook_position", lambda p, hook: p * 3.0)]
        )
    torch.testing.assert_close(shifted, base, atol=2e-5, rtol=1e-4)
    assert (scaled - base).abs().max() > 1e-4  # while stretching them does change the output


def test_editing_one_layers_delta_moves_only_that_layers_positions():
    model = perturb_deltas(HookedIncrementTransformer(small_config("shared")).eval())
    tokens = model.to_tokens(TEXT)
    _, clean = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=[("blocks.1.hook_delta", lambda d, hook: d * 2)]):
        _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["blocks.1.hook_position"], 2 * clean["blocks.1.hook_position"])
    torch.testing.assert_close(cache["blocks.0.hook_position"], clean["blocks.0.hook_position"])
    torch.testing.assert_close(cache["blocks.2.hook_position"], clean["blocks.2.hook_position"])


def test_setting_positions_directly():
    learned = perturb_deltas(HookedIncrementTransformer(small_config("shared")).eval())
    plain = HookedIncrementTransformer(small_config("none")).eval()
    plain.load_state_dict({k: v for k, v in learned.state_dict().items() if k in plain.state_dict()})
    tokens = learned.to_tokens(TEXT)
    n = tokens.shape[1]
    integer = torch.arange(1, n + 1, dtype=torch.float32)[None]
    set_positions = [(f"blocks.{i}.hook_position", lambda p, hook: integer.clone()) for i in range(3)]
    with torch.no_grad():
        hooked = learned.run_with_hooks(tokens, fwd_hooks=set_positions)
        assert (learned(tokens) - plain(tokens)).abs().max() > 1e-3
    torch.testing.assert_close(hooked, plain(tokens), atol=1e-5, rtol=1e-5)


def test_sdpa_and_materialised_attention_agree(any_model):
    tokens = any_model.to_tokens(["Hello, world!", "人工智能是一个分支。"])
    with torch.no_grad():
        fast = any_model(tokens)
        any_model.cfg.use_sdpa = False
        slow = any_model(tokens)
        any_model.cfg.use_sdpa = True
        cached, cache = any_model.run_with_cache(tokens)  # a pattern hook forces materialising
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, fast, atol=1e-5, rtol=1e-5)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (2, 4, tokens.shape[1], tokens.shape[1])
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert pattern.triu(1).abs().max() == 0  # causal


def test_pattern_hook_takes_the_materialised_path():
    model = HookedIncrementTransformer(small_config("none")).eval()
    tokens = model.to_tokens("abcdef")
    seen = []
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: seen.append(p))])
    assert len(seen) == 1 and seen[0].shape[-1] == tokens.shape[1]
    # Without hooks the pattern is never built (SDPA): no hook on it fires.
    assert not model.blocks[0].attn.needs_pattern()


@pytest.mark.parametrize(("per_head", "signed"), [(False, False), (True, False), (False, True)],
                         ids=["one-rate", "per-head", "signed"])
def test_folded_delta_norm_equals_the_hooked_norm(per_head, signed):
    """Unhooked, the per-layer δ-MLP folds its RMSNorm into the first matmul and trains as one
    autograd node with a hand-written backward (`_DeltaMLPFunction`); hooking
    ``delta_mlp.ln.hook_normalized`` computes the norm explicitly through plain autograd. Both
    give the same δ, logits and gradients."""
    tokens = torch.randint(0, 257, (2, 40), generator=torch.Generator().manual_seed(3))
    results = []
    for hooked in (False, True):
        model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer", per_head, signed=signed)))
        with torch.no_grad():
            for block in model.blocks:  # a non-trivial norm weight, so the fold is really tested
                block.delta_mlp.ln.w.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(4))
        seen: list[torch.Tensor] = []
        hooks = [(f"blocks.{b}.delta_mlp.ln.hook_normalized", lambda x, hook, seen=seen: seen.append(x)) for b in range(3)]
        with model.hooks(fwd_hooks=hooks if hooked else []):
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_delta"))
            logits.square().mean().backward()
        assert len(seen) == (3 if hooked else 0)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logits.detach(), cache.stack_activation("delta"), grads))
    (logits_f, delta_f, grads_f), (logits_h, delta_h, grads_h) = results
    assert not torch.allclose(delta_f, torch.ones_like(delta_f))
    torch.testing.assert_close(delta_f, delta_h, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits_f, logits_h, atol=1e-5, rtol=1e-5)
    assert grads_f.keys() == grads_h.keys() and any("delta_mlp.ln.w" in n for n in grads_f)
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_h[name], atol=1e-5, rtol=1e-4, msg=name)


def _graph_names(t: torch.Tensor, depth: int = 3) -> set[str]:
    names, frontier = set(), [t.grad_fn]
    for _ in range(depth):
        frontier = [f for f in frontier if f is not None]
        names |= {type(f).__name__ for f in frontier}
        frontier = [g for f in frontier for g, _ in f.next_functions]
    return names


def test_the_delta_mlp_trains_as_one_node_unless_hooked():
    """Alone (its own norm, no stream from ln1) the fused node gives the plain path's δ and
    gradients to rounding."""
    mlp = perturb_deltas(HookedIncrementTransformer(small_config("per_layer", delta_eps=1e-3))).blocks[0].delta_mlp
    x = torch.randn(2, 5, 32, requires_grad=True)
    fused = mlp(x)
    assert "_DeltaMLPFunctionBackward" in _graph_names(fused)
    weights = torch.randn(fused.shape)
    grads_fused = torch.autograd.grad((fused * weights).sum(), (x, *mlp.parameters()))
    mlp.hook_post.add_hook(lambda t, hook: None)  # a hook on an intermediate: plain autograd
    plain = mlp(x)
    assert "_DeltaMLPFunctionBackward" not in _graph_names(plain)
    grads_plain = torch.autograd.grad((plain * weights).sum(), (x, *mlp.parameters()))
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_fused, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    mlp.hook_post.remove_hooks()
    with torch.no_grad():
        assert mlp(x).grad_fn is None


def test_cached_forward_equals_full_forward(any_model):
    tokens = any_model.to_tokens("The river Thames, 泰晤士河, flows east.")
    with torch.no_grad():
        full = any_model(tokens)
        cache = IncrementKVCache(any_model.cfg.n_layers)
        part1 = any_model(tokens[:, :10], past_kv_cache=cache)
        part2 = any_model(tokens[:, 10:15], past_kv_cache=cache)
        steps = [any_model(tokens[:, i : i + 1], past_kv_cache=cache) for i in range(15, tokens.shape[1])]
    stitched = torch.cat([part1, part2, *steps], dim=1)
    torch.testing.assert_close(stitched, full, atol=2e-5, rtol=1e-4)


def test_generate_with_and_without_cache_agree(any_model):
    with torch.no_grad():
        a = any_model.generate("New York", max_new_tokens=20, temperature=0, use_past_kv_cache=True, stop_at_separator=False)
        b = any_model.generate("New York", max_new_tokens=20, temperature=0, use_past_kv_cache=False, stop_at_separator=False)
        t = any_model.generate(any_model.to_tokens("New York"), max_new_tokens=5, temperature=1.0, seed=3)
    assert isinstance(a, str) and a == b
    assert t.shape[0] == 1 and 10 <= t.shape[1] <= 14


def test_loss_matches_cross_entropy():
    model = HookedIncrementTransformer(small_config("shared")).eval()
    tokens = model.to_tokens(["some text here", "other words!!!"])
    with torch.no_grad():
        logits, loss = model(tokens, return_type="both")
        per_token = model(tokens, return_type="loss", loss_per_token=True)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 257), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert per_token.shape == (2, tokens.shape[1] - 1)
    # an untrained model is close to uniform over 257 bytes
    assert abs(loss.item() - torch.log(torch.tensor(257.0)).item()) < 0.1


def test_bf16_autocast_keeps_positions_float32():
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer", n_ctx=2048)).eval())
    tokens = torch.randint(0, 256, (1, 1500))
    with torch.no_grad():
        _, fp32 = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_position"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, bf = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_position"))
    pos = bf["blocks.0.hook_position"]
    assert pos.dtype == torch.float32
    # Layer 0 δ depends only on the embedding: bf16 matmuls perturb δ slightly, but positions
    # around 1500 must not be rounded to bf16's spacing of 8.
    assert (pos[0, 1:] - pos[0, :-1]).min() > 0
    assert (pos - fp32["blocks.0.hook_position"]).abs().max() < 5.0


def test_training_under_autocast_takes_plain_autograd_and_matches_float32():
    """bf16 autocast (how training runs on a GPU) keeps the fused training nodes out: autocast
    casts inside plain ops, which a hand-written backward would not see. The gradients still
    match the float32 ones (fused nodes) to bf16 precision."""
    from lens_positions.components import use_fused_nodes

    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")))
    tokens = torch.randint(0, 257, (2, 24), generator=torch.Generator().manual_seed(2))
    grads = []
    for autocast in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            assert use_fused_nodes(model.W_E) == (not autocast)
            loss = model(tokens, return_type="loss")
        loss.backward()
        grads.append({n: p.grad.float().clone() for n, p in model.named_parameters()})
    for name, fp32 in grads[0].items():
        scale = fp32.abs().max().item() + 1e-8
        assert (grads[1][name] - fp32).abs().max().item() <= 0.1 * scale, name


@pytest.mark.parametrize("per_head", [False, True])
def test_hook_shapes(per_head):
    model = HookedIncrementTransformer(small_config("per_layer", per_head)).eval()
    tokens = model.to_tokens(["abc", "defgh"])
    _, cache = model.run_with_cache(tokens)
    B, P, H = 2, 6, 4
    tail = (H,) if per_head else ()
    assert cache["blocks.2.hook_delta"].shape == (B, P, *tail)
    assert cache["blocks.2.hook_position"].shape == (B, P, *tail)
    assert cache["blocks.2.delta_mlp.hook_raw"].shape == (B, P, H if per_head else 1)
    assert cache["blocks.2.delta_mlp.hook_pre"].shape == (B, P, model.cfg.d_delta)
    assert cache["blocks.0.attn.hook_rot_q"].shape == (B, P, H, 8)
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (B, H, P, P)
    assert cache["blocks.0.mlp.hook_pre_linear"].shape == (B, P, 64)
    assert cache["ln_final.hook_scale"].shape == (B, P, 1)
    assert cache["hook_embed"].shape == (B, P, 32)


def test_bad_inputs_get_clear_errors():
    model = HookedIncrementTransformer(small_config("shared", n_ctx=16)).eval()
    with pytest.raises(ValueError, match="empty text"):
        model.to_tokens("")
    with pytest.raises(ValueError, match="longer than the context|context is 16"):
        model.to_tokens("x" * 40)
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 257\)"):
        model(torch.tensor([[1, 300]]))
    # the accelerator form queues the check on the device (no host read-back); on CPU tensors
    # the queued assertion fires at once, so both forms can be seen here
    model._check_token_range(torch.tensor([[0, 256]]), on_host=False)
    for bad in ([[1, 257]], [[-1, 3]]):
        with pytest.raises(RuntimeError, match=r"token ids must lie in \[0, 257\)"):
            model._check_token_range(torch.tensor(bad), on_host=False)
    with pytest.raises(TypeError, match="integer ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="no positions"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown increments variant 'per_token'"):
        IncrementConfig(increments="per_token")
    with pytest.raises(ValueError, match="per_head needs learned increments"):
        IncrementConfig(increments="none", per_head=True)
    with pytest.raises(ValueError, match="exceeds the context"):
        model.generate("abcdefgh", max_new_tokens=20)
    # the explicit chunking helper cuts long text between characters
    chunks = model.to_token_chunks("人工智能" * 10)
    assert all(c.shape[1] <= 16 for c in chunks)
    assert "".join(model.to_string(c[0, 1:]) for c in chunks) == "人工智能" * 10
