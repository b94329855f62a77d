"""The benchmark CLI ``python -m optbook.bench`` and the byte model it reports against.

Nothing here is a timing test: the CPU run below checks that the CLI runs,
labels a CPU run as such, and writes every field of its JSON record, not how
fast anything is. The byte counts are checked against the hand count of the
three passes (pass 1 reads G; pass 2 reads G; pass 3 reads G and X and
writes X), not against numbers taken from the code.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from optbook import bench
from optbook.bench import __main__ as cli
from optbook.bench.shapes import MODELS, parameter_count, parameter_shapes
from optbook.kernels import roofline

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------- byte model


def test_bytes_per_element_follow_the_three_pass_count():
    # b_G + b_G + (b_G + 2 b_X), with b = 4 (float32) or 2 (bfloat16).
    assert roofline.adafactor_bytes_per_element("float32") == 4 + 4 + (4 + 2 * 4) == 20
    assert roofline.adafactor_bytes_per_element("bfloat16") == 10
    assert roofline.adafactor_bytes_per_element("float32", "bfloat16") == 3 * 2 + 2 * 4
    # Re-reading X_{t-1} for RMS(X_{t-1}) adds b_X.
    assert roofline.adafactor_bytes_per_element("float32", reread_x=True) == 24
    # beta1 momentum: pass 3 also reads and writes M.
    assert roofline.adafactor_bytes_per_element("float32", momentum_dtype="float32") == 20 + 2 * 4
    # Fused AdamW reads G, X, m, v and writes X, m, v.
    assert roofline.adamw_bytes_per_element("float32") == 4 + 3 * 4 + 3 * 4 == 28
    assert roofline.compulsory_bytes_per_element("bfloat16") == 6
    passes = roofline.adafactor_passes("float32")
    assert [p.read for p in passes] == [4, 4, 8] and [p.written for p in passes] == [0, 0, 4]
    with pytest.raises(ValueError, match="dtype"):
        roofline.adafactor_bytes_per_element("int8")


def test_step_traffic_of_a_parameter_set():
    big = roofline.fused_adafactor_bytes([(4096, 4096)], "float32")
    assert big.streams == 20 * 4096 * 4096
    # 128 x 128 tiles: 32 column tiles per row and 32 row tiles per column.
    # R and C are read and written once; the 32 partial sums per row and per
    # column are written and read back; each tile of passes 2 and 3 reads its
    # slices of R and C. About 0.25 B per element, 1.3% of the 20 B.
    n = m = 4096
    assert big.statistics == 4 * (2 * (n + m) + 2 * (32 * n + 32 * m) + 2 * (32 * n + 32 * m))
    vec = roofline.fused_adafactor_bytes([(1000,)], "bfloat16")
    # pass 1: G, V; pass 3: G, X, V read, X and V written (V is float32).
    assert vec.streams == 1000 * (2 + 4 + 2 + 2 + 4 + 2 + 4)
    assert roofline.fused_adafactor_bytes([(0, 5), (3, 0)], "float32").total == 0
    assert roofline.adamw_bytes([(10, 10), (10,)], "float32").total == 28 * 110
    assert roofline.floor_seconds(3e12, 3e12) == 1.0
    with pytest.raises(ValueError, match="bandwidth"):
        roofline.floor_seconds(1.0, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        roofline.fused_adafactor_bytes([(3, -1)])


def test_model_shapes_have_the_published_parameter_counts():
    # GPT-2 small has 124,439,808 parameters; Llama-3.2-1B 1,235,814,400 in
    # 146 tensors (tied embeddings): counts from the released checkpoints.
    assert parameter_count(parameter_shapes("gpt2-small")) == 124_439_808
    llama = parameter_shapes("llama-1b")
    assert parameter_count(llama) == 1_235_814_400 and len(llama) == 146
    for model in MODELS:
        assert parameter_count(parameter_shapes(model, small=True)) < 5_000_000
    with pytest.raises(ValueError, match="model"):
        parameter_shapes("gpt5")


# --------------------------------------------------------------------------- CLI


def test_help_lists_models_and_methods():
    out = subprocess.run(
        [sys.executable, "-m", "optbook.bench", "--help"], capture_output=True, text=True, env=_child_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    for word in ("--device", "--record", "--output", *MODELS, *bench.METHODS):
        assert word in out.stdout


def test_cpu_run_writes_a_labelled_record(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTBOOK_TIMING_SMOKE", raising=False)  # smoke mode would cut the repeats to one
    path = tmp_path / "run.json"
    code = cli.main([
        "--device", "cpu", "--models", "gpt2-small", "--dtypes", "fp32", "bf16",
        "--methods", "torch-adafactor", "torch-adafactor-foreach", "adamw",
        "--warmup", "1", "--repeats", "3", "--output", str(path), "--quiet",
    ])
    assert code == 0
    table = capsys.readouterr().out
    assert table.startswith("CPU RUN")
    record = json.loads(path.read_text())
    assert record["schema"] == bench.SCHEMA and record["kind"] == "cpu"
    prov = record["provenance"]
    for key in ("date_utc", "device_name", "torch", "triton", "python", "command"):
        assert prov[key], key
    assert record["settings"]["timer"].startswith("time.perf_counter") and record["settings"]["small"] is True
    assert record["targets"] == {"judged": False, "reason": record["targets"]["reason"]}
    assert [c["dtype"] for c in record["results"]] == ["fp32", "bf16"]
    for case in record["results"]:
        assert case["parameters"] == parameter_count(parameter_shapes("gpt2-small", small=True))
        rows = {r["method"]: r for r in case["rows"]}
        assert set(rows) == {"torch-adafactor", "torch-adafactor-foreach", "adamw"}
        for r in rows.values():
            assert r["median_s"] > 0 and r["repeats"] == 3
            assert r["speedup_vs"]["torch-adafactor-foreach"] > 0
        # State bytes are counted, not modelled: AdamW keeps m and v (2 per
        # element), Adafactor keeps R and C (n + m per matrix) or V (vectors).
        itemsize = 4 if case["dtype"] == "fp32" else 2
        assert rows["adamw"]["state_bytes"] >= 2 * itemsize * case["parameters"]
        assert rows["torch-adafactor"]["state_bytes"] < 0.05 * rows["adamw"]["state_bytes"]
    assert not list(bench.load_records(tmp_path))  # a CPU run is never a book record


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--dtypes", "fp64"], "dtypes"),
        (["--models", "gpt5"], "models"),
        (["--methods", "optbook-fused"], "methods"),
        (["--methods", "sgd"], "methods"),
        (["--repeats", "2"], "repeats"),
        (["--warmup", "0"], "warmup"),
        (["--record"], "record"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_arguments_are_named(argv, word, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--device", "cpu", "--quiet", *argv] if "--device" not in argv else ["--quiet", *argv])
    assert exc.value.code == 2
    assert word in capsys.readouterr().err


def test_targets_are_judged_only_on_gpu_records():
    """The verdict logic, on a made-up record (never written anywhere)."""
    def case(model, dtype, rows):
        return {"model": model, "dtype": dtype, "parameters": 10**9, "rows": rows}

    def row(method, median, state):
        return {"method": method, "median_s": median, "state_bytes": state}

    record = {
        "kind": "gpu",
        "copy_bandwidth": {"bytes_per_s": 2.5e12},  # 1e9 elements * 20 B / 2.5e12 B/s = 8 ms
        "results": [
            case("gpt2-small", "fp32", [row("optbook-fused", 1.0, 1), row("torch-adafactor-foreach", 6.0, 1),
                                        row("adamw-fused", 0.9, 1000)]),
            case("llama-1b", "fp32", [row("optbook-fused", 0.01, 1)]),
            case("gpt2-small", "bf16", [{"method": "optbook-fused", "error": "RuntimeError: no"}]),
        ],
    }
    targets = bench.evaluate_targets(record)
    assert targets["gpt2-small/fp32: fused >= 5x torch foreach"] == {"value": 6.0, "met": True}
    assert targets["gpt2-small/fp32: fused faster than AdamW(fused)"]["met"] is False
    assert targets["gpt2-small/fp32: state <= 1% of AdamW"]["met"] is True
    assert targets["llama-1b/fp32: >= 70% of the 20 B/element floor"]["value"] == pytest.approx(0.8)
    assert not any(name.startswith("gpt2-small/bf16") for name in targets)  # a failed row is not judged
    assert bench.evaluate_targets({"kind": "cpu", "results": []})["judged"] is False
    with pytest.raises(ValueError, match="record"):
        bench.record_path({"kind": "cpu", "provenance": {}})
