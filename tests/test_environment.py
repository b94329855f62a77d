"""The lock file, environment.yml and pyproject.toml must describe one environment."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_file_pins_every_line_exactly():
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-]+", line.strip()), line


def test_torch_is_pinned_to_the_local_cpu_wheel():
    # Any other torch spec pulls gigabytes of CUDA wheels.
    assert lock_pins()["torch"] == "2.13.0"


def test_environment_yml_agrees_with_lock_file():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    options = [spec for spec in pip_section if spec.startswith("-")]
    # Binder builds from this file: torch must come from the CPU-only index, as in CI.
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    env_pins = {}
    for spec in pip_section:
        if spec.startswith("-"):
            continue
        name, version = spec.split("==")
        env_pins[name.lower().replace("_", "-")] = version
    assert env_pins == lock_pins()


def test_pyproject_keeps_loose_bounds_satisfied_by_the_lock():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = lock_pins()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        assert "==" not in spec, f"{spec}: pyproject.toml keeps loose bounds; exact pins go in the lock file"
        assert req.name.lower() in pins, f"{req.name} is a dependency but missing from the lock file"
        assert req.specifier.contains(pins[req.name.lower()]), f"lock pin of {req.name} violates {spec}"


def test_jupyter_book_is_version_one():
    assert lock_pins()["jupyter-book"].startswith("1.")
