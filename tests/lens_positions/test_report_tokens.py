"""`lens-positions report` on a pretrained rotary model: the same summary and page by token, on a
tiny random Llama saved to a folder (the real loading path of `load_rotary_model`)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from lens_positions.cli import main
from lens_positions.report import AttentionPacker, build_report, page_data, unpack_attention
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama
from lens_positions.summary import compute_increments, terminal_summary
from lens_positions.token_units import bos_id, encode, token_chunks, token_units
from lens_positions.tokenizer import SEPARATOR_STR

TEXT = "the quick brown fox jumps over the lazy dog. café 中文\nthe cat sat"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def learned(folder):
    """The per-layer graft off its δ = 1 start, so that δ differ by token and layer."""
    model = load_rotary_model(folder, increments="per_layer")
    torch.manual_seed(1)
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    return model


def _page_data(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_units_are_tokens_and_split_characters_stay_whole(learned):
    ids = encode(learned, TEXT)
    units = token_units(learned.tokenizer, ids, TEXT)
    assert "".join(u.text for u in units) == TEXT
    assert [t for u in units for t in range(u.start, u.end)] == list(range(len(ids)))
    # The tiny byte-level BPE never saw "é" or "中": their bytes are tokens of their own, and the
    # unit is the whole character (2 and 3 tokens), as a byte model's character spans its bytes.
    texts = [u.text for u in units]
    assert "中" in texts and "文" in texts
    assert [u.end - u.start for u in units if u.text in ("中", "文")] == [3, 3]
    single = [u for u in units if u.end - u.start == 1]
    assert len(single) > len(units) / 2
    assert all(u.text == learned.tokenizer.decode([ids[u.start]]) for u in single)


def test_positions_are_the_running_sum_of_the_hooked_deltas(learned):
    result = compute_increments(learned, TEXT)
    assert result.unit == "token" and result.n_chunks == 1
    tokens = learned.to_tokens(TEXT)  # the bridge's own tokenisation, BOS first
    assert result.tokens.tolist() == tokens[0].tolist()
    names = [f"blocks.{layer}.hook_delta" for layer in range(2)]
    _, cache = learned.run_with_cache(tokens, names_filter=names)
    for layer in range(2):
        delta = cache[names[layer]][0].float()
        assert float(delta.std()) > 0.01  # δ differ by token, so the check below can fail
        torch.testing.assert_close(result.deltas[layer], delta)
        # HF's convention: the BOS at δ_0 - 1, so δ = 1 gives 0, 1, 2, ...
        torch.testing.assert_close(result.positions[layer], torch.cumsum(delta, 0) - 1)
        # A one-token unit's relative increment is its δ over the layer's mean δ of the text.
        mean = float(delta[1:].mean())
        for i, s in enumerate(result.chars[1:], start=1):
            expected = float(delta[s.start : s.end].sum()) / ((s.end - s.start) * mean)
            assert float(result.relative[layer, i]) == pytest.approx(expected, rel=1e-5)
    assert [s.text for s in result.chars][0] == SEPARATOR_STR
    assert "".join(s.text for s in result.chars[1:]) == TEXT
    assert result.rows == [(0, "L0"), (1, "L1")] and result.learned
    summary = terminal_summary(result)
    assert "boundaries: tokens spaced further apart" in summary and "layer 1: mean δ" in summary


def test_init_gives_integer_positions_and_the_hf_models_loss(folder):
    """δ = 1 at init: positions 0..n-1; the per-token loss is HF's own on the same ids."""
    model = load_rotary_model(folder, increments="per_layer")
    result = compute_increments(model, TEXT)
    n = len(result.tokens)
    for layer in range(2):
        assert result.positions[layer].tolist() == [float(i) for i in range(n)]
    ids = result.tokens[None]
    with torch.no_grad():
        logits = model.original_model(ids).logits[0].float()
    nats = F.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")
    assert math.isnan(float(result.nats[0]))
    torch.testing.assert_close(result.nats[1:], nats, rtol=1e-4, atol=1e-4)
    assert result.bits_per_token == pytest.approx(float(nats.mean()) / math.log(2), rel=1e-4)
    assert result.bits_per_byte == pytest.approx(float(nats.sum()) / len(TEXT.encode()) / math.log(2), rel=1e-4)


def test_long_text_is_split_into_windows_after_a_bos(learned):
    text = (TEXT + " ") * 4
    with pytest.warns(UserWarning, match=r"longer than the window \(16 tokens\).*chunks.*after BOS"):
        result = compute_increments(learned, text, window=16)
    bos = bos_id(learned)
    starts = result.chunk_starts
    assert result.n_chunks == len(starts) > 4
    bounds = [*starts, len(result.tokens)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        assert result.tokens[a] == bos and 2 <= b - a <= 17
        for layer in range(2):  # positions restart at each chunk: BOS at δ - 1
            pos = result.positions[layer, a:b]
            torch.testing.assert_close(pos, torch.cumsum(result.deltas[layer, a:b], 0) - 1)
    text_ids = [t for k, t in enumerate(result.tokens.tolist()) if k not in set(starts)]
    assert text_ids == encode(learned, text)  # cut between units, nothing lost or repeated
    assert result.chunk_texts and "".join(result.chunk_texts) == text
    assert result.starts == {i for i, s in enumerate(result.chars) if s.text == SEPARATOR_STR}
    chunks, _ = token_chunks(learned, text, window=16)
    assert [len(c) for c in chunks] == [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


def test_empty_text_is_an_error(learned, folder):
    with pytest.raises(ValueError, match="empty text"):
        compute_increments(learned, "")
    with pytest.raises(SystemExit, match="empty text"):
        main(["report", "  ", "--model", str(folder)])


def test_page_of_a_bridge_shows_tokens(learned):
    packer = AttentionPacker()
    result = compute_increments(learned, TEXT, on_pattern=packer)
    page = build_report(learned, result, "tiny", attention=packer.blobs)
    assert "Per-token increments" in page and "tokens of the chunk, the BOS first" in page
    data = _page_data(page)
    assert data["unit"] == "token" and data["rows"] == ["L0", "L1"]
    assert data["chars"][1:] == [s.text for s in result.chars[1:]] and data["bytes"] == result.tokens.tolist()
    assert len(data["rowSets"]) == 1  # two rows: no subsets
    first = next(i for i, c in enumerate(data["chars"]) if c == " quick")
    assert data["glyphs"][str(first)] == "·quick"
    spaced = data["spaced"][0]
    assert len(spaced["x"]["r"]) == 2 and len(spaced["x"]["r"][0]) == len(result.chars) - 1
    n = len(result.tokens)
    back = unpack_attention(data["att"][0][1], learned.cfg.n_heads, n)
    assert back.shape == (learned.cfg.n_heads, n, n) and float(back[:, 0, 0].min()) > 0.99  # BOS sees itself


def test_many_layers_offer_row_subsets(tmp_path):
    model = load_rotary_model(save_tiny_llama(tmp_path / "deep", n_layers=12), increments="per_layer")
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
        model.blocks[7].delta_mlp.W_out.mul_(6)  # the layer whose δ vary most
    result = compute_increments(model, TEXT)
    sets = page_data(model, result, None)["rowSets"]
    assert [len(s["rows"]) for s in sets] == [8, 6, 12]
    assert 7 in sets[0]["rows"] and sets[0]["rows"] == sorted(sets[0]["rows"])
    spread = [s.std / s.mean_delta for s in result.layers]
    assert min(spread[r] for r in sets[0]["rows"]) >= max(spread[r] for r in range(12) if r not in sets[0]["rows"])
    assert sets[1]["rows"] == [0, 2, 4, 6, 8, 10] and sets[2]["rows"] == list(range(12))


def test_cli_report_on_a_model_folder(folder, tmp_path, capsys):
    """End to end: the base model (δ = 1), its integer positions and bits/token and bits/byte."""
    out = tmp_path / "r.html"
    assert main(["report", TEXT, "--model", str(folder), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    n_tokens = len(encode(load_rotary_model(folder), TEXT))
    assert f"{n_tokens} tokens ({len(TEXT)} characters, {len(TEXT.encode())} bytes)" in printed
    assert re.search(r"prediction: \d+\.\d\d bits/token \(\d+\.\d\d bits/byte\) on this text\n", printed)
    assert "pretrained rotary, no learned increments" in printed and "δ = 1 for every token" in printed
    data = _page_data(out.read_text(encoding="utf-8"))
    assert data["unit"] == "token" and data["rows"] == ["none"]
    # Each unit's position is that of its last token: the BOS at 0, the last token at n_tokens.
    assert data["pos"][0][0] == 0.0 and all(float(p).is_integer() for p in data["pos"][0])
    ends = [*data["cstart"][1:], n_tokens + 1]
    assert data["pos"][0] == [float(e - 1) for e in ends]
    assert "".join(data["chars"][1:]) == TEXT


def test_a_folder_that_is_not_a_rotary_model_gets_a_clear_error(tmp_path):
    folder = tmp_path / "gpt2ish"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(SystemExit, match=r"^error: .*gpt2ish"):
        main(["report", "hello", "--model", str(folder), "--out", ""])


def test_stdout_holds_only_the_summary(folder, capsys):
    main(["report", "the cat", "--model", str(folder), "--out", "", "--threads", "1"])
    assert capsys.readouterr().out.startswith(f"model {folder} (pretrained rotary")


class _PieceTokenizer:
    """A SentencePiece-like decoder: a token alone loses its leading space ("▁the" → "the"), so
    decoding tokens one by one does not give the text back, but decoding prefixes does."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join(self.pieces[i] for i in ids).replace("▁", " ").removeprefix(" ")


def test_units_fall_back_to_decoded_prefixes():
    tok = _PieceTokenizer(["▁the", "▁cat", "▁sat", "."])
    units = token_units(tok, [0, 1, 2, 3], "the cat sat.")
    assert [u.text for u in units] == ["the", " cat", " sat", "."]
    assert [(u.start, u.end) for u in units] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.warns(UserWarning, match="each token is shown alone"):
        alone = token_units(tok, [0, 1], "not this text")
    assert [u.text for u in alone] == ["the", "cat"]


def test_cli_window_splits_a_text(folder, capsys):
    main(["report", TEXT, "--model", str(folder), "--out", "", "--threads", "1", "--window", "8"])
    captured = capsys.readouterr()
    assert re.search(r"\d+ tokens \(.*\), [4-9] chunks", captured.out)
    assert "warning: text is longer than the window (8 tokens)" in captured.err
    with pytest.raises(SystemExit, match="a window of 2 tokens leaves no room"):
        main(["report", TEXT, "--model", str(folder), "--out", "", "--window", "2"])


@pytest.mark.slow
def test_token_page_draws_in_headless_chromium(tmp_path):
    """The page's token views in a browser: no script errors, one span per unit, the row
    subsets, the token tooltip, the attention view (a 12-layer tiny model, a 2-chunk text)."""
    import os
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    model = load_rotary_model(save_tiny_llama(tmp_path / "deep", n_layers=12), increments="per_layer")
    with torch.no_grad():
        for block in model.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    packer = AttentionPacker()
    with pytest.warns(UserWarning, match="split into 2 chunks"):
        result = compute_increments(model, TEXT, on_pattern=packer, window=20)
    out = tmp_path / "page.html"
    out.write_text(build_report(model, result, "tiny", attention=packer.blobs), encoding="utf-8")
    n_units = len(result.text_units)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(out.as_uri(), wait_until="load", timeout=90_000)
        page.wait_for_function("document.getElementById('att-status').textContent === ''", timeout=90_000)
        assert page.locator("#chars .c").count() == n_units and page.locator("#chars .cut").count() == 1
        first_chunk = sorted(result.starts)[1] - 1  # units of the first chunk (after its BOS)
        assert page.locator("#spaced text.ch").count() == 8 * first_chunk  # the 8 most varied layers
        page.select_option("#spaced-rows", "2")
        assert page.locator("#spaced text.ch").count() == 12 * first_chunk
        page.locator("#chars .c").nth(1).hover()
        tip = page.locator("#tip").inner_text()
        assert "token id" in tip and '" quick"' in tip and "surprisal" in tip
        page.locator("#att-text .a").nth(3).hover()
        assert page.locator("#att-text .a[style*='rgba']").count() > 1
        browser.close()
    assert not errors, errors
