"""The reference Adafactor with a custom decay schedule and without clipping, and optbook.reference.instability.

Expected values come from hand derivations (stated next to each test) or from
torch.optim.Adam, an independent implementation of bias-corrected averaging.
"""

import numpy as np
import pytest
import torch

from optbook.reference import adafactor as af
from optbook.reference import averaging as av
from optbook.reference import instability as ins


def grads(shape, n, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(n)]


def trajectory(hp, shape=(4, 3), n=15):
    x, state, xs = np.ones(shape), af.AdafactorState(), []
    for g in grads(shape, n):
        x = af.step(x, g, state, hp)
        xs.append(x)
    return np.array(xs)


def test_default_schedule_is_unchanged():
    hp = af.AdafactorHyperparameters()
    assert hp.decay is None
    for t in (1, 2, 50):
        assert hp.beta2hat(t) == af.second_moment_decay(t, 0.8)


def test_power_decay_object_gives_the_default_trajectory_bit_for_bit():
    a = trajectory(af.AdafactorHyperparameters())
    b = trajectory(af.AdafactorHyperparameters(decay=av.PowerDecay(0.8)))
    assert np.array_equal(a, b)


def test_constant_decay_second_moment_by_hand():
    b, (g1, g2) = 0.9, grads((5,), 2)
    state, hp = af.AdafactorState(), af.AdafactorHyperparameters(decay=av.ConstantDecay(b), eps1=1e-30)
    x = af.vector_step(np.ones(5), g1, state, hp)
    af.vector_step(x, g2, state, hp)
    # V_2 = b (1 - b) g1^2 + (1 - b) g2^2: no bias correction
    assert np.allclose(state.v, b * (1 - b) * g1**2 + (1 - b) * g2**2, rtol=1e-13, atol=0)


def test_adam_style_schedule_equals_bias_corrected_adam_second_moment():
    beta2, gs = 0.999, grads((6,), 25)
    state, hp = af.AdafactorState(), af.AdafactorHyperparameters(decay=av.AdamStyleDecay(beta2))
    p = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.0, beta2))
    x = np.ones(6)
    for t, g in enumerate(gs, start=1):
        x = af.vector_step(x, g, state, hp)
        p.grad = torch.tensor(g)
        opt.step()
        v_hat_adam = opt.state[p]["exp_avg_sq"].numpy() / (1 - beta2**t)
        assert np.allclose(state.v, v_hat_adam, rtol=1e-12, atol=0)


def test_first_update_of_constant_decay_has_rms_one_over_sqrt_one_minus_beta2():
    # V_1 = (1 - b) g^2, so every |U_1| entry is 1/sqrt(1 - b)
    for b in (0.9, 0.999):
        state = af.AdafactorState()
        hp = af.AdafactorHyperparameters(decay=av.ConstantDecay(b), d=float("inf"))
        af.vector_step(np.ones(8), grads((8,), 1)[0], state, hp, record=True)
        assert af.rms(state.history[0]["U"]) == pytest.approx(1 / np.sqrt(1 - b), rel=1e-12)


def test_infinite_d_disables_clipping():
    big = np.array([30.0, -40.0])
    assert np.array_equal(af.clipped_update(big, float("inf")), big)
    state = af.AdafactorState()
    hp = af.AdafactorHyperparameters(decay=av.ConstantDecay(0.999), d=float("inf"))
    x = np.ones((3, 4))
    for g in grads((3, 4), 3):
        x = af.step(x, g, state, hp, record=True)
    for h in state.history:
        assert np.array_equal(h["U_hat"], h["U"])
    assert af.rms(state.history[0]["U"]) > 10  # it would have been clipped with d = 1


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="callable"):
        af.AdafactorHyperparameters(decay=0.999)
    for bad in (lambda t: 1.0, lambda t: -0.1, lambda t: float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            af.step(np.ones(3), np.ones(3), af.AdafactorState(), af.AdafactorHyperparameters(decay=bad))


# --- optbook.reference.instability --------------------------------------------------------------


def test_loss_scale():
    assert [ins.loss_scale(t, 3, 10.0) for t in (1, 2, 3, 4)] == [1.0, 1.0, 10.0, 10.0]
    with pytest.raises(ValueError):
        ins.loss_scale(0, 3, 10.0)
    with pytest.raises(ValueError):
        ins.loss_scale(1, 3, 0.0)


def test_amplification_by_hand():
    # steady scale, weights summing to one: A = 1
    assert ins.update_rms_amplification([0.25, 0.75], [2.0, 2.0]) == pytest.approx(1.0)
    # one step of a constant beta2 = 0.99 without correction: 1/sqrt(0.01) = 10
    assert ins.update_rms_amplification([0.01], [1.0]) == pytest.approx(10.0)
    # jump by 10 onto an average that kept weight 0.9 on the old scale: 10 / sqrt(0.9 + 0.1 * 100)
    assert ins.update_rms_amplification([0.9, 0.1], [1.0, 10.0]) == pytest.approx(10 / np.sqrt(10.9))


@pytest.mark.parametrize("shape", [(7,), (5, 4)])
@pytest.mark.parametrize("schedule", [av.PowerDecay(0.8), av.ConstantDecay(0.99), av.ConstantDecay(0.9)])
def test_amplification_predicts_the_update_of_a_rescaled_gradient(shape, schedule):
    g = grads(shape, 1, seed=11)[0]
    scales = [ins.loss_scale(t, 6, 10.0) for t in range(1, 13)]
    hp = af.AdafactorHyperparameters(decay=schedule, d=float("inf"), eps1=1e-300)
    state = af.AdafactorState()
    for s in scales:
        af.step(np.ones(shape), s * g, state, hp, record=True)
    # U(G): the update from G alone, which is what step 1 of a PowerDecay run computes
    ref = af.AdafactorState()
    af.step(np.ones(shape), g, ref, af.AdafactorHyperparameters(d=float("inf"), eps1=1e-300), record=True)
    rms_u_of_g = af.rms(ref.history[0]["U"])
    decays = av.decay_sequence(schedule, len(scales))
    for t, h in enumerate(state.history, start=1):
        a_t = ins.update_rms_amplification(av.ema_weights(decays[:t]), scales[:t])
        assert af.rms(h["U"]) == pytest.approx(a_t * rms_u_of_g, rel=1e-10)


def test_parameter_scale_bound_by_hand_and_attained():
    assert ins.parameter_scale_bound(0, 0.0) == 1e-3
    assert ins.parameter_scale_bound(2, 0.0) == pytest.approx(1e-3 * 1.01**2)
    assert ins.parameter_scale_bound(3, 0.5, eps2=1e-3, d=float("inf")) == float("inf")
    # every update points away from the origin with RMS d = 1: the bound is attained
    x, state = np.ones(4), af.AdafactorState()
    for _ in range(30):
        x = af.step(x, -np.ones(4), state)
    assert af.rms(x) == pytest.approx(ins.parameter_scale_bound(30, 1.0), rel=1e-12)


def test_parameter_scale_bound_holds_on_random_gradients():
    rng = np.random.default_rng(5)
    for d in (0.5, 1.0, 2.0):
        x, state = np.zeros((3, 5)), af.AdafactorState()
        hp = af.AdafactorHyperparameters(d=d)
        for t in range(1, 60):
            x = af.step(x, rng.normal(size=(3, 5)) * 10.0 ** rng.integers(-3, 3), state, hp)
            assert af.rms(x) <= ins.parameter_scale_bound(t, 0.0, d=d) * (1 + 1e-12)


def test_traced_run_records_and_scales():
    target = np.array([1.0, -2.0, 0.5])

    def grad(x, t):
        return x - target

    def loss(x):
        return 0.5 * float(np.sum((x - target) ** 2))

    hp = af.AdafactorHyperparameters(d=float("inf"))
    plain = ins.traced_run(np.zeros(3), grad, 10, hp, loss=loss)
    scaled = ins.traced_run(np.zeros(3), grad, 10, hp, loss=loss, scale=lambda t: 1e3)
    assert plain.loss.shape == (11,) and plain.rms_u.shape == (10,)
    assert plain.loss[0] == loss(np.zeros(3))
    assert np.all(np.isnan(plain.test_loss))
    # Adafactor is invariant to a constant loss scale (up to eps1), so both runs coincide
    assert np.allclose(plain.loss, scaled.loss, rtol=1e-12)
    assert plain.beta2hat[0] == 0.0
    x, _ = af.run(np.zeros(3), lambda x: x - target, 10, hp)
    assert np.array_equal(plain.x, x)


def test_traced_run_eval_every():
    r = ins.traced_run(np.ones(2), lambda x, t: x, 7, loss=lambda x: float(x @ x), eval_every=3)
    assert list(r.eval_t) == [0, 3, 6, 7]
    assert r.loss.shape == (4,) and r.rms_u.shape == (7,)
    with pytest.raises(ValueError, match="eval_every"):
        ins.traced_run(np.ones(2), lambda x, t: x, 3, eval_every=0)


def test_softmax_task_batches_depend_only_on_seed_and_step():
    from optbook import tasks

    task = ins.SoftmaxRegressionTask(tasks.digits(), batch_size=32, seed=4)
    assert task.shape == (65, 10)
    a, b = task.batch(7), task.batch(7)
    assert np.array_equal(a, b) and len(np.unique(a)) == 32
    assert not np.array_equal(task.batch(7), task.batch(8))
    w = task.init(0.1)
    full = ins.SoftmaxRegressionTask(tasks.digits(), batch_size=None)
    eps = 1e-6
    e = np.zeros_like(w)
    e[3, 2] = eps
    # the full-batch gradient is the derivative of the training loss (central difference)
    fd = (full.loss(w + e) - full.loss(w - e)) / (2 * eps)
    assert full.grad(w, 1)[3, 2] == pytest.approx(fd, rel=1e-6)
    assert task.init(0.0).sum() == 0.0
    with pytest.raises(ValueError, match="classification"):
        ins.SoftmaxRegressionTask(tasks.diabetes())


def test_parameter_scale_bound_vectorised_matches_scalar():
    ts = np.array([0, 1, 5, 10_000, 10_050])
    many = ins.parameter_scale_bound(ts, 0.2, eps2=1e-3, d=2.0)
    assert many.shape == (5,)
    for t, b in zip(ts, many):
        assert b == pytest.approx(ins.parameter_scale_bound(int(t), 0.2, eps2=1e-3, d=2.0), rel=1e-12)
    # past t = 10^4 the factor per step is 1 + d / sqrt(t)
    assert many[-1] / ins.parameter_scale_bound(10_049, 0.2, eps2=1e-3, d=2.0) == pytest.approx(1 + 2 / np.sqrt(10_050))
    with pytest.raises(ValueError, match="whole number"):
        ins.parameter_scale_bound(np.array([1.5]))
