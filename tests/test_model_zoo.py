"""The model zoo page (book/model_zoo.md) is generated from `nets` and must not go stale."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import model_zoo  # noqa: E402
from test_api import BUILDERS  # noqa: E402

STORED = json.loads(model_zoo.RESULTS.read_text())
ENTRIES = {e["name"]: e for e in model_zoo.models()}


def test_every_public_builder_and_the_unet_are_in_the_zoo():
    names = set(ENTRIES)
    for builder in BUILDERS:
        assert any(n == builder or n.startswith(builder + "(") for n in names), builder
    assert any(n.startswith("UNet(") for n in names)


def test_stored_rows_are_the_models_of_the_zoo_in_order():
    assert [row["model"] for row in STORED["rows"]] == list(ENTRIES)


@pytest.mark.parametrize("row", STORED["rows"], ids=lambda r: r["model"])
def test_stored_row_matches_nets_today(row):
    fresh = model_zoo.static_row(ENTRIES[row["model"]])
    stored = {k: v for k, v in row.items() if k != "latency_ms"}
    assert stored == fresh, "stale: run `python benchmarks/model_zoo.py`"
    assert row["latency_ms"] > 0
    assert (ROOT / row["test"]).exists()


def test_page_is_rendered_from_the_stored_results():
    assert model_zoo.PAGE.read_text() == model_zoo.render(STORED), \
        "stale page: run `python benchmarks/model_zoo.py --render`"
