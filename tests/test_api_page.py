"""The library reference (book/appendix/api.md) lists every public module, as tools/api_page.py writes it."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import api_page  # noqa: E402


def test_api_page_is_current():
    assert api_page.PAGE.read_text() == api_page.render(), "run `python tools/api_page.py` and commit the page"


def test_api_page_documents_each_module_once_and_only_public_ones():
    text = api_page.PAGE.read_text()
    modules = [name for name, _ in api_page.public_modules()]
    for name in modules:
        assert text.count(f".. automodule:: {name}\n") == 1, name
    assert "optbook.optim.adafactor" in modules and "optbook.reference.adafactor" in modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch):
    monkeypatch.setattr(api_page, "PAGE", tmp_path / "api.md")
    (tmp_path / "api.md").write_text("stale")
    monkeypatch.setattr(api_page, "ROOT", tmp_path)
    assert api_page.main(["--check"]) == 1
    assert api_page.main([]) == 0 and api_page.main(["--check"]) == 0
