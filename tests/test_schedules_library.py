"""The schedules of optbook.schedules: values derived by hand, shapes, and argument errors."""

import math
from functools import partial

import numpy as np
import pytest
import torch

from optbook import schedules as S


def test_constant_exponential_linear():
    assert S.constant_lr(7, 0.3) == 0.3
    assert S.exponential_lr(3, 0.1, 0.5) == pytest.approx(0.0125, rel=1e-15)
    assert S.linear_lr(10, 1.0, 0.0, 40) == pytest.approx(0.75, rel=1e-15)
    assert S.linear_lr(100, 1.0, 0.2, 40) == pytest.approx(0.2, rel=1e-15)  # held after T
    assert S.linear_lr(20, 0.25, 1.0, 40) == pytest.approx(0.625, rel=1e-15)  # a ramp


def test_cosine_endpoints_midpoint_and_floor():
    assert S.cosine_lr(0, 1.0, 100, 0.1) == 1.0
    assert S.cosine_lr(50, 1.0, 100, 0.1) == pytest.approx(0.55, rel=1e-15)
    assert S.cosine_lr(100, 1.0, 100, 0.1) == pytest.approx(0.1, rel=1e-15)
    assert S.cosine_lr(250, 1.0, 100, 0.1) == pytest.approx(0.1, rel=1e-15)
    # a quarter of the way: 0.1 + 0.45 (1 + cos(pi/4))
    assert S.cosine_lr(25, 1.0, 100, 0.1) == pytest.approx(0.1 + 0.45 * (1 + math.sqrt(0.5)), rel=1e-14)


def test_sgdr_cycles():
    # T_0 = 10, T_mult = 2: cycles [0, 10), [10, 30), [30, 70)
    assert S.sgdr_cycle(0, 10, 2) == (0, 10)
    assert S.sgdr_cycle(9, 10, 2) == (9, 10)
    assert S.sgdr_cycle(10, 10, 2) == (0, 20)
    assert S.sgdr_cycle(35, 10, 2) == (5, 40)
    assert S.sgdr_cycle(25, 10, 1) == (5, 10)
    for restart in (0, 10, 30, 70):
        assert S.cosine_restarts_lr(restart, 0.5, 10, 2, lr_min=0.01) == 0.5
    assert S.cosine_restarts_lr(20, 1.0, 10, 2) == pytest.approx(0.5, abs=1e-15)  # middle of the second cycle


def test_one_cycle_landmarks():
    lr, T = 0.1, 200
    assert S.one_cycle_lr(0, lr, T) == pytest.approx(lr / 25, rel=1e-15)
    assert S.one_cycle_lr(59, lr, T) == pytest.approx(lr, rel=1e-15)  # end of phase 1: 0.3 T - 1
    assert S.one_cycle_lr(199, lr, T) == pytest.approx(lr / 25 / 1e4, rel=1e-12)
    mid = S.one_cycle_lr(59 + 70, lr, T, anneal="linear")  # half-way through phase 2 (length 140)
    assert mid == pytest.approx((lr + lr / 25 / 1e4) / 2, rel=1e-12)
    assert S.one_cycle_lr(118, lr, T, three_phase=True) == pytest.approx(lr / 25, rel=1e-12)


def test_warmup_factor_and_composition():
    assert [S.warmup_factor(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert S.warmup_factor(0, 0) == 1.0
    f = S.with_warmup(partial(S.linear_lr, lr0=2.0, lr_end=0.0, total=10), 4)
    assert [f(t) for t in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert f(4) == 2.0 and f(9) == pytest.approx(1.0) and f(14) == 0.0


def test_inverse_square_roots():
    d, w = 512, 4000
    peak = 1 / math.sqrt(d * w)
    assert S.noam_lr(w - 1, d, w) == pytest.approx(peak, rel=1e-14)
    assert S.noam_lr(0, d, w) == pytest.approx(peak / w, rel=1e-14)
    assert S.noam_lr(4 * w - 1, d, w) == pytest.approx(peak / 2, rel=1e-14)
    assert max(S.noam_lr(t, d, w) for t in range(0, 3 * w, 7)) <= peak * (1 + 1e-15)
    assert S.t5_inverse_sqrt_lr(0) == 0.01 and S.t5_inverse_sqrt_lr(9_999) == 0.01
    assert S.t5_inverse_sqrt_lr(39_999) == pytest.approx(0.005, rel=1e-15)


def test_relative_step_is_adafactor_rho_shifted():
    for t in (0, 5, 9_999, 10_000, 50_000):
        assert S.relative_step_lr(t) == min(1e-2, 1 / math.sqrt(t + 1))
    assert S.relative_step_lr(3, cap=0.4) == pytest.approx(0.4)


@pytest.mark.parametrize("shape, f", [("linear", lambda p: 1 - p), ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
                                      ("1-sqrt", lambda p: 1 - math.sqrt(p))])
def test_wsd_phases(shape, f):
    kw = dict(lr0=1.0, warmup=10, stable=50, decay=40, lr_min=0.1, decay_shape=shape)
    assert S.wsd_lr(0, **kw) == 0.1 * 1.0  # (t + 1)/w
    assert S.wsd_lr(9, **kw) == 1.0 and S.wsd_lr(59, **kw) == 1.0
    assert S.wsd_lr(60 + 10, **kw) == pytest.approx(0.1 + 0.9 * f(0.25), rel=1e-14)
    assert S.wsd_lr(100, **kw) == 0.1 and S.wsd_lr(500, **kw) == 0.1


def test_radam_quantities():
    assert S.radam_sma_length(1, 0.999) == pytest.approx(1.0, abs=1e-9)
    rho = [S.radam_sma_length(t, 0.999) for t in range(1, 2000, 50)]
    assert all(a < b for a, b in zip(rho, rho[1:])) and rho[-1] < 2 / 0.001 - 1
    assert S.radam_rectification(3, 0.999) == 0.0
    assert 0 < S.radam_rectification(10, 0.999) < S.radam_rectification(1000, 0.999) < 1
    assert S.radam_rectification(100_000, 0.999) == pytest.approx(1.0, rel=1e-6)


def test_radam_rectification_matches_torch_radam():
    # With a constant gradient g = 1, m_hat = v_hat = 1 and torch's RAdam step is lr * r_t once rho_t > 5
    # (torch's threshold; the paper's is 4), and lr * m_hat = lr before.
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RAdam([p], lr=1.0, eps=1e-300)
    previous = 0.0
    for t in range(1, 40):
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        step = previous - float(p.detach())
        previous = float(p.detach())
        expected = S.radam_rectification(t) if S.radam_sma_length(t) > 5 else 1.0
        assert step == pytest.approx(expected, rel=1e-12)


def test_lambda_lr_drives_adam():
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1.0)
    schedule = S.with_warmup(partial(S.cosine_lr, lr0=1e-2, total=20), 5)
    sched = S.lambda_lr(opt, schedule)
    for t in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(schedule(t), rel=1e-15)
        p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        sched.step()


@pytest.mark.parametrize("call, exc", [
    (lambda: S.exponential_lr(1, 0.1, 0.0), ValueError),
    (lambda: S.exponential_lr(1, 0.1, 1.5), ValueError),
    (lambda: S.exponential_lr(1, 0.1, "0.9"), TypeError),
    (lambda: S.constant_lr(-1, 0.1), ValueError),
    (lambda: S.constant_lr(1, -0.1), ValueError),
    (lambda: S.linear_lr(1, 0.1, 0.0, 0), ValueError),
    (lambda: S.cosine_lr(1.5, 0.1, 10), ValueError),
    (lambda: S.cosine_lr(1, 0.1, 10, lr_min=-1.0), ValueError),
    (lambda: S.sgdr_cycle(1, 0), ValueError),
    (lambda: S.cosine_restarts_lr(1, 0.1, 10, period_mult=1.5), ValueError),
    (lambda: S.one_cycle_lr(201, 0.1, 200), ValueError),
    (lambda: S.one_cycle_lr(1, 0.1, 200, anneal="exp"), ValueError),
    (lambda: S.one_cycle_lr(1, 0.1, 200, pct_start=1.5), ValueError),
    (lambda: S.one_cycle_lr(1, 0.1, 200, div_factor=0.0), ValueError),
    (lambda: S.warmup_factor(1, -2), ValueError),
    (lambda: S.with_warmup(0.1, 5), TypeError),
    (lambda: S.noam_lr(1, 0, 10), ValueError),
    (lambda: S.t5_inverse_sqrt_lr(1, k=0), ValueError),
    (lambda: S.wsd_lr(1, 0.1, 5, 5, 0), ValueError),
    (lambda: S.wsd_lr(1, 0.1, 5, 5, 5, decay_shape="exp"), ValueError),
    (lambda: S.radam_sma_length(0), ValueError),
    (lambda: S.radam_sma_length(1, 0.0), ValueError),
    (lambda: S.lambda_lr("adam", S.constant_lr), TypeError),
    (lambda: S.lambda_lr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 0.1), TypeError),
    (lambda: S.lambda_lr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0), S.constant_lr), ValueError),
])
def test_bad_arguments_raise(call, exc):
    with pytest.raises(exc):
        call()


def test_lambda_lr_error_leaves_optimizer_intact():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    before = dict(opt.param_groups[0])
    with pytest.raises(ValueError, match="positive float lr"):
        S.lambda_lr(opt, S.constant_lr)
    assert opt.param_groups[0] == before
