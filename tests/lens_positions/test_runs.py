"""Run and model folders (`lens_positions.runs`): file names, metrics, cards, variant order."""

from __future__ import annotations

import json
import math

import pytest

from lens_positions.runs import (
    CARD_JSON,
    FINAL_DIR,
    METRICS_FILE,
    VARIANT_ORDER,
    bits_per_byte,
    read_card,
    read_metrics,
)

from ..conftest import VARIANTS, small_config


def test_every_variant_name_has_its_place_in_the_order():
    names = {small_config(inc, per_head, frozen).variant_name for inc, per_head, frozen in VARIANTS}
    assert names <= set(VARIANT_ORDER)
    assert small_config("shared", True, True).variant_name in VARIANT_ORDER  # frozen-per-head


def test_metrics_skip_a_torn_last_line_and_cards_are_found_in_both_layouts(tmp_path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"kind": "train", "step": 1}) + '\n{"kind": "ev')
    assert read_metrics(tmp_path) == read_metrics(tmp_path / METRICS_FILE) == [{"kind": "train", "step": 1}]
    assert read_card(tmp_path) is None
    (tmp_path / FINAL_DIR).mkdir()
    (tmp_path / FINAL_DIR / CARD_JSON).write_text('{"where": "run folder"}')
    assert read_card(tmp_path) == {"where": "run folder"}  # a training run: final/card.json
    (tmp_path / CARD_JSON).write_text('{"where": "model folder"}')
    assert read_card(tmp_path) == {"where": "model folder"}  # a model folder: card.json
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "nothing")


def test_bits_per_byte():
    assert bits_per_byte(math.log(2)) == pytest.approx(1.0)
    assert bits_per_byte(1.0) == pytest.approx(1 / math.log(2))
