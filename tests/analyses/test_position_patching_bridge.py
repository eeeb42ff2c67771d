"""Position patching on pretrained rotary bridges (token level), on a tiny random Llama."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analyses import _tokens
from analyses import position_patching as bpe
from analyses._interventions import _integer_positions
from analyses.position_patching import (
    INTERVENTIONS,
    Params,
    entity_patching,
    integer_start,
    position_interventions,
    run,
)
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

TEXT = "the quick brown fox jumps over the lazy dog when the cat sat on the mat\n" * 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def base(folder):
    return load_rotary_model(folder)


@pytest.fixture(scope="module")
def per_layer(folder):
    model = load_rotary_model(folder, increments="per_layer")
    with torch.no_grad():  # δ varies with the tokens (a fresh graft has δ = 1 exactly)
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    return model


def windows(model, n=12, k=4):
    return _tokens.token_windows(model, [TEXT], n, k)


def test_every_intervention_is_an_exact_no_op_on_the_base_model(base):
    result = position_interventions(base, windows(base), progress=False)
    assert set(result.table.intervention) == set(INTERVENTIONS)
    assert (result.per_window.d_loss == 0).all() and (result.per_window.d_logit == 0).all()
    assert (result.table.mean_abs_dpos == 0).all()
    assert bpe.base_model_check(result) == 0.0


def test_the_base_model_check_fails_loudly():
    bad = type("R", (), {"per_window": pd.DataFrame({"d_loss": [0.0, 1e-7], "d_logit": [0.0, 0.0]})})()
    with pytest.raises(RuntimeError, match="exact no-op"):
        bpe.base_model_check(bad)


def test_learned_positions_matter_on_a_per_layer_graft(per_layer):
    result = position_interventions(per_layer, windows(per_layer), ["integer", "shuffled_delta"], progress=False)
    assert (result.table.mean_abs_dpos > 0).all() and (result.table.d_loss != 0).all()
    # the integer intervention puts in exactly the positions δ = 1 gives on a bridge: 0, 1, ..., n-1
    tokens = torch.tensor(windows(per_layer))
    with torch.no_grad(), per_layer.hooks(fwd_hooks=[("blocks.1.hook_delta", lambda d, hook: torch.ones_like(d))]):
        _, cache = per_layer.run_with_cache(tokens, names_filter=["blocks.1.hook_position"])
    ones = cache["blocks.1.hook_position"]
    assert integer_start(per_layer) == 0.0
    assert torch.equal(_integer_positions(torch.zeros_like(ones), None, first=integer_start(per_layer)), ones)


def test_token_entity_prompts_are_reversed_twins(base):
    prompts, dropped = bpe.entity_prompts(base, [("New", "York"), ("Cold", "War")], ["near {a} {b}", "{a} {b}"], ".")
    near = [p for p in prompts if p.carrier == "near {a} {b}"]
    assert len(near) == 2  # with a space before both words, the reversed entity has as many tokens
    p = near[0]
    tok = base.tokenizer
    assert p.clean[0] == p.corrupt[0] == _tokens.bos_id(base)
    assert p.clean[1:] == _tokens.encode(base, "near New York.")
    assert p.corrupt[1:] == _tokens.encode(base, "near York New.")
    assert tok.decode(p.clean[p.entity_start : p.entity_end]) == " New York"
    assert tok.decode(p.clean[p.entity_end :]) == "."
    assert p.clean[: p.entity_start] == p.corrupt[: p.entity_start] and len(p.clean) == len(p.corrupt)
    for q in prompts:
        assert len(q.clean) == len(q.corrupt) and q.clean[q.entity_end :] == q.corrupt[q.entity_end :]
    assert len(prompts) + len(dropped) == 4
    with pytest.raises(ValueError, match="must contain"):
        bpe.entity_prompts(base, [("New", "York")], ["{a} and {b}"])


def test_entity_patching_at_token_level(per_layer):
    prompts, _ = bpe.entity_prompts(per_layer, [("New", "York"), ("Cold", "War"), ("Hong", "Kong")],
                                    ["near {a} {b}"], ".")
    result = entity_patching(per_layer, prompts, progress=False)
    df = result.per_prompt
    assert len(df) == len(prompts) * 2 * 2  # prompts x activations x layers
    assert (df.prefix_max_abs == 0).all()  # the token before the entity is the same in both runs
    delta = df[df.activation == "delta"].whole_layer.to_numpy()
    position = df[df.activation == "position"].whole_layer.to_numpy()
    torch.testing.assert_close(torch.tensor(delta), torch.tensor(position), atol=1e-4, rtol=1e-4)
    assert (df.whole_layer != 0).any()
    with pytest.raises(ValueError, match="layers must be in"):
        entity_patching(per_layer, prompts, progress=False, layers=[2])
    with pytest.raises(ValueError, match="layers must be in"):
        position_interventions(per_layer, windows(per_layer), ["integer"], layers=[-1], progress=False)
    one = entity_patching(per_layer, prompts, progress=False, layers=[1])
    torch.testing.assert_close(torch.tensor(one.per_prompt.whole_layer.to_numpy()),
                               torch.tensor(df[df.layer == 1].whole_layer.to_numpy()))


def test_run_dispatches_to_tokens_and_the_command_checks_the_base(per_layer, folder, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    params = Params(text_file=[str(text)], window_tokens=10, max_windows=3, max_entities=3, carriers=2,
                    layers=[1], progress=False)
    result = run(per_layer, params)
    assert "nats/token" in result.markdown and "Entity patching" in result.markdown
    assert set(result.tables["interventions"].layer) == {"1", "all"}
    assert result.facts["window_tokens"] == 10 and not result.facts["base_model_check"]
    from analyses.position_patching import main

    main(["--model", str(folder), "--out", str(tmp_path / "out"), "--text-file", str(text), "--window-tokens", "10",
          "--max-windows", "2", "--max-entities", "2", "--carriers", "1", "--no-per-position", "--no-progress"])
    out = capsys.readouterr().out
    assert "exact no-op (checked: max |Δ| = 0)" in out
    for name in ("interventions.csv", "interventions.png", "entity_patching.csv", "entity_patching.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_entity_patching_is_a_no_op_on_the_base_model(base):
    prompts, _ = bpe.entity_prompts(base, [("New", "York"), ("Cold", "War")], ["near {a} {b}"], ".")
    df = entity_patching(base, prompts, progress=False).per_prompt
    assert len(df) and (df.whole_layer == 0).all() and (df.entity_positions == 0).all()
    assert (df.control.dropna() == 0).all() and (df.clean_metric != df.corrupt_metric).any()
