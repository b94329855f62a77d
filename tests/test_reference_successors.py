"""NumPy references of Adafactor's successors: properties, hand computations, upstream cross-checks, bad input."""

import numpy as np
import pytest
import torch

from optbook.reference import adam, adam_mini, blockwise_quantised as bq, came, galore, muon
from optbook.reference import schedule_free as sf, shampoo, sm3
from optbook.tasks import successor_runs as sr

pytest.importorskip("pytorch_optimizer")


def test_sm3_on_a_vector_is_adagrad():
    rng = np.random.default_rng(0)
    x, state, acc = rng.standard_normal(6), None, np.zeros(6)
    x_ada = x.copy()
    for _ in range(5):
        g = rng.standard_normal(6)
        x, state = sm3.sm3_step(x, g, state, lr=0.1, eps=0.0)
        acc += g * g
        x_ada = x_ada - 0.1 * g / np.sqrt(acc)
    np.testing.assert_allclose(x, x_ada, rtol=1e-14)


def test_sm3_bounds_adagrad_from_both_sides():
    r = sr.accumulator_comparison(n=9, m=5, steps=12, seed=3)
    assert (r["gamma"] <= r["nu"]).all() and (r["nu"] <= r["min_cover"]).all()
    assert (r["nu"] <= r["upper"] * (1 + 1e-12)).all()
    assert len(sm3.init_sm3_state(np.zeros((2, 3, 4))).accumulators) == 3


def test_came_first_step_on_a_rank_one_square():
    rng = np.random.default_rng(1)
    g = np.outer(rng.standard_normal(5), rng.standard_normal(4))
    x0 = rng.standard_normal((5, 4))
    x1, state = came.came_step(x0, g, lr=1e-3)
    np.testing.assert_allclose(np.abs(x1 - x0), 1e-3 * 0.1 / (0.9 * np.sqrt(1e-4)), rtol=1e-9)
    assert state.rs.shape == (5,) and state.cs.shape == (4,)


def test_adam_mini_with_one_block_per_entry_is_adamw():
    rng = np.random.default_rng(2)
    x = x_ref = rng.standard_normal((3, 4))
    s = s_ref = None
    for _ in range(4):
        g = rng.standard_normal((3, 4))
        x, s = adam_mini.adam_mini_step(x, g, s, blocks=12, lr=1e-2)
        x_ref, s_ref = adam.adamw_step(x_ref, g, s_ref, lr=1e-2, weight_decay=0.0)
    np.testing.assert_allclose(x, x_ref, rtol=1e-13)
    assert adam_mini.blocks_for("h.0.attn.c_attn.weight", (768, 2304), 12) == 36


def test_galore_projector_is_orthonormal_and_state_is_low_rank():
    g = np.random.default_rng(3).standard_normal((10, 6))
    p = galore.galore_projector(g, 3)
    np.testing.assert_allclose(p @ p.T, np.eye(3), atol=1e-12)
    _, state = galore.galore_step(np.zeros((10, 6)), g, rank=3)
    assert state.m.shape == (10, 3) and state.p.shape == (3, 6)
    _, state = galore.galore_step(np.zeros((6, 10)), g.T, rank=3)
    assert state.m.shape == (3, 10) and state.p.shape == (6, 3)


def test_shampoo_inverse_root_against_an_eigendecomposition():
    a = np.random.default_rng(4).standard_normal((6, 6))
    spd = a @ a.T + np.eye(6)
    w, q = np.linalg.eigh(spd)
    np.testing.assert_allclose(shampoo.inverse_root(spd, 4), (q * w ** -0.25) @ q.T, rtol=1e-10, atol=1e-12)


def test_newton_schulz_acts_on_singular_values_only():
    rng = np.random.default_rng(5)
    u, _ = np.linalg.qr(rng.standard_normal((7, 4)))
    v, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    s = np.array([1.0, 0.5, 0.1, 0.01])
    a_mat = (u * s) @ v.T
    sig = s / np.linalg.norm(s)  # the Frobenius norm of A is the norm of its singular values
    ca, cb, cc = muon.MUON_COEFFICIENTS
    for _ in range(5):
        sig = ca * sig + cb * sig**3 + cc * sig**5
    np.testing.assert_allclose(muon.newton_schulz(a_mat), (u * sig) @ v.T, atol=1e-12)
    np.testing.assert_allclose(muon.polar_factor(a_mat), u @ v.T, atol=1e-12)


def test_schedule_free_matches_the_three_sequence_form():
    rng = np.random.default_rng(6)
    y = rng.standard_normal(5)
    z, x, v, b1, b2, lr, wsum = y.copy(), y.copy(), np.zeros(5), 0.9, 0.999, 0.01, 0.0
    state = None
    for t in range(1, 6):
        g = rng.standard_normal(5)
        y_model = (1 - b1) * z + b1 * x
        np.testing.assert_allclose(y, y_model, rtol=1e-12, atol=1e-14)
        y, state = sf.schedule_free_adamw_step(y, g, state, lr=lr)
        v = b2 * v + (1 - b2) * g * g
        z = z - lr * g / (np.sqrt(v / (1 - b2**t)) + 1e-8)
        wsum += lr**2
        c = lr**2 / wsum
        x = (1 - c) * x + c * z
        np.testing.assert_allclose(sf.schedule_free_average(y, state.z, b1), x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("make", [bq.dynamic_codebook, bq.linear_codebook])
@pytest.mark.parametrize("signed", [True, False])
def test_quantisation_error_is_within_the_bound(seed, make, signed):
    cb = make(signed)
    assert len(cb) <= 256 and np.all(np.diff(cb) > 0) and 0.0 in cb and cb.max() == 1.0
    res = sr.quantiser_errors(cb, size=5000, block=256, seed=seed)
    assert res["worst_over_bound"] <= 1 + 1e-12


def test_eight_bit_state_is_one_byte_per_number():
    state = bq.init_adam8bit_state(np.zeros((3000,)))
    assert state.m.codes.dtype == np.uint8 and state.m.codes.nbytes == 3000 and state.m.absmax.nbytes == 2 * 4


@pytest.mark.parametrize("name,tol", [("SM3", 1e-12), ("SM3, beta 0.9, momentum 0.5", 1e-12), ("CAME", 1e-12),
                                      ("Shampoo", 1e-10), ("schedule-free AdamW", 1e-12), ("Adam-mini", 1e-6)])
def test_references_agree_with_pytorch_optimizer(name, tol):
    diff, _, _ = sr.crosscheck(name, steps=6)
    assert diff < tol


def test_patched_upstreams_agree_in_float64():
    with sr.galore_upstream_float64():
        assert sr.crosscheck("GaLore", steps=5)[0] < 1e-12
    with sr.muon_upstream_float64():
        assert sr.crosscheck("Muon", steps=5)[0] < 1e-12
    assert sr.crosscheck("SOAP", steps=6, shapes=[(6, 6), (4,)])[0] < 1e-12


@pytest.mark.parametrize("step", [sm3.sm3_step, came.came_step, adam_mini.adam_mini_step, galore.galore_step,
                                  shampoo.shampoo_step, shampoo.soap_step, muon.muon_step, sf.schedule_free_adamw_step,
                                  bq.adam8bit_step])
def test_bad_learning_rate_and_shape(step):
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="lr must be >= 0"):
        step(x, x, lr=-1.0)
    with pytest.raises(ValueError, match="shape"):
        step(x, np.ones((2, 3)))


def test_bad_hyperparameters_and_states():
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="beta"):
        sm3.sm3_step(x, x, beta=1.5)
    with pytest.raises(ValueError, match="betas must be a triple"):
        came.came_step(x, x, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="blocks must be"):
        adam_mini.adam_mini_step(x, x, blocks=4)
    with pytest.raises(ValueError, match="state"):
        adam_mini.adam_mini_step(x, x, adam_mini.init_adam_mini_state(np.ones(5)))
    with pytest.raises(ValueError, match="Muon updates matrices"):
        muon.muon_step(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="betas\\[0\\] must be > 0"):
        sf.schedule_free_adamw_step(x, x, betas=(0.0, 0.9))
    with pytest.raises(ValueError, match="codebook"):
        bq.init_adam8bit_state(x, codebook="log")
    with pytest.raises(ValueError, match="name must be one of"):
        sr.crosscheck("Adam")
    with pytest.raises(TypeError):
        sm3.sm3_step(x, "abc")


def test_numpy_step_optimizer_with_adamw_matches_torch_adamw():
    p0, grads = sr.random_problem([(5, 4), (3,)], steps=6, seed=2)
    hyper = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    ours, _ = sr.run_upstream(lambda p: sr.NumpyStepOptimizer(p, adam.adamw_step, **hyper), p0, grads)
    torch_run, _ = sr.run_upstream(lambda p: torch.optim.AdamW(p, **hyper), p0, grads)
    assert sr.max_relative_difference(ours, torch_run) < 1e-12


def test_eight_bit_adamw_optimizer_runs_the_reference_and_counts_its_bytes():
    from optbook.analysis.memory import optimizer_state_bytes

    p0, grads = sr.random_problem([(50, 60), (7,)], steps=4, seed=3)
    hyper = dict(lr=3e-3, weight_decay=1e-2)
    ref = sr.run_reference(bq.adam8bit_step, p0, grads, **hyper)
    ours, opt = sr.run_upstream(lambda p: sr.NumpyStepOptimizer(p, bq.adam8bit_step, **hyper), p0, grads)
    assert sr.max_relative_difference(ours, ref) == 0.0
    # one byte per number for m and for v, plus a float32 scale per block of 2048 (3000 entries: 2 blocks)
    assert optimizer_state_bytes(opt) == 2 * (3000 + 2 * 4) + 2 * (7 + 4)


def test_numpy_step_optimizer_bad_input_leaves_state_intact():
    with pytest.raises(TypeError, match="step must be a callable"):
        sr.NumpyStepOptimizer([torch.nn.Parameter(torch.ones(2))], "adam")
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = sr.NumpyStepOptimizer([p], bq.adam8bit_step, lr=-1.0)
    p.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64)) and len(opt.state[p]) == 0
