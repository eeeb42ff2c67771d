"""Position interventions and entity patching: exact no-ops where the answer is known."""

from __future__ import annotations

import pytest
import torch

from analyses._common import SAMPLE_TEXTS, byte_windows
from analyses._entity_patching import _byte_prompts
from analyses._interventions import _mean_delta, _permuted_delta
from analyses.position_patching import (
    INTERVENTIONS,
    entity_patching,
    intervention_hooks,
    position_interventions,
)
from lens_positions import HookedIncrementTransformer

from ..conftest import perturb_deltas, small_config

WINDOWS = byte_windows(SAMPLE_TEXTS[:4], 40, max_windows=4, per_doc=1)


def ones_everywhere(n_layers: int):
    return [(f"blocks.{layer}.hook_delta", lambda d, hook: torch.ones_like(d)) for layer in range(n_layers)]


def test_delta_replacements_keep_what_they_promise():
    d = torch.rand(3, 11, 4) + 0.5
    perm = _permuted_delta(d, None, seed=1)
    torch.testing.assert_close(perm.sort(1).values, d.sort(1).values)  # same values per row/head
    assert not torch.equal(perm, d)
    mean = _mean_delta(d, None)
    torch.testing.assert_close(mean.mean(1), d.mean(1))
    assert torch.equal(mean, mean[:, :1].expand_as(mean))
    with pytest.raises(ValueError, match="unknown intervention"):
        intervention_hooks("bogus", [0])


def test_integer_rope_is_untouched_by_every_intervention():
    model = HookedIncrementTransformer(small_config("none")).eval()
    result = position_interventions(model, WINDOWS, progress=False)
    assert set(result.table.intervention) == set(INTERVENTIONS)
    assert (result.table.d_loss == 0).all() and (result.table.d_logit == 0).all()
    assert (result.table.mean_abs_dpos == 0).all()


def test_integer_positions_are_a_no_op_when_delta_is_one():
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())
    hooked = position_interventions(model, WINDOWS, fwd_hooks=ones_everywhere(3), progress=False)
    assert (hooked.table.d_loss == 0).all(), hooked.table
    free = position_interventions(model, WINDOWS, ["integer", "shuffled_delta"], progress=False)
    assert (free.table.d_loss != 0).any() and (free.table.mean_abs_dpos > 0).all()
    assert len(free.table) == 2 * (3 + 1)  # each layer and all at once
    assert len(free.per_window) == len(free.table) * len(WINDOWS)


def test_interventions_run_on_every_variant(any_model):
    result = position_interventions(any_model, WINDOWS[:2], ["mean_delta", "other_prompt"], layers=[0], progress=False)
    assert list(result.table.layer) == ["0", "all", "0", "all"]
    assert result.table.d_loss.notna().all()


def test_windows_must_share_a_length():
    model = HookedIncrementTransformer(small_config("none")).eval()
    with pytest.raises(ValueError, match="same length"):
        position_interventions(model, [[256, 97], [256, 97, 98]], progress=False)


PROMPTS = _byte_prompts([("New", "York"), ("Cold", "War"), ("Hong", "Kong")], ["near {a} {b}"], continuation=". ")


def test_entity_prompts_are_reversed_twins():
    p = PROMPTS[0]
    assert bytes(p.clean[1:]).decode() == "near New York. " and bytes(p.corrupt[1:]).decode() == "near York New. "
    assert bytes(p.clean[p.entity_start : p.entity_end]).decode() == "New York"


def test_entity_patching_on_a_per_layer_model():
    model = perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval())
    result = entity_patching(model, PROMPTS, continuation=". ", progress=False)
    df = result.per_prompt
    assert len(df) == 3 * 2 * 3  # prompts x activations x layers
    assert (df.prefix_max_abs == 0).all()  # positions before the entity are the same in both runs
    # a whole-layer δ patch and a whole-layer position patch are the same intervention
    delta = df[df.activation == "delta"].whole_layer.to_numpy()
    position = df[df.activation == "position"].whole_layer.to_numpy()
    torch.testing.assert_close(torch.tensor(delta), torch.tensor(position), atol=1e-4, rtol=1e-4)
    # "Hong Kong" is alone in its length group: no unrelated source for the control
    assert df[df.entity == "Hong Kong"].control.isna().all()
    assert df[df.entity != "Hong Kong"].control.notna().all()
    assert (df.whole_layer != 0).any()
    summary = result.summary()
    assert len(summary) == 2 * 3 and summary.toward_clean.between(0, 1).all()
    assert set(result.per_position.offset) >= {0, 7}


def test_entity_patching_is_a_no_op_for_integer_rope():
    model = HookedIncrementTransformer(small_config("none")).eval()
    result = entity_patching(model, PROMPTS, continuation=". ", progress=False)
    df = result.per_prompt
    assert (df.whole_layer == 0).all() and (df.entity_positions == 0).all()
    assert (df.control.dropna() == 0).all()


def test_command_prints_tables_and_writes_figures(tmp_path, capsys):
    from analyses.position_patching import main

    model_dir = tmp_path / "model"
    perturb_deltas(HookedIncrementTransformer(small_config("per_layer")).eval()).save_pretrained(model_dir)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(SAMPLE_TEXTS[:4]))
    main(["--model", str(model_dir), "--out", str(tmp_path / "out"), "--text-file", str(text), "--window-bytes", "40",
          "--max-windows", "3", "--max-entities", "3", "--carriers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert "| intervention   | layer |" in out and "Entity patching" in out and "control_unrelated" in out
    for name in ("interventions.csv", "interventions.png", "entity_patching.csv", "entity_patching.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
