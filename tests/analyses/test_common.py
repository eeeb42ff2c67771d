"""Shared helpers: windows, text files, batched runs, Markdown tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analyses._common import (
    byte_windows,
    char_windows,
    head_axis,
    head_mean,
    in_held_out,
    markdown_table,
    pad_batch,
    read_texts,
    run_batches,
    window_limit,
)
from analyses._wordlist import WORDS
from analyses.byte_increments import byte_increment_table
from analyses.entities import entity_analysis
from analyses.head_rates import head_rates
from analyses.word_boundaries import auc_table, collect_chinese_gaps
from lens_positions import SEPARATOR_ID
from lens_positions.plots import spaced_text_data

from ..conftest import VARIANT_IDS, VARIANTS
from .conftest import EN_TEXT, ZH_TEXT, make_model


@pytest.mark.parametrize("limit", [5, 9, 16, 40])
def test_char_windows_are_character_aligned_and_cover_the_text(limit):
    text = ZH_TEXT + " mixed ASCII 😀 " + EN_TEXT
    windows = char_windows(text, limit, doc=3)
    assert "".join(text[w.start : w.end] for w in windows) == text
    for w in windows:
        assert w.doc == 3 and len(w.tokens) <= limit and w.tokens[0] == SEPARATOR_ID
        assert bytes(w.tokens[1:]) == text[w.start : w.end].encode("utf-8")
        for j, t in enumerate(w.char_tokens):  # each character's first byte
            ch = text[w.start + j].encode("utf-8")
            assert bytes(w.tokens[t : t + len(ch)]) == ch
    assert [w.start for w in windows[1:]] == [w.end for w in windows[:-1]]


def test_window_limit_defaults_to_context_capped_at_512():
    model = make_model(n_ctx=96)
    assert window_limit(model) == 96
    assert window_limit(model, 40) == 40
    with pytest.raises(ValueError, match="exceed the context"):
        window_limit(model, 200)


def test_read_texts_jsonl_source_filter_and_plain_text(tmp_path):
    jl = tmp_path / "a.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"id": 1, "text": "中文", "source": "zh"},
                {"id": 2, "text": "", "source": "zh"},
                {"id": 3, "text": "English", "source": "en"},
            ]
        )
        + "\n\n",
        encoding="utf-8",
    )
    txt = tmp_path / "b.txt"
    txt.write_text("plain\ntext", encoding="utf-8")
    assert read_texts([jl, txt]) == ["中文", "English", "plain\ntext"]
    assert read_texts(jl, source="zh") == ["中文"]
    assert read_texts([jl, txt], max_docs=1) == ["中文"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_texts(bad)
    with pytest.raises(FileNotFoundError):
        read_texts(tmp_path / "missing.txt")


def test_run_batches_padding_does_not_change_activations():
    model = make_model("per_layer", per_head=True)
    seqs = [[SEPARATOR_ID, *b"short"], [SEPARATOR_ID, *b"a longer text here"], [SEPARATOR_ID, 65]]
    names = ["blocks.2.hook_delta", "blocks.1.hook_position"]
    seen = set()
    for idx, lengths, captured in run_batches(model, seqs, names, batch_size=3, progress=False):
        for row, i in enumerate(idx):
            seen.add(i)
            n = int(lengths[row])
            assert n == len(seqs[i])
            _, cache = model.run_with_cache(torch.tensor([seqs[i]]))
            for name in names:
                torch.testing.assert_close(
                    captured[name][row, :n], cache[name][0].float(), rtol=1e-5, atol=1e-5
                )
    assert seen == {0, 1, 2}


def test_markdown_table_formats_and_aligns():
    df = pd.DataFrame(
        {"name": ["a|b", "c"], "x": [1.23456, np.nan], "p": [1e-7, 0.5], "n": [3, 40]}
    )
    md = markdown_table(df, {"p": ".1e"}, default_format=".2f")
    lines = md.splitlines()
    assert lines[0].split("|")[1].strip() == "name"
    assert lines[1].startswith("|---") and lines[1].rstrip("|").endswith(
        ":"
    )  # numeric: right-aligned
    assert "a\\|b" in lines[2] and "1.23" in lines[2] and "1.0e-07" in lines[2]
    assert "—" in lines[3] and lines[3].rstrip("| ").endswith("40")
    assert len({len(line) for line in lines}) == 1  # columns padded to one width


@pytest.mark.parametrize(("increments", "per_head", "frozen"), VARIANTS, ids=VARIANT_IDS)
def test_every_analysis_accepts_every_variant(increments, per_head, frozen):
    model = make_model(increments, per_head, frozen)
    rows = (
        ["L0", "L1", "L2"]
        if increments == "per_layer"
        else ["shared" if increments == "shared" else "none"]
    )
    heads = {"mean", *map(str, range(model.cfg.n_heads))} if per_head else {"mean"}
    table = byte_increment_table(model, [EN_TEXT, ZH_TEXT], per_head=True, progress=False)
    assert set(table["layer"]) == set(rows) and set(table["head"]) == heads
    aucs = auc_table(collect_chinese_gaps(model, [ZH_TEXT], progress=False), n_boot=5)
    assert list(dict.fromkeys(aucs["layer"])) == rows and set(aucs["head"]) == heads
    ent = entity_analysis(
        model,
        {"e": [("New", "York"), ("Hong", "Kong"), ("Cold", "War")]},
        per_head=True,
        progress=False,
    )
    assert set(ent.summary["layer"]) == set(rows) and set(ent.summary["head"]) == heads
    rates = head_rates(model, [EN_TEXT], progress=False)
    assert len(rates.heads) == model.cfg.n_layers * model.cfg.n_heads
    assert spaced_text_data(model, ZH_TEXT[:20]).rows == rows


def test_byte_windows_have_one_length_and_start_with_the_separator():
    windows = byte_windows(["abcdefgh", "人工智能", "xy"], 4, max_windows=10, per_doc=2)
    assert windows == [
        [SEPARATOR_ID, *b"abcd"],
        [SEPARATOR_ID, *b"efgh"],
        [SEPARATOR_ID, *"人工".encode()[:4]],
        [SEPARATOR_ID, *"人工智能".encode()[4:8]],
    ]
    assert len(byte_windows(["abcdefgh"] * 5, 4, max_windows=3)) == 3


def test_read_texts_and_the_held_out_split(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [f"document number {i}" for i in range(40)]
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n\n")
    assert read_texts(path) == docs and read_texts(path, max_docs=3) == docs[:3]
    held = read_texts(path, held_out=0.5)
    assert held == [d for d in docs if in_held_out(d, 0.5)] and 0 < len(held) < 40
    assert read_texts(path, held_out=0.0) == [] and read_texts(path, held_out=1.0) == docs
    plain = tmp_path / "plain.txt"
    plain.write_text("one document")
    assert read_texts(plain) == ["one document"]


def test_small_tensor_helpers():
    tokens, lengths = pad_batch([[1, 2, 3], [4]])
    assert tokens.tolist() == [[1, 2, 3], [4, SEPARATOR_ID, SEPARATOR_ID]] and lengths.tolist() == [
        3,
        1,
    ]
    x = torch.rand(2, 5, 3)
    assert head_axis(x[..., 0]).shape == (2, 5, 1) and head_axis(x) is x
    # with the model's head count, unbatched rows work too: [pos] -> [pos, 1]; per-head as is
    row = x[0]
    assert head_axis(row[:, 0], 1).shape == (5, 1) and head_axis(row, 3) is row
    torch.testing.assert_close(head_mean(x), x.mean(-1))


def test_markdown_table_escapes_and_word_list():
    table = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "c": ["x|y", "z"]}))
    assert table.splitlines()[0] == "| a |     b | c    |" and "—" in table and "x\\|y" in table
    assert (
        len(WORDS) > 300
        and all(w.isalpha() and w.islower() for w in WORDS)
        and len(set(WORDS)) == len(WORDS)
    )


def test_every_analysis_has_the_one_shape_and_runs_without_arguments():
    """Params + build_parser + run + main in every module of `analyses.MODULES`; parsing no
    arguments gives the shipped default model (or, for a module with ``DEFAULT_MODEL_OVERRIDE``,
    that shipped rotary model) and texts that exist (the held-out sample)."""
    import dataclasses
    import importlib
    from pathlib import Path

    import analyses
    from analyses._common import DEFAULT_MODEL, default_text_files, params_from_args
    from lens_positions.checkpoints import list_models
    from lens_positions.rotary_models import rotary_model_names

    on_disk = {p.stem for p in Path(analyses.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert on_disk == set(analyses.MODULES)
    assert DEFAULT_MODEL in list_models()
    assert all(Path(f).is_file() for f in default_text_files())
    for name in analyses.MODULES:
        mod = importlib.import_module(f"analyses.{name}")
        assert dataclasses.is_dataclass(mod.Params) and callable(mod.run) and callable(mod.main)
        parser = mod.build_parser()
        assert parser.prog == f"python -m analyses.{name}"
        assert "REFERENCE" not in parser.format_help()
        args = parser.parse_args([])
        if getattr(mod, "NEEDS_MODEL", True):
            # a module made for pretrained rotary models names a shipped one of those instead
            override = getattr(mod, "DEFAULT_MODEL_OVERRIDE", None)
            assert override is None or override in rotary_model_names(), (name, override)
            assert args.model == (override or DEFAULT_MODEL), name
        # every field comes from an option, with the same default: run(model, Params()) is the
        # command without arguments
        fields = {f.name for f in dataclasses.fields(mod.Params)}
        assert fields <= set(vars(args)) | {"progress"}, fields - set(vars(args))
        assert params_from_args(mod.Params, args) == mod.Params(), name
        assert getattr(args, "text_file", None) in (None, [])  # None: the shipped sample


@pytest.mark.parametrize("bad", ["no-such-model", "corrupt"])
def test_a_model_that_cannot_be_opened_is_a_usage_error_naming_it(bad, tmp_path, capsys):
    """An unknown name or a corrupt checkpoint folder: the command exits with a usage error that
    names --model and the models it could have opened, not a traceback."""
    from analyses._common import invoke

    name = bad
    if bad == "corrupt":
        folder = tmp_path / "ckpt"
        folder.mkdir()
        (folder / "config.json").write_text("{not json")
        (folder / "model.safetensors").write_bytes(b"garbage")
        name = str(folder)
    with pytest.raises(SystemExit) as exit_info:
        invoke("entities", ["--model", name, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--model {name}" in err and "smollm2-135m-per-layer" in err
    assert not (tmp_path / "out").exists()
