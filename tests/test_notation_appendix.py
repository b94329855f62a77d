"""The notation appendix (book/appendix/notation.ipynb) lists every symbol of the library.

The appendix is generated: its one code cell calls ``optbook.notation.notation_table()``
and displays the tables as Markdown. Strict nbval re-executes it in ``make test``; these
tests say more precisely what is wrong when it is stale, and fail when a public formula
function of the library is missing from the stored page a reader sees.

To refresh the appendix after adding or changing a symbol:
    .venv/bin/python tools/execute_notebooks.py book/appendix/notation.ipynb
"""

import importlib
import inspect
import pkgutil
from pathlib import Path

import nbformat
import pytest

from optbook.notation import notation_table

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "appendix" / "notation.ipynb"
REFRESH = f"re-execute the appendix: .venv/bin/python tools/execute_notebooks.py {NOTEBOOK.relative_to(NOTEBOOK.parents[2])}"
# Modules whose public functions are formulas of the book (as in test_notation.py).
FORMULA_PACKAGES = ("optbook.reference", "optbook.problems", "optbook.analysis", "optbook.schedules", "optbook.tasks")


def public_formula_functions() -> set[str]:
    names = set()
    for package in FORMULA_PACKAGES:
        module = importlib.import_module(package)
        modules = [module]
        if hasattr(module, "__path__"):
            modules += [
                importlib.import_module(info.name)
                for info in pkgutil.iter_modules(module.__path__, prefix=package + ".")
                if not info.name.rpartition(".")[2].startswith("_")
            ]
        for mod in modules:
            helpers = set(getattr(mod, "__helpers__", ()))
            public = getattr(mod, "__all__", [n for n in dir(mod) if not n.startswith("_")])
            for name in public:
                obj = getattr(mod, name, None)
                if inspect.isfunction(obj) and obj.__module__ == mod.__name__ and name not in helpers:
                    names.add(f"{mod.__name__}.{name}")
    return names


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def code_cell(notebook):
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(cells) == 1, "the appendix has exactly one code cell, the generator"
    return cells[0]


@pytest.fixture(scope="module")
def stored_markdown(code_cell):
    outputs = [out for out in code_cell.outputs if "text/markdown" in out.get("data", {})]
    assert len(outputs) == 1, f"the appendix's cell must store one Markdown output; {REFRESH}"
    return outputs[0]["data"]["text/markdown"]


def test_the_table_is_generated_by_the_library_not_typed(code_cell):
    assert "notation_table()" in code_cell.source
    # Markdown output is rendered with MyST, so $...$ becomes MathJax math and the
    # list-table directive becomes a table (commonmark would leave both as text).
    assert code_cell.metadata.get("mystnb", {}).get("markdown_format") == "myst"


def test_stored_appendix_is_what_the_library_generates_now(code_cell, stored_markdown):
    namespace: dict = {}
    exec(compile(code_cell.source, str(NOTEBOOK), "exec"), namespace)
    assert namespace["table_md"] == stored_markdown, f"the notation appendix is stale: {REFRESH}"


def test_every_registered_symbol_is_in_the_appendix(stored_markdown):
    missing = [
        entry.function
        for entry in notation_table()
        if f"`{entry.function}`" not in stored_markdown or f"${entry.latex.strip()}$" not in stored_markdown
    ]
    assert not missing, f"symbols missing from the notation appendix: {missing}; {REFRESH}"


def test_every_public_formula_function_is_in_the_appendix(stored_markdown):
    missing = sorted(name for name in public_formula_functions() if f"`{name}`" not in stored_markdown)
    assert not missing, (
        f"public formula functions missing from the notation appendix: {missing}. Decorate each with "
        f"@symbol(latex, meaning) from optbook.notation (or list it in its module's __helpers__), then {REFRESH}"
    )
