"""The library reference (book/appendix/api.md and book/appendix/api/*.md) lists every public module once,
as tools/api_page.py writes it, and the table of contents reaches every page of it."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import api_page  # noqa: E402


def committed() -> dict[str, str]:
    pages = {"api": api_page.PAGE.read_text()}
    for path in sorted((api_page.PAGE.parent / api_page.SUBPAGES).glob("*.md")):
        pages[f"{api_page.SUBPAGES}/{path.stem}"] = path.read_text()
    return pages


def test_api_pages_are_current():
    assert committed() == api_page.render(), "run `python tools/api_page.py` and commit the pages"


def test_each_module_is_documented_once_and_only_public_ones():
    text = "\n".join(committed().values())
    modules = [name for name, _ in api_page.public_modules()]
    for name in modules:
        assert text.count(f".. automodule:: {name}\n") == 1, name
    assert text.count(".. automodule::") == len(modules)
    assert "optbook.optim.adafactor" in modules and "optbook.reference.adafactor" in modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))


def test_each_subpackage_has_its_own_page_linked_from_the_front_page():
    pages = api_page.render()
    front = pages["api"]
    for sub in api_page.subpackages():
        short = sub.split(".")[1]
        assert f"{api_page.SUBPAGES}/{short}" in pages
        assert pages[f"{api_page.SUBPAGES}/{short}"].startswith(f"(api-{short})=\n# `{sub}`")
        assert f"]({'api-' + short})" in front, sub
    assert api_page.page_of("optbook.optim.adafactor") == "api/optim"
    assert api_page.page_of("optbook.train") == "api"


def test_the_table_of_contents_reaches_every_reference_page():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    back = [c for part in toc["parts"] for c in part["chapters"] if c.get("file") == "book/appendix/api"]
    assert len(back) == 1
    assert {"glob": "book/appendix/api/*"} in back[0].get("sections", [])


def test_check_mode_reports_a_stale_or_leftover_page(tmp_path, monkeypatch):
    monkeypatch.setattr(api_page, "PAGE", tmp_path / "api.md")
    monkeypatch.setattr(api_page, "ROOT", tmp_path)
    (tmp_path / "api.md").write_text("stale")
    assert api_page.main(["--check"]) == 1
    assert api_page.main([]) == 0 and api_page.main(["--check"]) == 0
    (tmp_path / "api" / "gone.md").write_text("a subpackage that no longer exists")
    assert api_page.main(["--check"]) == 1
    (tmp_path / "api" / "optim.md").write_text("stale")
    assert api_page.main(["--check"]) == 1
    assert api_page.main([]) == 0 and api_page.main(["--check"]) == 0
    assert not (tmp_path / "api" / "gone.md").exists()


def test_inline_math_in_docstrings_has_no_doubled_backslash():
    """A raw docstring (r\"\"\"...\"\"\") that writes ``\\\\top`` hands MathJax a line break followed by
    the word "top": ``1_n^\\\\top`` is a TeX error on the reference page, ``\\\\mathrm`` prints "mathrm"."""
    import importlib
    import inspect
    import re

    bad = []
    for name, _ in api_page.public_modules():
        module = importlib.import_module(name)
        objects = [("", module)] + [
            (n, o) for n, o in vars(module).items()
            if (inspect.isfunction(o) or inspect.isclass(o)) and getattr(o, "__module__", None) == name
        ]
        for obj_name, obj in objects:
            for match in re.finditer(r":math:`([^`]*)`", obj.__doc__ or ""):
                if "\\\\" in match.group(1):
                    bad.append(f"{name}.{obj_name}: {match.group(1)}")
    assert not bad, bad
