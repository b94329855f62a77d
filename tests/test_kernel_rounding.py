"""Stochastic rounding of bfloat16 parameters in the fused Triton kernel (run in the interpreter).

The eager path's rule (``optbook.optim.adafactor._stochastic_round_to_bfloat16``):
add 16 uniform random bits below bfloat16's last mantissa bit and truncate,
so a value a fraction ``f`` of an ulp above its lower neighbour (in
magnitude) rounds up with probability ``f`` and the rounding is unbiased.
The step is set up so that the float32 result is known exactly: with
``relative_step=False, scale_parameter=False`` and a constant gradient,
:math:`U = \\pm 1` everywhere (:math:`\\hat V = G^2` for a matrix and a
vector alike, RMS(U) = 1, no clipping), so :math:`X_1 = X_0 - \\gamma\\,\\mathrm{sign}(G)`.
Three tensors whose bfloat16 ulps differ give three fractions from one
step; each has 65,536 elements, so the mean's standard error is
:math:`\\mathrm{ulp}\\sqrt{f(1-f)/N}` and the test allows 5 of them.
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
import optbook  # noqa: E402
from optbook.kernels import adafactor_fused as F  # noqa: E402
from optbook.kernels.layout import BlockConfig, use_block_config  # noqa: E402

pytestmark = pytest.mark.interpreter
BIG = BlockConfig(tile_m=256, sub_m=64, block_n=256, seg=256)  # few programs: the interpreter's cost is per program
LR = 0.37 * 2.0**-7
# (shape, X_0, gradient sign): bfloat16 numbers in three binades (ulp 2^-7, 2^-6, 2^-8), a matrix
# and two vectors, one of them negative (stochastic rounding acts on the magnitude).
CASES = [((256, 256), 1.3125, 1.0), ((65536,), 2.5, 1.0), ((65536,), -0.75, -1.0)]


def _step(generator, stochastic=True, cases=CASES):
    params = [torch.full(shape, x0, dtype=torch.bfloat16) for shape, x0, _ in cases]
    grads = [torch.full(shape, sign, dtype=torch.bfloat16) for shape, _, sign in cases]
    rows = [torch.zeros(p.shape[:-1] if p.dim() >= 2 else p.shape) for p in params]
    cols = [torch.zeros(p.shape[-1:]) if p.dim() >= 2 else None for p in params]
    steps = [torch.ones(()) for _ in params]
    with use_block_config(BIG):
        F.fused_adafactor_step(
            params, grads, rows, cols, steps, lr=LR, relative_step=False, scale_parameter=False,
            stochastic_rounding=stochastic, generator=generator,
        )
    return params


def test_stochastic_rounding_is_unbiased_and_rounds_up_with_the_distance():
    out = _step(torch.Generator().manual_seed(0))
    fractions = []
    for (shape, x0, sign), p in zip(CASES, out):
        x = torch.tensor(x0, dtype=torch.float32) - torch.tensor(LR, dtype=torch.float32) * sign  # X_1 in float32
        lower = (x.view(torch.int32) & -65536).view(torch.float32)  # the bfloat16 neighbour nearer to zero
        ulp = 2.0 ** (torch.frexp(lower).exponent.item() - 8)  # bfloat16 keeps 8 significant bits
        upper = lower + ulp if x > 0 else lower - ulp
        f = float((x - lower).abs() / ulp)  # the distance to the lower neighbour, in ulps
        fractions.append(f)
        values = p.float()
        assert set(values.unique().tolist()) <= {float(lower), float(upper)}, shape
        se = (f * (1 - f) / values.numel()) ** 0.5
        up = float((values == upper).double().mean())
        assert abs(up - f) <= 5 * se, (shape, up, f)  # P(round up) = the distance
        mean_err = abs(float(values.double().mean()) - float(x)) / ulp
        assert mean_err <= 5 * se, (shape, mean_err)  # unbiased: E[round(x)] = x
    # X_1 lies LR = 0.37 ulp(1.3125) below X_0 in magnitude: 1 - 0.37, 1 - 0.37/2 and 1 - 0.37*2 of
    # an ulp above the lower neighbour (up to float32's rounding of LR).
    assert fractions == pytest.approx([0.63, 0.815, 0.26], abs=1e-4)


def test_stochastic_rounding_is_reproducible_and_off_by_default():
    one = [((64, 256), 1.3125, 1.0)]
    a = _step(torch.Generator().manual_seed(3), cases=one)
    b = _step(torch.Generator().manual_seed(3), cases=one)
    c = _step(torch.Generator().manual_seed(4), cases=one)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], c[0])
    nearest = _step(None, stochastic=False)
    for (shape, x0, sign), p in zip(CASES, nearest):
        x = torch.tensor(x0, dtype=torch.float32) - torch.tensor(LR, dtype=torch.float32) * sign
        assert torch.equal(p, torch.full(shape, x).to(torch.bfloat16))  # round to nearest: one value
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        _step("not a generator")


def test_optimizer_passes_its_generator_to_the_fused_kernel():
    """optbook.Adafactor(fused=True, stochastic_rounding=True) on bfloat16: a
    seeded generator makes two runs equal, and small updates survive on average."""

    def run(seed):
        p = torch.nn.Parameter(torch.ones(64, 128, dtype=torch.bfloat16))
        opt = optbook.Adafactor([p], fused=True, stochastic_rounding=True, lr=1e-4, relative_step=False,
                                scale_parameter=False)
        opt.generator = torch.Generator().manual_seed(seed)
        for _ in range(2):
            p.grad = torch.ones_like(p)
            opt.step()
        return p.detach()

    first, again = run(0), run(0)
    assert torch.equal(first, again)
    # Each step subtracts 1e-4 (U = 1), far below half an ulp of 1 (2^-9): rounding to
    # nearest would keep every element at 1; stochastic rounding keeps it on average.
    # E[X_2] = 1 - 2e-4 exactly; each step moves an element by one ulp (2^-8 below 1) with
    # probability q = 1e-4 / 2^-8, so the mean's standard error is at most 2^-8 sqrt(2 q / N).
    q = 1e-4 / 2.0**-8
    se = 2.0**-8 * (2 * q / first.numel()) ** 0.5
    assert abs(float(first.double().mean()) - (1 - 2e-4)) < 5 * se < 1e-4  # nearest would be off by 2e-4
