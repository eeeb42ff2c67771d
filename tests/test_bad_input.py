"""Bad input across the commands: one clear error naming the problem, a non-zero exit, checked
before any slow work, and nothing already written touched.

Each case runs the command's ``main`` in this process (no model is loaded before the check fails,
so the cases are quick); a case that needs a model uses a tiny one saved to disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lens_positions import HookedIncrementTransformer
from lens_positions.atomic import output_problem
from lens_positions.summary import COMPRESSED_BELOW, _summarize_layer
from lens_positions.tokenizer import SEPARATOR_STR, CharSpan

from .conftest import small_config

KEPT = "finished work\n"


@pytest.fixture
def existing_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text(KEPT)
    return path


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bad_input") / "model"
    HookedIncrementTransformer(small_config("per_layer")).save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------- output checks
def test_output_problem_names_files_folders_and_unwritable_places(tmp_path: Path, existing_file):
    assert output_problem(tmp_path / "new" / "deeper") is None
    assert output_problem(tmp_path / "new.html", kind="file") is None
    assert output_problem(existing_file) == "is a file, not a folder"
    assert output_problem(tmp_path, kind="file") == "is a folder, not a file"
    assert "is a file" in output_problem(existing_file / "below")
    assert "cannot be written" in output_problem("/proc/lens_positions_x.html", kind="file")


def _analysis_out_cases(existing: Path) -> list[list[str]]:
    return [
        ["--out", str(existing)],
        ["--out", str(existing / "below")],
    ]


def _analyses() -> list[str]:
    import analyses

    return list(analyses.MODULES)


@pytest.mark.parametrize("module", _analyses())
def test_an_analysis_refuses_an_output_that_is_a_file_before_loading_a_model(module, existing_file, capsys):
    import importlib

    from analyses._common import command_main

    # a model that cannot load proves the order (the run-folder analyses take no --model)
    needs = getattr(importlib.import_module(f"analyses.{module}"), "NEEDS_MODEL", True)
    model = ["--model", "no-such-model"] if needs else []
    for args in _analysis_out_cases(existing_file):
        with pytest.raises(SystemExit) as e:
            command_main(module, [*model, *args])
        assert e.value.code == 2
        assert "is a file" in capsys.readouterr().err  # the --out error, not the unknown model
    assert existing_file.read_text() == KEPT


@pytest.mark.parametrize("args, message", [
    (["--out", "{file}/x.html"], "is a file"),
    (["--out", "{dir}"], "is a folder, not a file"),
    (["--out", "/proc/lens_positions_x.html"], "cannot be written"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--window", "0"], "--window must be >= 1"),
])
def test_report_checks_its_options_before_the_model_loads(args, message, existing_file, tmp_path, capsys):
    from lens_positions.cli import main

    args = [a.format(file=existing_file, dir=tmp_path) for a in args]
    with pytest.raises(SystemExit) as e:
        main(["report", "some text", "--model", "no-such-model", *args])
    assert message in str(e.value.code)
    assert existing_file.read_text() == KEPT


def test_train_refuses_an_output_that_is_a_file(existing_file, tmp_path, capsys):
    from training.tokens.prepare import main as prepare
    from training.train.command import main

    text = tmp_path / "t.jsonl"
    text.write_text("\n".join(json.dumps({"text": f"document {i} " * 30}) for i in range(20)) + "\n")
    assert prepare(["--spec", f"local:{text}=1", "--out", str(tmp_path / "tok"), "--val-docs", "2",
                    "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["--config", "tiny", "--data", str(tmp_path / "tok"), "--out", str(existing_file)])
    assert rc != 0 and "is a file" in capsys.readouterr().err
    assert existing_file.read_text() == KEPT


# ----------------------------------------------------------------------------- input files
@pytest.mark.parametrize("content, message", [
    (b'{"text": "fine"}\n{not json\n', "not valid JSON"),
    (b'{"body": "no text field"}\n', 'expected an object with a "text" string'),
    (b'{"text": "caf\xe9"}\n', "not UTF-8 text"),
])
def test_a_bad_text_file_is_an_input_error_naming_the_line(content, message, tmp_path):
    from analyses._common import InputError, read_texts

    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_texts(path)


def test_a_bad_text_file_is_a_usage_error_of_the_analysis(tmp_path, tiny_model_dir, capsys):
    from analyses._common import command_main

    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(SystemExit) as e:
        command_main("byte_increments", ["--model", tiny_model_dir, "--text-file", str(path),
                                         "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "not UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_prepare_tokens_on_an_empty_file_leaves_no_folder(tmp_path, capsys):
    from training.tokens.prepare import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "tokens"
    assert main(["--spec", f"local:{empty}=1", "--out", str(out), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_graft_with_an_unknown_base_makes_no_folder(tmp_path):
    from training.graft.command import main as graft_main

    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x"}\n')
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="--base nope-model"):
        graft_main(["--base", "nope-model", "--data", str(data), "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit, match="--data .*no such file"):
        graft_main(["--data", str(tmp_path / "missing"), "--out", str(out)])
    assert not out.exists()


def test_chinese_files_without_a_gap_are_a_usage_error(tmp_path, tiny_model_dir, capsys):
    from analyses._common import command_main

    path = tmp_path / "zh.txt"
    path.write_text("no Chinese here, 只 one character at a time: 中 文\n")
    with pytest.raises(SystemExit) as e:
        command_main("word_boundaries", ["--model", tiny_model_dir, "--text-file", str(path), "--probe",
                                         "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "no scored gap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_graft_window_start_is_a_usage_error(tmp_path, capsys):
    from training.graft.command import main as graft_main

    with pytest.raises(SystemExit) as e:
        graft_main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--window-start", "eos"])
    assert e.value.code == 2 and "--window-start" in capsys.readouterr().err


# ----------------------------------------------------------------------------- layers
@pytest.mark.parametrize("module, flag", [
    ("learned_axis_attention", "--layers"),
    ("position_patching", "--layers"),
    ("delta_attribution", "--layers"),
])
def test_layers_out_of_range_are_a_usage_error(module, flag, tiny_model_dir, tmp_path, capsys):
    from analyses._common import command_main

    n_layers = small_config("per_layer").n_layers
    with pytest.raises(SystemExit) as e:
        command_main(module, ["--model", tiny_model_dir, flag, "0", str(n_layers + 96),
                              "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{n_layers + 96}: out of range" in err
    assert f"layers 0-{n_layers - 1}" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", _analyses())
def test_every_analysis_accepts_every_flag_its_help_lists(module):
    """Each switch the parser lists parses (the BPE word-index path once refused --no-progress)."""
    import importlib

    parser = importlib.import_module(f"analyses.{module}").build_parser()
    flags = [a.option_strings[-1] for a in parser._actions if a.option_strings and a.nargs == 0]
    args = parser.parse_args([f for f in flags if f not in ("-h", "--help")])
    assert getattr(args, "no_progress", True) is True
    if module == "word_index_probes":
        assert args.full is True


@pytest.mark.parametrize("module", _analyses())
def test_an_unknown_flag_is_a_usage_error(module, capsys):
    from analyses._common import command_main

    with pytest.raises(SystemExit) as e:
        command_main(module, ["--no-such-flag"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["/no/such/run", "x", "--data", "DATA"], "neither a checkpoint folder nor a shipped model"),
    (["MODEL", "x", "--data", "/no/such/tokens"], "no token folder"),
    (["MODEL", "x", "--data", "DATA", "--threads", "0"], "--threads 0"),
])
def test_ship_checks_its_input_before_writing(args, message, tiny_model_dir, tmp_path, capsys):
    from lens_positions.checkpoints import PRETRAINED_DIR
    from training.evaluation import ship

    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "val.bin").write_bytes(b"")
    (tmp_path / "tokens" / "meta.json").write_text("{}")
    argv = [a.replace("DATA", str(tmp_path / "tokens")).replace("MODEL", tiny_model_dir) for a in args]
    before = sorted(p.name for p in PRETRAINED_DIR.iterdir())
    with pytest.raises(SystemExit) as e:
        ship.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert sorted(p.name for p in PRETRAINED_DIR.iterdir()) == before  # nothing shipped


# ----------------------------------------------------------------------------- folders a command made
def test_a_training_run_folder_opens_as_its_final_model(tiny_model_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    model = HookedIncrementTransformer.from_pretrained(run)
    reference = HookedIncrementTransformer.from_pretrained(tiny_model_dir)
    x = torch.tensor([[256, 72, 105]])
    assert torch.equal(model(x), reference(x))


def test_an_adapter_folder_and_a_graft_run_folder_are_rotary_models(tmp_path):
    from lens_positions import rotary_adapter
    from lens_positions.rotary_models import adapter_folder, is_rotary_model_name

    shipped = rotary_adapter.shipped_adapters()[0]
    run = tmp_path / "graft-run"
    (run / "adapter").mkdir(parents=True)
    for f in shipped.iterdir():
        (run / "adapter" / f.name).write_bytes(f.read_bytes())
    assert adapter_folder(run) == run / "adapter"
    assert adapter_folder(run / "adapter") == run / "adapter"
    assert adapter_folder(shipped.name) == shipped
    assert is_rotary_model_name(run) and is_rotary_model_name(str(run / "adapter"))
    assert adapter_folder(tmp_path) is None


# ----------------------------------------------------------------------------- the report's summary
def test_a_compressed_run_never_straddles_a_chunk_separator():
    """Units 1-2 end chunk 0, unit 3 is chunk 1's separator (its increment is large, ×2.3),
    units 4-5 start chunk 1: two runs of two, not one run of five across the separator."""
    texts = [SEPARATOR_STR, "a", "b", SEPARATOR_STR, "c", "d", "e"]
    spans = [CharSpan(t, i, i + 1) for i, t in enumerate(texts)]
    low = COMPRESSED_BELOW / 2
    rel = torch.tensor([1.0, low, low, 2.3, low, low, 1.0])
    s = _summarize_layer(0, "L0", torch.ones(5), rel, spans, [1, 2, 4, 5, 6])
    assert sorted((a, b) for a, b, _ in s.compressed) == [(1, 3), (4, 6)]
    assert all(abs(m - low) < 1e-6 for _, _, m in s.compressed)


# ----------------------------------------------------------------------------- bridge input
@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    from lens_positions.rotary_models import load_rotary_model, save_tiny_llama

    folder = save_tiny_llama(tmp_path_factory.mktemp("bridge") / "m")
    return load_rotary_model(str(folder), increments="per_layer")


@pytest.mark.parametrize("make, error, message", [
    (lambda v: torch.tensor([[1, v + 5]]), ValueError, "out of range"),
    (lambda v: torch.tensor([[1, -3]]), ValueError, "token id -3 is out of range"),
    (lambda v: torch.tensor([[1.0, 2.0]]), TypeError, "integer ids"),
    (lambda v: torch.ones(1, 2, 3, dtype=torch.long), ValueError, r"\[batch, pos\]"),
    (lambda v: torch.zeros(1, 0, dtype=torch.long), ValueError, "empty input"),
], ids=["too-large", "negative", "float", "3-D", "empty"])
def test_a_bridge_checks_its_tokens_like_the_byte_model(bridge, make, error, message):
    bad = make(bridge.cfg.d_vocab)
    for call in (bridge, bridge.run_with_cache, lambda t: bridge.run_with_hooks(t, fwd_hooks=[])):
        with pytest.raises(error, match=message):
            call(bad)
    assert bridge(torch.tensor([[1, 2, 3]])).shape[:2] == (1, 3)


def test_token_increments_refuses_a_byte_model_by_name(tiny_model_dir, tmp_path, capsys):
    from analyses import token_increments

    with pytest.raises(SystemExit) as e:
        token_increments.main(["--model", str(tiny_model_dir), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "is a byte model" in err and "analyses.byte_increments" in err
    assert not (tmp_path / "out").exists()
