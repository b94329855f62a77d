"""optbook.tasks.stored_runs: stored full runs are re-checked live, and a stale file is refused."""

from __future__ import annotations

import json

import pytest

from optbook.tasks import stored_runs
from optbook.tasks.charlm import TrainingRun


def quadratic_runner(rate: float, calls: list[int]):
    """A deterministic 'training run': x <- x - rate * x from x = 1, loss x^2, evaluated every 2 steps."""

    def run(steps: int):
        calls.append(steps)
        x, out = 1.0, TrainingRun(name=f"rate {rate}", val_steps=[0], val_loss=[1.0])
        for step in range(1, steps + 1):
            out.train_loss.append(x * x)
            x -= rate * x
            if step % 2 == 0 or step == steps:
                out.val_steps.append(step)
                out.val_loss.append(x * x)
        return out, {"x": x}

    return run


KEY = {"problem": "x^2", "rates": [0.1, 0.3]}


def runners(calls, rates=(0.1, 0.3)):
    return {f"r{r}": quadratic_runner(r, calls) for r in rates}


def test_first_call_computes_in_full_and_stores(tmp_path):
    calls: list[int] = []
    out = stored_runs.run_or_load(tmp_path / "runs.json", KEY, runners(calls), steps=9, check_steps=3, recompute=False)
    assert out.recomputed and calls == [9, 9]
    data = json.loads((tmp_path / "runs.json").read_text())
    assert data["format"] == stored_runs.FORMAT and data["steps"] == 9
    assert len(data["runs"]["r0.1"]["train_loss"]) == 9
    assert out.runs["r0.3"].val_steps == [0, 2, 4, 6, 8, 9]


def test_second_call_loads_and_trains_only_the_check_prefix(tmp_path):
    path = tmp_path / "runs.json"
    full = stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3, recompute=False)
    calls: list[int] = []
    out = stored_runs.run_or_load(path, KEY, runners(calls), steps=9, check_steps=3, recompute=False)
    assert not out.recomputed and calls == [3, 3]
    assert out.max_rel_diff == 0.0
    assert out.runs["r0.1"].train_loss == full.runs["r0.1"].train_loss  # exact round trip through JSON
    assert out.extras["r0.1"]["x"] == pytest.approx(0.9**3)  # the live run's own result


def test_a_file_from_different_code_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3, recompute=False)
    data = json.loads(path.read_text())
    data["runs"]["r0.3"]["train_loss"][1] *= 1 + 1e-6  # what a change of code would do to a stored curve
    path.write_text(json.dumps(data))
    before = path.read_text()
    with pytest.raises(stored_runs.StoredRunsMismatch, match=r"'r0.3'.*OPTBOOK_RECOMPUTE=1"):
        stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3, recompute=False)
    assert path.read_text() == before  # a refusal writes nothing


def test_a_changed_stored_validation_point_inside_the_prefix_is_caught(tmp_path):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=4, recompute=False)
    data = json.loads(path.read_text())
    data["runs"]["r0.1"]["val_loss"][2] += 1e-3  # step 4, inside the checked prefix
    path.write_text(json.dumps(data))
    with pytest.raises(stored_runs.StoredRunsMismatch):
        stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=4, recompute=False)


def test_a_different_experiment_is_recomputed(tmp_path):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3, recompute=False)
    for key, steps, rates in [({**KEY, "rates": [0.1, 0.2]}, 9, (0.1, 0.3)), (KEY, 10, (0.1, 0.3)), (KEY, 9, (0.1,))]:
        calls: list[int] = []
        out = stored_runs.run_or_load(path, key, runners(calls, rates), steps=steps, check_steps=3, recompute=False)
        assert out.recomputed and calls == [steps] * len(rates)


def test_the_environment_variable_forces_a_recompute(tmp_path, monkeypatch):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3)
    monkeypatch.setenv(stored_runs.RECOMPUTE_ENV, "1")
    calls: list[int] = []
    assert stored_runs.run_or_load(path, KEY, runners(calls), steps=9, check_steps=3).recomputed and calls == [9, 9]


@pytest.mark.parametrize("check_steps", [0, 10])
def test_check_steps_outside_the_run_is_refused(tmp_path, check_steps):
    with pytest.raises(ValueError, match="check_steps"):
        stored_runs.run_or_load(tmp_path / "r.json", KEY, runners([]), steps=9, check_steps=check_steps)
    assert not (tmp_path / "r.json").exists()


def test_a_file_of_another_format_is_refused(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(stored_runs.StoredRunsMismatch, match="format"):
        stored_runs.run_or_load(path, KEY, runners([]), steps=9, check_steps=3, recompute=False)


def test_the_practice_chapter_store_matches_its_experiment():
    """The committed file has the runs the chapter asks for, full length, finite."""
    from pathlib import Path

    data = json.loads((Path(__file__).resolve().parents[1] / "book/data/practice_ablation.json").read_text())
    assert data["format"] == stored_runs.FORMAT
    configs = ("AdamW", "Adafactor", "beta1 0.9", "unfactored", "no clipping", "absolute step")
    assert len(data["key"]["seeds"]) >= 3
    assert set(data["runs"]) == {f"{c}, seed {s}" for c in configs for s in data["key"]["seeds"]}
    for run in data["runs"].values():
        assert len(run["train_loss"]) == data["steps"] and run["val_steps"][-1] == data["steps"]
        assert run["nonfinite_step"] is None
