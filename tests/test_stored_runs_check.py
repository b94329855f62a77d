"""optbook.tasks.stored_runs.run_or_load(check=...): only the named runs are re-trained live on load."""

from __future__ import annotations

import json

import pytest

from optbook.tasks import stored_runs
from optbook.tasks.charlm import TrainingRun


def seeded_runner(seed: int, calls: list[tuple[int, int]]):
    """x <- 0.8 x from x = 1 + seed; loss x^2 at every step, evaluated at the start and the end."""

    def run(steps: int):
        calls.append((seed, steps))
        x, out = 1.0 + seed, TrainingRun(name=f"seed {seed}", val_steps=[0], val_loss=[(1.0 + seed) ** 2])
        for _ in range(steps):
            out.train_loss.append(x * x)
            x *= 0.8
        out.val_steps.append(steps)
        out.val_loss.append(x * x)
        return out, {"x": x}

    return run


KEY = {"problem": "x^2", "seeds": [0, 1, 2]}


def runners(calls):
    return {f"seed {s}": seeded_runner(s, calls) for s in (0, 1, 2)}


def test_load_retrains_only_the_named_runs(tmp_path):
    path = tmp_path / "runs.json"
    calls: list[tuple[int, int]] = []
    first = stored_runs.run_or_load(path, KEY, runners(calls), steps=6, check_steps=2, recompute=False, check=["seed 0"])
    assert first.recomputed and sorted(calls) == [(0, 6), (1, 6), (2, 6)] and set(first.extras) == {"seed 0", "seed 1", "seed 2"}
    calls.clear()
    out = stored_runs.run_or_load(path, KEY, runners(calls), steps=6, check_steps=2, recompute=False, check=["seed 0"])
    assert not out.recomputed and calls == [(0, 2)]
    assert set(out.runs) == {"seed 0", "seed 1", "seed 2"} and set(out.extras) == {"seed 0"}
    assert out.extras["seed 0"]["x"] == pytest.approx(0.64)
    assert out.runs["seed 2"].train_loss[5] == pytest.approx(9 * 0.8**10)  # the stored full run, not the live prefix


def test_the_default_still_checks_every_run(tmp_path):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=6, check_steps=2, recompute=False)
    calls: list[tuple[int, int]] = []
    out = stored_runs.run_or_load(path, KEY, runners(calls), steps=6, check_steps=2, recompute=False)
    assert calls == [(0, 2), (1, 2), (2, 2)] and set(out.extras) == set(out.runs)


def test_a_named_run_that_drifted_is_refused(tmp_path):
    path = tmp_path / "runs.json"
    stored_runs.run_or_load(path, KEY, runners([]), steps=6, check_steps=2, recompute=False)
    data = json.loads(path.read_text())
    data["runs"]["seed 1"]["train_loss"][1] *= 1 + 1e-6
    path.write_text(json.dumps(data))
    stored_runs.run_or_load(path, KEY, runners([]), steps=6, check_steps=2, recompute=False, check=["seed 0"])  # not checked
    with pytest.raises(stored_runs.StoredRunsMismatch, match="'seed 1'"):
        stored_runs.run_or_load(path, KEY, runners([]), steps=6, check_steps=2, recompute=False, check=["seed 1"])


@pytest.mark.parametrize("check", [[], ["seed 7"], "seed 0"])
def test_bad_check_is_refused_before_anything_runs(tmp_path, check):
    calls: list[tuple[int, int]] = []
    with pytest.raises(ValueError, match="check must be"):
        stored_runs.run_or_load(tmp_path / "r.json", KEY, runners(calls), steps=6, check_steps=2, check=check)
    assert calls == [] and not (tmp_path / "r.json").exists()
