"""Every data file a chapter loads is described in book/data/README.md, and every stored experiment is sound."""

import json
from pathlib import Path

import pytest

from optbook.tasks.stored_results import RESULTS_FORMAT, payload_sha256

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
FILES = sorted(DATA.glob("*.json"))


def test_every_data_file_is_described():
    readme = (DATA / "README.md").read_text()
    missing = [p.name for p in FILES if f"`{p.name}`" not in readme]
    assert not missing, f"describe these files in book/data/README.md: {missing}"


@pytest.mark.parametrize("path", [p for p in FILES if json.loads(p.read_text()).get("format") == RESULTS_FORMAT], ids=lambda p: p.name)
def test_stored_experiments_match_their_checksums(path):
    record = json.loads(path.read_text())
    assert record["sha256"] == payload_sha256(record["key"], record["results"])
