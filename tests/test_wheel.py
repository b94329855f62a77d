"""The package builds as a wheel, and the wheel works outside the repository.

``python -m build`` makes the wheel exactly as a release would; it is installed
with ``--no-deps`` into a fresh virtual environment in a temporary folder, and
one optimizer step runs there, from a working directory outside the repository.
The fresh environment borrows torch, numpy and the rest from this one through
``PYTHONPATH`` (``--system-site-packages`` would only reach the base
interpreter, which has none of them); ``PYTHONPATH`` entries are not site
directories, so the editable install of ``optbook`` that this environment holds
is invisible there, and the check proves it by asserting where ``optbook`` was
imported from.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STEP = """
import sys, pathlib, torch, optbook
here = pathlib.Path(optbook.__file__).resolve()
assert "site-packages" in here.parts and not str(here).startswith(sys.argv[1]), here
p = torch.nn.Parameter(torch.ones(4, 3))
p.grad = torch.full((4, 3), 0.5)
for cls in (optbook.Adafactor, optbook.Lion, optbook.Sophia):
    q = torch.nn.Parameter(p.detach().clone()); q.grad = p.grad.clone()
    opt = cls([q], lr=1e-2) if cls is not optbook.Adafactor else cls([q])
    opt.step()
    assert (q.detach() < 1).all(), cls
import optbook.reference.adafactor, optbook.bench, optbook.tasks, optbook.analysis
print("ok", optbook.__version__, here.parent.parent.name)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: setuptools writes build/ and egg-info beside the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.nb[ic]"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        check=True, capture_output=True, text=True, cwd=out,
    )
    (path,) = out.glob("optbook-*.whl")
    return path


def test_the_wheel_holds_every_package_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "optbook").rglob("__init__.py")}
    missing = sorted(p for p in packages if p not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "book/", "tools/"))]


def test_the_wheel_installs_and_steps_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join(site.getsitepackages())
    result = subprocess.run([str(python), "-c", STEP, str(ROOT)], capture_output=True, text=True, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "0.1.0", "site-packages"]
