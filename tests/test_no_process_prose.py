"""No page, data README or library docstring speaks of issues, trackers or how the book was made."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# "the issue", "issue 6", "issue's", "tracker": words about the project's process, not about optimizers.
PROCESS = re.compile(r"\bthe issue\b|\bissue\s+\d+|\bissue's\b|\btracker\b", re.IGNORECASE)


def _texts():
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            yield f"{path.relative_to(ROOT)} cell {i}", "".join(cell["source"])
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain") or ""
                yield f"{path.relative_to(ROOT)} cell {i} output", "".join(text)
    for path in sorted((ROOT / "book").rglob("*.md")):
        if "_build" not in path.parts:
            yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted((ROOT / "src" / "optbook").rglob("*.py")):
        yield str(path.relative_to(ROOT)), path.read_text()


def test_no_process_prose():
    found = [f"{where}: {m.group(0)!r}" for where, text in _texts() for m in PROCESS.finditer(text)]
    assert not found, "prose about the project's process:\n" + "\n".join(found)


@pytest.mark.parametrize("text", ["See the issue.", "issue 6's targets", "the issue's floor", "our tracker"])
def test_the_pattern_catches_process_words(text):
    assert PROCESS.search(text)


@pytest.mark.parametrize("text", ["a kernel issues loads", "the targets y = Aw", "issued lanes"])
def test_the_pattern_leaves_ordinary_words(text):
    assert not PROCESS.search(text)
