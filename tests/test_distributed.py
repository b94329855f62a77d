"""optbook's optimizers on DTensor parameters: FSDP2, tensor parallelism, a 2x2 mesh, DCP 3 -> 2 ranks.

Ranks are gloo processes on the CPU, started by ``torch.multiprocessing.spawn``
with a file rendezvous in a temporary directory (no TCP ports), running the
functions of ``tests/distributed_workers.py`` on a one-block transformer with
odd sizes (vocab 13, width 7, hidden 9, and a 1-row gate that leaves ranks
empty). Each spawn is one test, so ``pytest -n 2`` never starts one twice.

"Same gradients" compares the sharded optimizer with a plain-tensor copy
stepped with the gathered gradients (the optimizer alone); "single process"
compares with an independent one-process run (forward and backward included).
The issue's criterion is the parameters to 1e-5 relative in float32; the
error relative to the *update* is also bounded, loosely (1e-4), because one
float32 ulp of a parameter is already ~5e-6 of a 3-step update here.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

pytest.importorskip("torch.distributed")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("needs torch.distributed with gloo", allow_module_level=True)

sys.path.insert(0, os.path.dirname(__file__))
import distributed_workers as workers  # noqa: E402

from optbook.distributed.launch import run_ranks  # noqa: E402
from optbook.distributed.volume import adafactor_allreduce_floats  # noqa: E402

VALUE_TOL = 1e-5  # the issue: parameters to 1e-5 relative
UPDATE_TOL = 1e-4  # relative to the update: a few float32 ulps of the parameter


def _check_errors(errors: dict, what: str) -> None:
    for kind, per_param in errors.items():
        for name, (to_update, to_value) in per_param.items():
            assert to_value <= VALUE_TOL, f"{what} ({kind}): {name} differs by {to_value:.2e} of its value"
            if kind == "same_grads":
                assert to_update <= UPDATE_TOL, f"{what} ({kind}): {name} differs by {to_update:.2e} of its update"


def _check_counts(counts: list[dict], what: str, expected: dict) -> None:
    calls = [{k: v for k, v in c.items() if not k.endswith(" floats")} for c in counts]
    assert calls and all(c == expected for c in calls), f"{what}: collectives per step {counts}, expected {expected}"


def test_fsdp2_on_three_ranks_dcp_to_two_and_tensor_parallel(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    three, *others = run_ranks(workers.three_ranks, 3, ckpt)

    # Uneven shards: 13 rows -> 5/5/3, 7 -> 3/3/1, the 1-row gate -> 1/0/0.
    assert three["local_shapes"]["head.weight"] == (5, 7)
    assert three["local_shapes"]["gate.weight"] == (1, 7)
    assert set(three["placements"].values()) == {"(Shard(dim=0),)"}
    # Statistics are DTensors placed after their parameter: the row sums of a Shard(0) matrix are Shard(0),
    # its column sums (summed over the sharded dim) Replicate.
    assert three["state_placements"]["head.weight"] == {
        "R": "(Shard(dim=0),)", "C": "(Replicate(),)", "exp_avg": "(Shard(dim=0),)"}
    assert three["state_placements"]["head.bias"] == {"V": "(Shard(dim=0),)"}

    for name in ("adafactor", "lion", "sophia"):
        _check_errors(three["errors"][name], f"FSDP2 x3 {name}")
    # Two all-reduces per step for all parameters and both param groups; none for Lion and Sophia.
    _check_counts(three["counts"]["adafactor"], "FSDP2 x3 Adafactor", {"all_reduce": 2})
    # O(n + m) per matrix: the numbers all-reduced per step are those optbook.distributed.volume derives.
    shapes = {n: p.shape for n, p in workers.fresh_model().named_parameters()}
    derived = sum(adafactor_allreduce_floats(shapes))
    assert all(c["all_reduce floats"] == derived for c in three["counts"]["adafactor"]), (derived, three["counts"])
    _check_counts(three["counts"]["lion"], "FSDP2 x3 Lion", {})
    _check_counts(three["counts"]["sophia"], "FSDP2 x3 Sophia", {})

    # A NaN on one rank skips that matrix on every rank (and only it), as on one process.
    for r in (three, *others):
        assert r["nan_skips"] == {n: int(n == "head.weight") for n in r["nan_skips"]}, r["nan_skips"]
        assert r["nan_unchanged"] == {n: n == "head.weight" for n in r["nan_unchanged"]}, r["nan_unchanged"]

    # torch.optim.Adafactor crashes under FSDP2, as the issue says (an in-place op on a Partial DTensor).
    assert three["torch_adafactor"] is not None, "torch.optim.Adafactor now works under FSDP2: update the issue"
    assert "Partial" in three["torch_adafactor"] and "in-place" in three["torch_adafactor"], three["torch_adafactor"]

    # A Partial parameter: a clear error naming it and its place; nothing written.
    assert three["partial_error"] is not None
    assert "Partial(sum)" in three["partial_error"] and "parameter 1 of param group 0" in three["partial_error"]
    assert three["partial_untouched"]

    # Sophia's estimators on shards. Gauss-Newton-Bartlett takes one backward() through FSDP's hooks and
    # equals the one-process estimate (autograd.grad would find no path to the shards and return zeros);
    # Hutchinson, which differentiates twice, and a missing batch_rows are refused with the fix.
    for r in (three, *others):
        assert r["gnb_placements_match"] and r["grads_restored"]
        assert r["gnb_nonzero"] >= 8 and max(r["gnb_errors"]) <= VALUE_TOL, r["gnb_errors"]
        assert "gauss_newton_bartlett" in r["hutchinson_error"] and "DTensor" in r["hutchinson_error"]
        assert "batch_rows=" in r["gnb_rows_error"]

    two = run_ranks(workers.two_ranks, 2, ckpt)[0]
    # DCP: saved on 3 ranks after 3 steps, loaded on 2, resharded: the statistics equal the uninterrupted run's.
    assert two["dcp_steps"] == [3.0]
    assert two["dcp_state_placements"]["head.weight"]["C"] == "(Replicate(),)"
    assert max(two["dcp_state_errors"].values()) <= VALUE_TOL, two["dcp_state_errors"]
    _check_errors(two["dcp_errors"], "DCP 3 -> 2, continued")

    # Tensor parallelism: Colwise (Shard(0)), Rowwise (Shard(1), Replicate bias); emb and norm stay local.
    placements = two["tp_placements"]
    assert placements["fc1.weight"] == "(Shard(dim=0),)" and placements["fc2.weight"] == "(Shard(dim=1),)"
    assert placements["fc2.bias"] == "(Replicate(),)" and placements["emb.weight"] == "local"
    _check_errors(two["tp_errors"], "TP x2")
    _check_counts(two["tp_counts"], "TP x2", {"all_reduce": 2})

    # bfloat16 parameters under FSDP2 (statistics and momentum in float32). Rounding to nearest, the sharded
    # run is the one-process run bit for bit. Stochastic rounding draws its bits per shard, so the two runs
    # are different draws of the same rounding: a few spacings apart, and never identical.
    assert two["bf16_rtn_dtypes"] == ["torch.bfloat16/torch.float32"] == two["bf16_sr_dtypes"]
    assert max(two["bf16_rtn"].values()) == 0.0, two["bf16_rtn"]
    assert 0.0 < max(two["bf16_sr"].values()) <= 8.0, two["bf16_sr"]


def test_fsdp2_with_tensor_parallel_on_a_2x2_mesh():
    four = run_ranks(workers.four_ranks, 4)[0]
    placements = four["placements"]
    assert placements["fc1.weight"] == "(_StridedShard(dim=0, sf=2), Shard(dim=0))"
    assert placements["fc2.weight"] == "(Shard(dim=0), Shard(dim=1))"
    assert placements["fc2.bias"] == "(Shard(dim=0), Replicate())"
    assert placements["emb.weight"] == "(Shard(dim=0),)"  # on the dp submesh: shares the root's group
    _check_errors(four["errors"], "FSDP2 x TP 2x2")
    _check_counts(four["counts"], "FSDP2 x TP 2x2", {"all_reduce": 2})
    shapes = {n: p.shape for n, p in workers.fresh_model().named_parameters()}
    assert all(c["all_reduce floats"] == sum(adafactor_allreduce_floats(shapes)) for c in four["counts"])


def test_statistic_placements_and_local_path_untouched():
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    from optbook.distributed.adafactor import step_dtensors
    from optbook.distributed.placement import drop_dim_placements
    from optbook.optim import Adafactor

    assert drop_dim_placements((Shard(0),), 1) == (Shard(0),)
    assert drop_dim_placements((Shard(0),), 0) == (Replicate(),)
    assert drop_dim_placements((Shard(0), Shard(1)), 1) == (Shard(0), Replicate())
    assert drop_dim_placements((Shard(2), Replicate()), 0) == (Shard(1), Replicate())
    assert drop_dim_placements((_StridedShard(0, split_factor=2), Shard(0)), 1) == (
        _StridedShard(0, split_factor=2), Shard(0))
    # Without DTensors the dispatch hands back the very same work list: the local path is unchanged.
    p = torch.nn.Parameter(torch.ones(3, 2))
    p.grad = torch.ones(3, 2)
    opt = Adafactor([p])
    work = [(opt.param_groups[0], [p])]
    assert step_dtensors(opt, work) is work
