"""Statements of Part II, pinned by independent computations (closed forms, properties, upstream code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optbook
from optbook.analysis import claims_part2 as cp
from optbook.analysis import relative_growth as rg
from optbook.analysis import step_memory as sm
from optbook.analysis import wiki
from optbook.problems import worked_example
from optbook.reference import adafactor as af
from optbook.reference import adam
from optbook.reference import instability as ins


# --- the tight growth bound -------------------------------------------------------------------------------

def test_tight_bound_closed_form_from_zero():
    # rho = 1e-2, d = 1, eps2 = 1e-3: additive t * 1e-5 up to t = 100, then a factor 1.01 per step
    for t in (1, 50, 99):
        assert rg.tight_scale_bound(t) == pytest.approx(t * 1e-5, rel=1e-12)
    for t in (150, 400, 563):
        assert rg.tight_scale_bound(t) == pytest.approx(1e-3 * 1.01 ** (t - 100), rel=1e-9)


def test_zero_start_phases_match_logarithms():
    phases = rg.zero_start_phases(0.1)
    assert phases == {"additive": 100, "multiplicative": math.ceil(math.log(100) / math.log(1.01)), "total": 563}
    assert rg.zero_start_phases(0.05, eps2=1e-5)["multiplicative"] == math.ceil(math.log(5000) / math.log(1.01))


def test_tight_bound_equals_product_bound_above_eps2_and_is_below_it_otherwise():
    ts = np.arange(0, 2000, 7)
    assert np.allclose(rg.tight_scale_bound(ts, 0.2), ins.parameter_scale_bound(ts, 0.2), rtol=1e-9)
    zero_tight, zero_product = rg.tight_scale_bound(ts[1:], 0.0), ins.parameter_scale_bound(ts[1:], 0.0)
    assert np.all(zero_tight < zero_product)
    # the gap is the additive phase: (1.01)^100 = 2.70... at any t past it
    assert zero_product[-1] / zero_tight[-1] == pytest.approx(1.01**100, rel=1e-9)


def test_tight_bound_attained_by_reference_adafactor_and_never_exceeded():
    path = rg.adversarial_rms_path((5, 3), 600)
    bound = rg.tight_scale_bound(np.arange(601))
    assert np.max(np.abs(path - bound) / np.maximum(bound, 1e-300)) < 1e-12
    assert int(np.argmax(path >= 0.1)) == 563
    rng = np.random.default_rng(1)
    x, state = np.zeros((4, 6)), af.AdafactorState()
    for t in range(1, 300):
        x = af.step(x, rng.normal(size=(4, 6)) * 10.0 ** rng.integers(-4, 4), state)
        assert af.rms(x) <= rg.tight_scale_bound(t) * (1 + 1e-12)


def test_steps_to_reach_and_errors():
    assert rg.steps_to_reach(0.5, 0.5) == 0
    assert rg.steps_to_reach(1e-3) == 100
    with pytest.raises(ValueError, match="eps2"):
        rg.tight_scale_bound(3, eps2=0.0)
    with pytest.raises(ValueError, match="d must"):
        rg.tight_scale_bound(3, d=float("inf"))
    with pytest.raises(ValueError, match="whole number"):
        rg.tight_scale_bound(2.5)
    with pytest.raises(ValueError, match="rms_x0"):
        rg.tight_scale_bound(2, -1.0)
    with pytest.raises(ValueError, match="t_max"):
        rg.steps_to_reach(10.0, t_max=5)
    with pytest.raises(ValueError, match="above eps2"):
        rg.zero_start_phases(1e-4)
    with pytest.raises(TypeError, match="AdafactorHyperparameters"):
        rg.adversarial_rms_path((2,), 3, hp={"d": 1})
    with pytest.raises(ValueError, match="shape"):
        rg.adversarial_rms_path((0, 2), 3)


# --- the worked example's exercise: the slipped second moment ---------------------------------------------

def test_slipped_run_ratio_first_exceeds_two_at_step_40():
    p, hp = worked_example(), af.AdafactorHyperparameters()
    _, good = af.run(p.x0, p.grad, 60, hp, record=True)
    _, slip = af.run(p.x0, p.grad, 60, hp, record=True, second_moment=wiki.printed_second_moment)
    size_good = np.array([af.rms(h["U_hat"]) for h in good.history])
    size_slip = np.array([af.rms(h["U_hat"]) for h in slip.history])
    ratio = size_slip / size_good
    t2 = int(np.argmax(ratio > 2)) + 1
    assert t2 == 40
    # the slipped run is still clipped there, so its update has RMS d = 1 and the ratio is 1/RMS(U_hat) of the correct run
    assert af.rms(slip.history[t2 - 1]["U"]) > hp.d
    assert ratio[t2 - 1] == pytest.approx(1 / size_good[t2 - 1], rel=1e-12)
    k_t = slip.history[t2 - 1]["R"].sum() / p.x0.size
    assert 1 / math.sqrt(k_t) > 5  # far from the ratio: 1/sqrt(k_t) does not describe it


# --- transient memory of a step ----------------------------------------------------------------------------

def test_peak_allocated_bytes_counts_a_known_allocation():
    out = sm.peak_allocated_bytes(lambda: torch.zeros(100, 50, dtype=torch.float64))
    assert out["peak_bytes"] == 100 * 50 * 8 == out["largest_bytes"]
    # two temporaries alive at once: the peak is their sum
    out = sm.peak_allocated_bytes(lambda: torch.ones(1000, dtype=torch.float64) + torch.ones(1000, dtype=torch.float64))
    assert out["peak_bytes"] >= 3 * 8000
    with pytest.raises(TypeError, match="compute"):
        sm.peak_allocated_bytes(3)


def test_torch_adafactor_forms_the_n_by_m_second_moment_and_optbook_does_not():
    shape = (768, 3072)  # optbook works in slabs of 2^17 entries: 18 of them here
    torch_mem = sm.optimizer_step_memory(torch.optim.Adafactor, shape)
    assert torch_mem["largest_op"] == "aten::mm" and torch_mem["largest_bytes"] == 768 * 3072 * 8
    assert torch_mem["peak_bytes"] >= torch_mem["array_bytes"]
    ours = sm.optimizer_step_memory(optbook.Adafactor, shape)
    assert ours["largest_bytes"] < ours["array_bytes"] and ours["peak_bytes"] < 0.5 * ours["array_bytes"]
    with pytest.raises(ValueError, match="shape"):
        sm.optimizer_step_memory(torch.optim.Adafactor, ())
    with pytest.raises(TypeError, match="make_optimizer"):
        sm.optimizer_step_memory(None, (2, 2))


# --- epsilon_1 ---------------------------------------------------------------------------------------------

def test_epsilon1_departure_closed_form():
    rows = cp.epsilon1_departure([1e-15, 1e-16, 1e-6, 0.0])
    assert rows[0]["U_eps1"] == pytest.approx(1 / math.sqrt(2), rel=1e-12)  # g^2 = eps1
    assert rows[1]["U_eps1"] == pytest.approx(1e-16 / math.sqrt(1e-32 + 1e-30), rel=1e-12)
    assert rows[2]["departure"] == 0.0  # 1e-12 + 1e-30 rounds to 1e-12
    assert rows[3]["U_eps1"] == 0.0 and math.isnan(rows[3]["U_free"])
    with pytest.raises(ValueError, match="magnitudes"):
        cp.epsilon1_departure([-1.0])
    with pytest.raises(ValueError, match="eps1"):
        cp.epsilon1_departure([1.0], eps1=0.0)


# --- Adam's first step ---------------------------------------------------------------------------------------

def test_adam_first_step_exactly_sign_and_uncorrected_is_3_16_times_larger():
    g = np.array([3.0, -0.2, 1e-3])
    lr, b1, b2 = 1e-3, 0.9, 0.999
    m, v = adam.first_moment(np.zeros(3), g, b1), adam.second_moment(np.zeros(3), g, b2)
    corrected = lr * adam.adam_direction(adam.bias_correction(m, b1, 1), adam.bias_correction(v, b2, 1), 0.0)
    uncorrected = lr * adam.adam_direction(m, v, 0.0)
    assert np.allclose(corrected, lr * np.sign(g), rtol=1e-12, atol=0)
    assert np.allclose(uncorrected / (lr * np.sign(g)), (1 - b1) / math.sqrt(1 - b2), rtol=1e-12)
    assert (1 - b1) / math.sqrt(1 - b2) == pytest.approx(3.1623, abs=1e-4)
    # the combined factor 0.316 is the ratio of the two: it shrinks m/sqrt(v), not the nominal step
    assert adam.combined_step_size(1.0, b1, b2, 1) == pytest.approx(math.sqrt(1 - b2) / (1 - b1), rel=1e-12)
    # the same against torch.optim.Adam (eps = 0)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=0.0)
    p.grad = torch.tensor(g)
    opt.step()
    assert np.allclose(-p.detach().numpy(), corrected, rtol=1e-12, atol=0)


# --- the wiki's prose ----------------------------------------------------------------------------------------

def test_wiki_prose_checks():
    assert cp.decay_at_start((1, 2))[1] == 0.0
    assert cp.decay_at_start((2,))[2] == pytest.approx(1 - 2**-0.8)
    assert cp.update_ignores_gradient_scale() < 1e-12
    jump = cp.clipping_after_scale_jump()
    assert jump["steady"] == pytest.approx(1.0, abs=1e-9) and jump["jump"] > 2
    e2 = cp.eps2_changes_only_step_size()
    assert e2["U_same"] and e2["alpha_at_zero"] == pytest.approx([1e-5, 1e-3])
    assert cp.torch_optimizer_class_exists("Adafactor") and not cp.torch_optimizer_class_exists("AdaFactor")
    assert cp.factored_second_moment_shape(2, 7) == (2, 7)
    rows = cp.wiki_prose_audit()
    assert [r["verdict"].split(":")[0].split(",")[0] for r in rows] == ["false", "false", "false", "true", "false", "true with a caveat"]
    with pytest.raises(TypeError, match="name"):
        cp.torch_optimizer_class_exists("")
    with pytest.raises(ValueError, match="n and m"):
        cp.factored_second_moment_shape(0, 3)
    with pytest.raises(ValueError, match="rms_x"):
        cp.eps2_changes_only_step_size(rms_x=1e-4)
    with pytest.raises(ValueError, match="t_jump"):
        cp.clipping_after_scale_jump(t_jump=1)
    with pytest.raises(ValueError, match="scale"):
        cp.update_ignores_gradient_scale(scale=-1.0)


# --- the paper's algorithm numbers -------------------------------------------------------------------------

def test_algorithm_boxes_are_numbered_as_in_the_paper():
    import importlib
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "book" / "part2"
    for path in sorted(root.glob("0[1-8]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        # Algorithm 4 of the paper is for matrices, Algorithm 5 for vectors
        for m in re.finditer(r"Algorithm ([45])\b", text):
            window = text[max(0, m.start() - 60): m.end() + 80]
            assert ("matri" if m.group(1) == "4" else "vector") in window, (path.name, window)
        for target in re.findall(r"\{py:func\}`~?([\w.]+)`", text):
            module, name = target.rsplit(".", 1)
            assert hasattr(importlib.import_module(module), name), (path.name, target)
    vec = (root / "02_vector_algorithm.ipynb").read_text()
    mat = (root / "03_factored_second_moment.ipynb").read_text()
    assert "Algorithm 5 of Shazeer & Stern (2018): Adafactor for weight vectors" in vec and ":label: alg-adafactor-vector" in vec
    assert "Algorithm 4 of Shazeer & Stern (2018): Adafactor for weight matrices" in mat and ":label: alg-adafactor-matrix" in mat
