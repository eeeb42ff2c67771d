"""``torch.compile`` sees each variant as one graph, and a compiled training step matches eager.

The GPU mode of the benchmarks (``--compile``) and the trainer's ``--compile`` rely on this: a
graph break in the hot path (a host read-back, a Python branch on a tensor value) would split the
model into pieces and cost a device synchronisation per forward pass.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo

from lens_positions import HookedIncrementTransformer, IncrementConfig

VARIANTS = [
    dict(increments="none"),
    dict(increments="shared"),
    dict(increments="shared", per_head=True),
    dict(increments="per_layer"),
    dict(increments="per_layer", per_head=True),
    dict(increments="per_layer", signed=True),
    dict(increments="per_layer", per_head=True, learned_fraction=0.5),
    dict(increments="shared", signed=True, learned_fraction=0.5),
]


def _model(**kwargs) -> HookedIncrementTransformer:
    cfg = IncrementConfig(d_model=32, n_heads=4, n_layers=2, d_mlp=64, n_ctx=32, seed=0, **kwargs)
    return HookedIncrementTransformer(cfg)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: "-".join(f"{n}={v}" for n, v in k.items()))
def test_every_variant_compiles_without_graph_breaks(kwargs):
    dynamo.reset()
    model = _model(**kwargs)
    tokens = torch.randint(0, 257, (2, 12), generator=torch.Generator().manual_seed(0))
    explained = dynamo.explain(model)(tokens, return_type="loss")
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("extra", [{}, dict(signed=True, learned_fraction=0.5)], ids=["plain", "signed-two-axis"])
def test_compiled_training_step_matches_eager(extra):
    """AOT autograd traces the custom rotary backward; loss and gradients agree with eager."""
    dynamo.reset()
    eager = _model(increments="per_layer", per_head=True, **extra)
    compiled_model = _model(increments="per_layer", per_head=True, **extra)
    compiled_model.load_state_dict(eager.state_dict())
    # give δ some spread so the rotary gradient is not the δ = 1 special case
    with torch.no_grad():
        for block in list(eager.blocks) + list(compiled_model.blocks):
            torch.nn.init.normal_(
                block.delta_mlp.W_out, std=0.5, generator=torch.Generator().manual_seed(1)
            )
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)
    tokens = torch.randint(0, 257, (2, 12), generator=torch.Generator().manual_seed(0))
    loss_e = eager(tokens, return_type="loss")
    loss_c = compiled(tokens, return_type="loss")
    loss_e.backward()
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss_e)
    grads_e = dict((n, p.grad) for n, p in eager.named_parameters())
    for name, p in compiled_model.named_parameters():
        torch.testing.assert_close(p.grad, grads_e[name], rtol=1e-4, atol=1e-6, msg=name)
