"""Install requirements-lock.txt and the package (editable) into a virtual environment.

Usage: python tools/install_lock.py VENV_PYTHON

The lock file pins every package exactly, so any installer gives the same environment;
uv installs it in about a third of pip's time (parallel downloads and unpacking), which
matters because CI builds the environment from scratch on every run. uv itself is pinned
in the lock file and installed first with pip. uv does not read pip's configuration, so
the package sources pip is configured with (``pip config list``: find-links, index-url,
extra-index-url, constraint, from the configuration files and ``PIP_*`` variables, such
as a local wheel directory or PyTorch's CPU-only index) are passed to it explicitly, and
all indexes are searched for the best match, as pip does. If uv is unavailable or fails
for any reason, pip installs the same lock file, so the result never depends on uv.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-lock.txt"
PIP_FLAGS = ["--quiet", "--disable-pip-version-check", "--no-compile"]


def run(cmd: list[str], **kwargs) -> int:
    print("+", shlex.join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, **kwargs)


def pip_sources(python: str) -> dict[str, list[str]]:
    """The package sources pip would use: {option: [values]}, environment variables overriding files."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, cwd=ROOT)
    return parse_pip_config(out.stdout)


def parse_pip_config(text: str) -> dict[str, list[str]]:
    """The package-source options of ``pip config list`` output; ``:env:`` (PIP_* variables) beats
    ``install.`` beats ``global.``, as in pip."""
    by_option: dict[str, tuple[int, list[str]]] = {}
    for line in text.splitlines():
        m = re.match(r"^(?P<scope>[^.=]*)\.(?P<key>[\w-]+)=(?P<value>.*)$", line.strip())
        if not m:
            continue
        key = m["key"]
        if key not in ("find-links", "index-url", "extra-index-url", "constraint"):
            continue
        value = m["value"].strip().strip("'\"")
        rank = 2 if m["scope"] == ":env:" else 1 if m["scope"] == "install" else 0
        if key not in by_option or rank >= by_option[key][0]:
            by_option[key] = (rank, value.split())
    return {k: v for k, (_, v) in by_option.items()}


def uv_install(python: str) -> bool:
    pin = next((line.strip() for line in LOCK.read_text().splitlines() if line.startswith("uv==")), None)
    if pin is None:
        return False
    if run([python, "-m", "pip", "install", *PIP_FLAGS, pin]) != 0:
        return False
    cmd = [python, "-m", "uv", "pip", "install", "--quiet", "--python", python, "--index-strategy", "unsafe-best-match"]
    for option, values in pip_sources(python).items():
        for v in values:
            cmd += [f"--{option}", v]
    env = dict(os.environ)
    env.setdefault("UV_NATIVE_TLS", "1")  # the system's certificates, as pip's configuration uses
    return run(cmd + ["-r", str(LOCK), "-e", str(ROOT)], env=env) == 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    python = argv[0]
    start = time.perf_counter()
    if os.environ.get("OPTBOOK_INSTALLER", "uv") == "uv" and uv_install(python):
        print(f"installed the lock file with uv in {time.perf_counter() - start:.0f} s")
        return 0
    print("uv could not install the lock file; installing it with pip", flush=True)
    return run([python, "-m", "pip", "install", *PIP_FLAGS, "-r", str(LOCK), "-e", str(ROOT)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
