"""Cells call the library: few long code cells, few functions defined in cells (CONTRIBUTING.md).

A formula is computed by a library function that the cell calls; a cell that
grows past 25 lines, or defines its own functions, is usually re-implementing
something the library should hold once. The budget is book-wide, for the
chapters still to be written too.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 25
MAX_LONG_CELLS = 8
MAX_DEFINITIONS = 10


def code_cells():
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        for index, cell in enumerate(cells):
            yield f"{path.relative_to(ROOT)} code cell {index}", "".join(cell["source"])


def test_long_cells_and_definitions_stay_within_the_budget():
    long_cells = [name for name, source in code_cells() if len(source.strip("\n").split("\n")) > MAX_LINES]
    definitions = [f"{name}: {m.group(1)} {m.group(2)}" for name, source in code_cells()
                   for m in re.finditer(r"^\s*(def|class)\s+(\w+)", source, re.M)]
    assert len(long_cells) <= MAX_LONG_CELLS, f"code cells over {MAX_LINES} lines: {long_cells}"
    assert len(definitions) <= MAX_DEFINITIONS, f"def/class in cells: {definitions}"


def test_the_counter_sees_long_cells_and_indented_definitions():
    source = "x = 1\n" * 26
    assert len(source.strip("\n").split("\n")) > MAX_LINES
    found = re.findall(r"^\s*(def|class)\s+(\w+)", "for k in ks:\n    def f(x):\n        return x\nclass A: pass\n", re.M)
    assert found == [("def", "f"), ("class", "A")]
