"""What the pages show of a cell: tools/book_sphinx_fixes.strip_glue_calls."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from book_sphinx_fixes import strip_glue_calls  # noqa: E402


def test_glue_lines_and_their_import_go():
    source = "from optbook.notebook import glue\nx = 2\nprint(x)\n# hand x to the prose\nglue('x', x)\n"
    assert strip_glue_calls(source) == "x = 2\nprint(x)"


def test_a_loop_that_only_glues_goes_whole_and_a_mixed_loop_keeps_its_work():
    source = (
        "for k, v in d.items():\n    glue(f'a_{k}', v,\n         digits=3)\n"
        "for k in d:\n    total += d[k]\n    glue(k, total)\n"
        "print(total)"
    )
    assert strip_glue_calls(source) == "for k in d:\n    total += d[k]\nprint(total)"


def test_other_imports_on_the_line_stay():
    assert strip_glue_calls("from optbook.notebook import bound, glue\nbound(1)") == "from optbook.notebook import bound\nbound(1)"


def test_code_without_glue_or_that_does_not_parse_is_unchanged():
    assert strip_glue_calls("%timeit f()\nglue('a', 1)") == "%timeit f()\nglue('a', 1)"
    assert strip_glue_calls("glued = 3\nprint(glued)") == "glued = 3\nprint(glued)"
    assert strip_glue_calls("notebook.glue('a', 1)\ny = 1") == "y = 1"


@pytest.mark.parametrize("chapter", sorted((ROOT / "book").rglob("*.ipynb")), ids=lambda p: p.stem)
def test_no_chapter_shows_glue_on_its_page(chapter):
    """Every code cell of every chapter, as the page shows it, is free of glue and still parses."""
    import ast

    for cell in json.loads(chapter.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        shown = strip_glue_calls("".join(cell["source"]))
        assert "glue(" not in shown, shown
        if not shown.lstrip().startswith("%"):
            ast.parse(shown)


@pytest.mark.parametrize("chapter", sorted((ROOT / "book").rglob("*.ipynb")), ids=lambda p: p.stem)
def test_no_stored_output_names_a_path_of_this_machine(chapter):
    """A warning that prints an install path (site-packages, .venv) can never match a run from another checkout."""
    for i, cell in enumerate(json.loads(chapter.read_text())["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert "site-packages" not in text and ".venv/" not in text, f"cell {i}: {text[:200]}"
