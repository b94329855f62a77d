"""``python -m optbook.bench.gpu_check``: the GPU check script, tested end to end by its dry run.

The dry run is the same script on the CPU: the Triton kernels in the interpreter
(``tests/conftest.py`` sets ``TRITON_INTERPRET=1``), tiny shapes, the CPU rows of a
small benchmark, the record in a temporary folder. The GPU run is tested only where
there is a GPU (skipped in CI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
from optbook.bench import gpu_check  # noqa: E402
from optbook.kernels import roofline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if os.environ.get("OPTBOOK_GPU_CHECK_NESTED"):
        pytest.skip("inside the dry run's own pytest run")
    assert gpu_check.interpreter_on(), "tests/conftest.py must set TRITON_INTERPRET=1 before triton is imported"
    out = tmp_path_factory.mktemp("gpu-check")
    before = sorted((ROOT / "book" / "data").glob("bench-*.json"))
    record, path = gpu_check.run_check(True, out)
    after = sorted((ROOT / "book" / "data").glob("bench-*.json"))
    return record, path, out, before, after


def test_dry_run_writes_its_record_outside_book_data(dry_run):
    record, path, out, before, after = dry_run
    assert path.parent == out and path.exists()
    assert before == after, "a dry run must never write into book/data"
    assert json.loads(path.read_text())["gpu_check"]["dry_run"] is True


def test_dry_run_record_carries_device_versions_and_date(dry_run):
    record = json.loads(dry_run[1].read_text())
    prov = record["provenance"]
    assert record["schema"] == "optbook.bench/1" and record["kind"] == "cpu"
    for key in ("device_name", "torch", "triton", "python", "date_utc", "command"):
        assert prov[key], key
    assert prov["command"] == "python -m optbook.bench.gpu_check --dry-run"
    assert prov["date_utc"][:4].isdigit() and "T" in prov["date_utc"]
    assert [case["model"] for case in record["results"]] == ["gpt2-small"]
    rows = record["results"][0]["rows"]
    assert {row["method"] for row in rows} == {"optbook", "adamw-foreach"}
    assert all(row["median_s"] > 0 for row in rows)


def test_dry_run_checks_the_triton_kernels_against_the_eager_path(dry_run):
    check = json.loads(dry_run[1].read_text())["gpu_check"]
    assert check["interpreter"] is True and check["published"] is None
    cases = check["kernel_check"]
    assert {(c["dtype"], bool(c["options"])) for c in cases} == {
        ("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True)}
    assert [c["dtype"] for c in cases if c["options"].get("stochastic_rounding")] == ["bfloat16"]
    assert all(c["triton_kernels_ran"] for c in cases)
    # float32 arithmetic on both paths: rounding-level agreement, far below a formula error (>= 1e-3).
    assert all(c["max_rel_diff"] < 2e-6 for c in cases if c["dtype"] == "float32")
    assert check["kernel_check_passed"] is True
    assert 0 < check["wall_s"] < check["budget_s"]


def test_dry_run_runs_the_gpu_only_tests_which_skip_on_a_cpu(dry_run):
    tests = json.loads(dry_run[1].read_text())["gpu_check"]["gpu_tests"]
    assert tests["passed"] is True and tests["returncode"] == 0
    assert "-k cuda" in tests["command"] and "tests/test_optim_adafactor.py" in tests["command"]
    if not torch.cuda.is_available():
        assert "skipped" in tests["summary"]


def test_kernel_check_detects_a_wrong_step(monkeypatch):
    """A fused step that is off by a formula-sized amount fails the check."""
    import optbook

    real = optbook.Adafactor.step

    def skewed(self, closure=None):
        out = real(self, closure)
        if any(g["fused"] for g in self.param_groups):
            with torch.no_grad():
                for g in self.param_groups:
                    for p in g["params"]:
                        p.mul_(1.001)
        return out

    monkeypatch.setattr(optbook.Adafactor, "step", skewed)
    rows = gpu_check.kernel_check("cpu", [(5, 7)], dtypes=("float32",), steps=1)
    assert rows and not any(r["passed"] for r in rows)
    assert all(r["max_rel_diff"] > 5e-4 for r in rows)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="steps"):
        gpu_check.kernel_check("cpu", [(3, 4)], steps=0)
    with pytest.raises(ValueError, match="dtypes"):
        gpu_check.kernel_check("cpu", [(3, 4)], dtypes=("float64",))
    with pytest.raises(ValueError, match="book/data|book.data"):
        gpu_check.dry_run_path(ROOT / "book" / "data", "2026-01-01T00:00:00+00:00")
    with pytest.raises(ValueError, match="book/data|book.data"):
        gpu_check.dry_run_path(ROOT / "book" / "data" / "x.json", "2026-01-01T00:00:00+00:00")
    with pytest.raises(ValueError, match="output"):
        gpu_check.run_check(False, "/tmp/somewhere")
    with pytest.raises(SystemExit):
        gpu_check.main(["--output", "/tmp/x.json"])  # --output only with --dry-run


def test_published_floor_of_a_gpu_record():
    """The derived floor is bytes / published bandwidth; a device not in the table has none."""
    record = {
        "provenance": {"device_name": "NVIDIA H100 80GB HBM3"},
        "results": [{"model": "m", "dtype": "fp32", "floor_bytes": {"adafactor": 3.35e9, "adamw": 6.7e9},
                     "rows": [{"method": "optbook-fused", "family": "adafactor", "median_s": 2e-3},
                              {"method": "adamw-fused", "family": "adamw", "median_s": 2.5e-3},
                              {"method": "broken", "family": "adafactor", "error": "x"}]}],
    }
    pub = gpu_check.published_floor(record)
    assert pub["device"] == "H100 SXM" and pub["published_bandwidth"] == 3.35e12
    fractions = {r["method"]: r["fraction_of_floor"] for r in pub["rows"]}
    # 3.35 GB at 3.35 TB/s is 1 ms: half of 2 ms; 6.7 GB is 2 ms: 0.8 of 2.5 ms.
    assert fractions == pytest.approx({"optbook-fused": 0.5, "adamw-fused": 0.8})
    record["provenance"]["device_name"] = "NVIDIA A100-SXM4-80GB"
    assert gpu_check.published_floor(record) is None


@pytest.mark.skipif(not torch.cuda.is_available() or gpu_check.interpreter_on(),
                    reason="needs a CUDA device and the compiled kernels (TRITON_INTERPRET unset)")
def test_cuda_kernel_check_native():
    rows = gpu_check.kernel_check("cuda", gpu_check.GPU_CHECK_SHAPES)
    assert all(r["passed"] for r in rows), rows
