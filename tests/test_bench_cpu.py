"""The CPU side of ``python -m optbook.bench``: the 30.3M set, the CPU rows, the byte rates against fused AdamW.

Nothing here is a timing test: it checks what a CPU run measures and records,
not how fast anything is. The parameter count of ``gpt2-30m`` is checked
against a hand count of a GPT-2 block, not against the shape builder.
"""

from __future__ import annotations

import json

import pytest
import torch

from optbook import bench
from optbook.bench import __main__ as cli
from optbook.bench.shapes import ALL_MODELS, CPU_MODELS, MODELS, parameter_count, parameter_shapes


def test_gpt2_30m_has_the_hand_counted_size():
    # A GPT-2 block of width d: two LayerNorms (2d each), qkv (d x 3d + 3d), attention out (d x d + d),
    # MLP (d x 4d + 4d, 4d x d + d): 12 d^2 + 13 d. Embeddings V x d and T x d, final LayerNorm 2d (head tied).
    d, layers, vocab, ctx = 384, 6, 50257, 1024
    expected = vocab * d + ctx * d + layers * (12 * d * d + 13 * d) + 2 * d
    shapes = parameter_shapes("gpt2-30m")
    assert parameter_count(shapes) == expected == 30_339_456
    assert "gpt2-30m" in CPU_MODELS and "gpt2-30m" not in MODELS and "gpt2-30m" in ALL_MODELS
    assert parameter_count(parameter_shapes("gpt2-30m", small=True)) < 5_000_000


def test_the_default_cpu_rows():
    keys = [m.key for m in bench.applicable_methods(torch.device("cpu"))]
    assert keys == ["optbook-cpu-fused", "optbook-foreach", "optbook", "torch-adafactor", "adamw-foreach",
                    "adamw-fused"]


def test_cpu_run_reports_byte_rates_against_fused_adamw(tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba")
    from optbook.optim import adafactor as A

    monkeypatch.setattr(A, "CPU_FUSED_BACKEND", "numba")  # not the Triton interpreter that conftest may select
    monkeypatch.delenv("OPTBOOK_TIMING_SMOKE", raising=False)
    path = tmp_path / "cpu.json"
    threads = torch.get_num_threads()
    try:
        code = cli.main([
            "--device", "cpu", "--models", "gpt2-30m", "--dtypes", "fp32", "--threads", "1",
            "--methods", "optbook-cpu-fused", "optbook-foreach", "adamw-fused",
            "--warmup", "1", "--repeats", "3", "--output", str(path), "--quiet",
        ])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    table = capsys.readouterr().out
    assert table.startswith("CPU RUN") and "B/s vs AdamW(fused)" in table and "3-stream" in table
    record = json.loads(path.read_text())
    prov = record["provenance"]
    for key in ("date_utc", "cpu", "torch", "numba", "numpy", "python", "command"):
        assert prov[key], key
    assert prov["torch_threads"] == 1
    stream = record["stream_bandwidth"]
    assert stream["bytes_per_s"] > 0 and stream["bytes_per_call"] % 12 == 0
    (case,) = record["results"]
    assert case["model"] == "gpt2-30m"
    assert case["parameters"] == parameter_count(parameter_shapes("gpt2-30m", small=True))
    rows = {r["method"]: r for r in case["rows"]}
    assert set(rows) == {"optbook-cpu-fused", "optbook-foreach", "adamw-fused"}
    assert rows["adamw-fused"]["byte_rate_vs_adamw_fused"] == 1.0
    assert "paired t/AdamW(fused)" in table
    assert rows["adamw-fused"]["paired_ratio_vs"]["adamw-fused"]["median"] == 1.0
    for r in rows.values():
        p = r["paired_ratio_vs"]["adamw-fused"]
        assert p["rounds"] == 3 and p["q1"] <= p["median"] <= p["q3"]
    for r in rows.values():
        # The byte rate relative to AdamW's is the ratio of (bytes / time): check it from the row's own fields.
        rate = r["model_bytes"] / r["median_s"]
        base = rows["adamw-fused"]["model_bytes"] / rows["adamw-fused"]["median_s"]
        assert r["byte_rate_vs_adamw_fused"] == pytest.approx(rate / base, rel=1e-12)
    # Bytes per element of the exact schedules: 20 (+ a little for the statistics) against AdamW's 28.
    assert 20 <= rows["optbook-cpu-fused"]["model_bytes_per_element"] < 21
    assert rows["adamw-fused"]["model_bytes_per_element"] == 28
