"""The library reference (book/appendix/api.md) lists every public module, as tools/api_page.py writes it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_page_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "api_page.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_api_page_documents_each_module_once_and_only_public_ones():
    sys.path.insert(0, str(ROOT / "tools"))
    import api_page

    text = (ROOT / "book" / "appendix" / "api.md").read_text()
    modules = [name for name, _ in api_page.public_modules()]
    for name in modules:
        assert text.count(f".. automodule:: {name}\n") == 1, name
    assert "optbook.optim.adafactor" in modules and "optbook.reference.adafactor" in modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))
