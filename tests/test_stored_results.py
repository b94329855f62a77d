"""optbook.tasks.stored_results: compute once, verify the checksum, re-check a live slice."""

import hashlib
import json

import numpy as np
import pytest

from optbook.tasks.stored_results import (
    RESULTS_FORMAT,
    StoredResultsCorrupt,
    StoredResultsMismatch,
    payload_sha256,
    stored_results,
)


def _experiment(scale=1.0, calls=None):
    """A toy "experiment": geometric decay curves for three seeds; the live slice is seed 0's first 5 values."""

    def curve(seed, n):
        return [scale * (0.9 ** k) * (1 + seed / 10) for k in range(n)]

    def compute():
        if calls is not None:
            calls.append("compute")
        return {"curves": {str(s): np.array(curve(s, 50)) for s in range(3)}, "steps": np.int64(50)}

    def check():
        if calls is not None:
            calls.append("check")
        return {"seed0": curve(0, 5)}

    def expected(results):
        return {"seed0": results["curves"]["0"][:5]}

    return compute, check, expected


def test_computes_then_loads_and_rechecks(tmp_path):
    calls = []
    compute, check, expected = _experiment(calls=calls)
    first = stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)
    assert first.recomputed and calls == ["compute", "check"]
    assert first.results["steps"] == 50 and len(first.results["curves"]["2"]) == 50
    calls.clear()
    second = stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)
    assert not second.recomputed and calls == ["check"]
    assert second.sha256 == first.sha256 and second.max_rel_diff == 0.0
    # The checksum is SHA-256 of the canonical JSON of key and results, computed here independently.
    record = json.loads((tmp_path / "x.json").read_text())
    canonical = json.dumps({"key": {"n": 50}, "results": record["results"]}, sort_keys=True, separators=(",", ":"))
    assert record["sha256"] == hashlib.sha256(canonical.encode()).hexdigest() == payload_sha256({"n": 50}, record["results"])
    assert record["format"] == RESULTS_FORMAT


def test_stale_file_raises_and_names_the_fix(tmp_path):
    compute, check, expected = _experiment()
    stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)
    _, changed_check, _ = _experiment(scale=1.001)
    with pytest.raises(StoredResultsMismatch, match="OPTBOOK_RECOMPUTE=1"):
        stored_results(tmp_path / "x.json", {"n": 50}, compute, changed_check, expected)
    # Within tolerance it passes and reports the relative difference (1e-3 here).
    res = stored_results(tmp_path / "x.json", {"n": 50}, compute, changed_check, expected, rtol=2e-3)
    assert res.max_rel_diff == pytest.approx(1e-3, rel=1e-9)


def test_without_expected_the_recorded_check_is_the_reference(tmp_path):
    compute, check, _ = _experiment()
    stored_results(tmp_path / "x.json", {"n": 50}, compute, check)
    assert not stored_results(tmp_path / "x.json", {"n": 50}, compute, check).recomputed
    _, changed_check, _ = _experiment(scale=2.0)
    with pytest.raises(StoredResultsMismatch):
        stored_results(tmp_path / "x.json", {"n": 50}, compute, changed_check)


def test_hand_edited_file_fails_its_checksum(tmp_path):
    compute, check, expected = _experiment()
    stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)
    record = json.loads((tmp_path / "x.json").read_text())
    record["results"]["curves"]["1"][10] = 0.5
    (tmp_path / "x.json").write_text(json.dumps(record))
    with pytest.raises(StoredResultsCorrupt, match="SHA-256"):
        stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)


def test_new_key_or_environment_recomputes(tmp_path, monkeypatch):
    calls = []
    compute, check, expected = _experiment(calls=calls)
    stored_results(tmp_path / "x.json", {"n": 50}, compute, check, expected)
    calls.clear()
    assert stored_results(tmp_path / "x.json", {"n": 51}, compute, check, expected).recomputed
    monkeypatch.setenv("OPTBOOK_RECOMPUTE", "1")
    assert stored_results(tmp_path / "x.json", {"n": 51}, compute, check, expected).recomputed
    assert calls.count("compute") == 2


def test_slice_that_is_not_part_of_the_results_is_caught_at_compute_time(tmp_path):
    compute, check, _ = _experiment()
    with pytest.raises(StoredResultsMismatch):
        stored_results(tmp_path / "x.json", {"n": 50}, compute, check, lambda r: {"seed0": r["curves"]["1"][:5]})
    assert not (tmp_path / "x.json").exists()


def test_non_finite_values_round_trip(tmp_path):
    def compute():
        return {"loss": [1.0, float("nan"), float("inf")]}

    def check():
        return {"loss": [1.0, float("nan")]}

    res = stored_results(tmp_path / "x.json", {}, compute, check, lambda r: {"loss": r["loss"][:2]})
    assert res.results["loss"] == [1.0, "nan", "inf"]
    assert not stored_results(tmp_path / "x.json", {}, compute, check, lambda r: {"loss": r["loss"][:2]}).recomputed


def test_structure_change_is_a_mismatch(tmp_path):
    compute, check, _ = _experiment()
    stored_results(tmp_path / "x.json", {"n": 50}, compute, check)
    with pytest.raises(StoredResultsMismatch, match="structure"):
        stored_results(tmp_path / "x.json", {"n": 50}, compute, lambda: {"seed0": [1.0]})


def test_bad_arguments(tmp_path):
    compute, check, expected = _experiment()
    with pytest.raises(TypeError, match="key"):
        stored_results(tmp_path / "x.json", [1], compute, check)
    with pytest.raises(TypeError, match="compute"):
        stored_results(tmp_path / "x.json", {}, None, check)
    with pytest.raises(TypeError, match="expected"):
        stored_results(tmp_path / "x.json", {}, compute, check, expected=3)
    with pytest.raises(ValueError, match="rtol"):
        stored_results(tmp_path / "x.json", {}, compute, check, rtol=-1)
    with pytest.raises(TypeError, match="cannot store"):
        stored_results(tmp_path / "x.json", {}, lambda: {"a": object()}, check)
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(StoredResultsCorrupt, match="not valid JSON"):
        stored_results(tmp_path / "y.json", {}, compute, check)
    (tmp_path / "z.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoredResultsCorrupt, match="not a stored-results file"):
        stored_results(tmp_path / "z.json", {}, compute, check)
    assert json.loads((tmp_path / "z.json").read_text()) == {"format": "other"}


def test_relative_paths_resolve_from_the_repository_root(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "book" / "part1").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "book" / "part1")
    compute, check, expected = _experiment()
    res = stored_results("book/data/x.json", {"n": 50}, compute, check, expected)
    assert res.path == tmp_path / "book" / "data" / "x.json" and res.path.exists()


def test_a_relative_path_outside_the_repository_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compute, check, expected = _experiment()
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        stored_results("book/data/x.json", {"n": 50}, compute, check, expected)
    assert not (tmp_path / "book").exists()
