"""The training config nests the model's `IncrementConfig`: layout, old runs, CLI flags, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lens_positions import IncrementConfig
from training.runs import checkpointing
from training.train.command import EXIT_USAGE, build_parser, main
from training.train.configs import TrainConfig, named_config
from training.train.options import overrides_from_args, resolve_config
from training.train.trainer import (
    NonFiniteLossError,
    ResumeError,
    build_model,
    config_differences,
    train,
)

from .test_train import quiet, tiny, token_dir  # noqa: F401  (token_dir is a fixture)

#: What `TrainConfig.to_dict` wrote before the model config was nested (the tiny preset).
FLAT_TINY = {
    "d_model": 32, "n_heads": 2, "n_layers": 2, "d_mlp": 64, "n_ctx": 32, "increments": "per_layer",
    "per_head": True, "max_delta": 10.0, "frozen_from": None, "paired_init": True, "steps": 200,
    "batch_size": 8, "grad_accum": 1, "lr": 3e-3, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999,
    "adam_eps": 1e-8, "warmup_steps": 20, "grad_clip": 1.0, "seed": 0, "data_seed": None,
    "eval_every": 50, "eval_windows": 16, "final_eval_windows": None, "eval_batch_size": 16,
    "log_every": 10, "checkpoint_every": 50, "device": "auto", "precision": "auto",
    "compile": False, "workers": 0, "threads": None,
}


def to_flat(data: dict) -> dict:
    """A nested config dict back in the old flat layout (fields added since left out)."""
    data = dict(data)
    model = data.pop("model")
    keep = ("d_model", "n_heads", "n_layers", "d_mlp", "n_ctx", "increments", "per_head", "max_delta")
    return {**{k: model[k] for k in keep}, **data}


def test_nested_layout_round_trips_through_json():
    cfg = named_config("cpu").replace(increments="per_layer", signed=True, learned_fraction=0.5, seed=3)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert set(data["model"]) >= {"d_model", "rope_theta", "d_delta", "eps", "signed", "learned_fraction"}
    assert "seed" not in data["model"] and "frozen_deltas" not in data["model"]  # set by the run
    back = TrainConfig.from_dict(data)
    assert back == cfg
    model_cfg = back.model_config()
    assert (model_cfg.seed, model_cfg.signed, model_cfg.learned_fraction, model_cfg.d_model) == (3, True, 0.5, 128)
    assert model_cfg is not back.model  # each model gets its own copy (it records its device)


def test_old_flat_configs_still_load_and_match():
    old = TrainConfig.from_dict(FLAT_TINY)
    new = named_config("tiny").replace(increments="per_layer", per_head=True)
    assert old == new and config_differences(old, new) == []
    with pytest.raises(ValueError, match="both at the top level and under 'model'"):
        TrainConfig.from_dict({**FLAT_TINY, "model": {"d_model": 64}})
    with pytest.raises(ValueError, match="unknown training config keys: colour"):
        TrainConfig.from_dict({**FLAT_TINY, "colour": "red"})


def test_every_model_field_can_be_set_for_training():
    cfg = named_config("tiny").replace(rope_theta=500.0, d_delta=4, eps=1e-6, increments="shared")
    model = build_model(cfg)
    assert (model.cfg.rope_theta, model.cfg.d_delta, model.cfg.eps) == (500.0, 4, 1e-6)
    assert model.delta_mlp.W_in.shape == (32, 4)
    assert cfg.replace(lr=1e-4).model == cfg.model  # training fields leave the model alone
    with pytest.raises(ValueError, match="unknown config fields: d_modle"):
        cfg.replace(d_modle=3)
    with pytest.raises(ValueError, match="frozen_deltas follows from frozen_from"):
        cfg.replace(frozen_deltas=True)
    with pytest.raises(ValueError, match="frozen_deltas replaces the shared increment MLP"):
        cfg.replace(increments="per_layer", frozen_from="somewhere")
    with pytest.raises(TypeError, match="model must be an IncrementConfig"):
        TrainConfig(model={"d_model": 3})
    assert isinstance(TrainConfig().model, IncrementConfig)


def test_paired_init_of_the_variants_shares_the_plain_weights():
    plain = build_model(named_config("tiny"))
    for extra in (dict(signed=True), dict(learned_fraction=0.5)):
        variant = build_model(named_config("tiny").replace(increments="per_layer", **extra))
        for name, value in plain.state_dict().items():
            assert variant.state_dict()[name].equal(value), name


def test_cli_flags_reach_the_model(tmp_path: Path):
    args = build_parser().parse_args([
        "--config", "tiny", "--data", "x", "--out", str(tmp_path), "--increments", "per_layer",
        "--signed", "--learned-fraction", "0.25", "--rope-theta", "1000", "--d-delta", "16", "--eps", "1e-6",
    ])
    cfg = resolve_config(args.config, overrides_from_args(args), args.out, resume=False)
    m = cfg.model
    assert (m.signed, m.learned_fraction, m.rope_theta, m.d_delta, m.eps) == (True, 0.25, 1000.0, 16, 1e-6)
    assert cfg.variant_name == "per-layer-signed-learned-0.25"


def test_cli_refuses_bad_variant_settings(tmp_path: Path, capsys):
    base = ["--config", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--threads", "1"]
    assert main(base + ["--increments", "per_layer", "--learned-fraction", "0.3"]) == EXIT_USAGE
    assert "not a whole number of rotary pairs: each head has 8 pairs" in capsys.readouterr().err
    assert main(base + ["--learned-fraction", "1.5", "--increments", "shared"]) == EXIT_USAGE
    assert "learned_fraction must be a number in [0, 1]" in capsys.readouterr().err
    assert main(base + ["--signed"]) == EXIT_USAGE  # increments default to none
    assert "signed needs learned increments" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_keeps_its_guards_with_the_nested_config(token_dir: Path, tmp_path: Path):  # noqa: F811
    cfg = tiny(steps=10, checkpoint_every=5, increments="per_layer", signed=True, learned_fraction=0.5)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError):  # stops the run after the step-5 checkpoint
        train(cfg, token_dir, out, quiet(nan_at_step=7))
    with pytest.raises(ResumeError, match=r"model\.learned_fraction: checkpoint 0\.5 vs requested 1\.0"):
        train(cfg.replace(learned_fraction=1.0), token_dir, out, quiet(resume=True))
    # a checkpoint written before the nesting (flat config) resumes as the same run
    flat_cfg = tiny(steps=10, checkpoint_every=5, increments="per_layer")
    flat_run = tmp_path / "flat"
    with pytest.raises(NonFiniteLossError):
        train(flat_cfg, token_dir, flat_run, quiet(nan_at_step=7))
    path = flat_run / checkpointing.CHECKPOINT_NAME
    ckpt = checkpointing.load_checkpoint(path)
    assert ckpt["step"] == 5
    ckpt["config"] = to_flat(ckpt["config"])
    checkpointing.save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(ResumeError, match=r"model\.max_delta: checkpoint 10\.0 vs requested 5\.0"):
        train(flat_cfg.replace(max_delta=5.0), token_dir, flat_run, quiet(resume=True))
    done = train(flat_cfg, token_dir, flat_run, quiet(resume=True))
    assert done.steps == 10
    card = json.loads((flat_run / "final" / "card.json").read_text())
    assert card["train_config"]["model"]["increments"] == "per_layer"
