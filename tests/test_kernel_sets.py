"""The kernel sets that `make test` and `make test-kernels` run the chapters under."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("kernel_sets", ROOT / "tools" / "kernel_sets.py")
ks = importlib.util.module_from_spec(spec)
sys.modules["kernel_sets"] = ks  # dataclasses resolve annotations through sys.modules
spec.loader.exec_module(ks)


def test_baseline_is_the_set_the_issue_names_and_runs_anywhere():
    base = ks.KERNEL_SETS["baseline"]
    assert base.env["OPENBLAS_CORETYPE"] == "Prescott"
    assert base.env["ATEN_CPU_CAPABILITY"] == "default"
    assert base.env["NUMBA_CPU_NAME"] == "generic"
    assert base.needs == () and ks.runnable(base, flags=set())


@pytest.mark.parametrize("name", ["native", "baseline", "haswell", "skylakex"])
def test_named_sets_exist(name):
    assert name in ks.KERNEL_SETS


def test_avx512_set_is_skipped_without_avx512():
    avx2_only = {"sse3", "avx", "avx2", "fma"}
    assert not ks.runnable(ks.KERNEL_SETS["skylakex"], flags=avx2_only)
    assert ks.runnable(ks.KERNEL_SETS["haswell"], flags=avx2_only)


def test_run_skips_with_a_message_instead_of_crashing(monkeypatch, capsys):
    monkeypatch.setattr(ks, "cpu_flags", lambda: {"sse3"})
    rc = ks.main(["run", "skylakex", "--", sys.executable, "-c", "raise SystemExit(3)"])
    assert rc == 0 and "skipped" in capsys.readouterr().out


def test_run_passes_the_environment_and_the_exit_status():
    code = "import os, sys; sys.exit(0 if os.environ['ATEN_CPU_CAPABILITY'] == 'default' else 4)"
    assert ks.main(["run", "baseline", "--", sys.executable, "-c", code]) == 0
    assert ks.main(["run", "baseline", "--", sys.executable, "-c", "raise SystemExit(5)"]) == 5


def test_make_test_runs_the_notebooks_under_native_and_baseline():
    out = subprocess.run(["make", "-n", "test-notebooks"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "for set in native baseline" in out and "--nbval" in out


def test_make_test_kernels_covers_every_set():
    out = subprocess.run(["make", "-n", "test-kernels"], cwd=ROOT, capture_output=True, text=True).stdout
    for name in ks.KERNEL_SETS:
        assert name in out
