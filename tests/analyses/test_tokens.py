"""Token-level helpers for pretrained rotary bridges, on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from analyses import _common, _tokens
from lens_positions.rotary_models import load_rotary_model, save_tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")
    return load_rotary_model(folder, increments="per_layer")


def test_subject_of_tells_a_bridge_from_a_byte_model(tiny, any_model):
    from lens_positions.subject import subject_of

    assert subject_of(tiny).unit == "token" and subject_of(tiny).start_id == _tokens.bos_id(tiny)
    assert subject_of(any_model).unit == "byte"


def test_token_windows_join_documents_with_eos_after_a_bos(tiny):
    texts = ["the quick brown fox", "the lazy dog"]
    ids = [_tokens.encode(tiny, t) for t in texts]
    eos, bos = tiny.tokenizer.eos_token_id, _tokens.bos_id(tiny)
    stream = ids[0] + [eos] + ids[1] + [eos]
    windows = _tokens.token_windows(tiny, texts, 3, max_windows=100)
    assert len(windows) == len(stream) // 3
    assert all(w[0] == bos and len(w) == 4 for w in windows)
    assert [t for w in windows for t in w[1:]] == stream[: 3 * len(windows)]
    assert len(_tokens.token_windows(tiny, texts, 3, max_windows=1)) == 1
    with pytest.raises(ValueError, match="less than one window of 200"):
        _tokens.token_windows(tiny, texts, 200, max_windows=1)
    with pytest.raises(ValueError, match="exceed the context"):
        _tokens.token_windows(tiny, texts, 256, max_windows=1)


def test_document_windows_cut_each_document_alone(tiny):
    texts = ["the quick brown fox jumps over the lazy dog", "the cat"]
    windows = _tokens.document_windows(tiny, texts, 3, max_windows=10, per_doc=2)
    first = _tokens.encode(tiny, texts[0])
    assert windows[0][1:] == first[:3] and windows[1][1:] == first[3:6]
    assert windows[2][1:] == _tokens.encode(tiny, texts[1])[:3]
    assert _tokens.token_texts(tiny, first[:2]) == [tiny.tokenizer.decode([i]) for i in first[:2]]


def test_run_batches_pads_a_bridge_without_changing_real_positions(tiny):
    """Right padding with the bridge's pad id: each sequence's δ equal its unpadded run's."""
    with torch.no_grad():  # make δ depend on the tokens
        for block in tiny.blocks:
            block.delta_mlp.W_out.normal_(0, 0.5)
    seqs = [[0, 258, 298, 293], [0, 258]]
    names = ["blocks.1.hook_delta"]
    got = {}
    for idx, lengths, cap in _common.run_batches(tiny, seqs, capture=names, batch_size=2, progress=False):
        for row, i in enumerate(idx):
            got[i] = cap[names[0]][row, : lengths[row]]
    for i, seq in enumerate(seqs):
        _, cache = tiny.run_with_cache(torch.tensor([seq]), names_filter=names)
        torch.testing.assert_close(got[i], cache[names[0]][0].float(), rtol=1e-5, atol=1e-6)
    assert _tokens.pad_id(tiny) == tiny.tokenizer.eos_token_id
