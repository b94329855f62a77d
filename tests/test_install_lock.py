"""tools/install_lock.py passes pip's configured package sources on to uv."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_lock", ROOT / "tools" / "install_lock.py")
install_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_lock)


def test_sources_from_files_and_environment_with_pips_precedence():
    text = "\n".join([
        ":env:.default-timeout='180'",
        ":env:.find-links='/opt/wheels'",
        "global.cert='/etc/ssl/certs/ca-certificates.crt'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
        "global.find-links='/somewhere/else'",
        "install.index-url='https://example.org/simple'",
        "global.index-url='https://ignored.example/simple'",
    ])
    assert install_lock.parse_pip_config(text) == {
        "find-links": ["/opt/wheels"],  # the PIP_FIND_LINKS variable beats the file
        "constraint": ["/etc/xdg/pip/constraints.txt"],
        "extra-index-url": ["file:///opt/pypi/simple", "file:///opt/pypi-more/simple"],
        "index-url": ["https://example.org/simple"],  # install. beats global.
    }
    assert install_lock.parse_pip_config("") == {}


def test_uv_is_pinned_in_the_lock_file():
    pins = [line for line in (ROOT / "requirements-lock.txt").read_text().splitlines() if line.startswith("uv==")]
    assert len(pins) == 1
