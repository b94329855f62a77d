r"""The schedules of :mod:`optbook.schedules` against ``torch.optim.lr_scheduler`` and ``transformers``.

:func:`upstream_lrs` steps a real upstream scheduler on a throw-away optimizer and records the
rate it sets before each update; :func:`crosscheck_rows` pairs each of them with the book's
function and measures the largest relative difference. Some pairs agree only after a shift of
one step, because ``transformers`` starts its warm-up at a rate of 0 (see :data:`SHIFTS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from optbook.schedules._args import count

__all__ = ["SHIFTS", "upstream_lrs", "schedule_values", "max_relative_difference", "compare", "crosscheck_rows",
           "convention_examples"]
__helpers__ = ("upstream_lrs", "schedule_values", "max_relative_difference", "compare", "crosscheck_rows",
               "convention_examples")

#: How the book's :math:`\eta_t` lines up with an upstream value :math:`u_t`.
SHIFTS = {
    "none": "eta_t = u_t at every step",
    "warmup": "eta_t = u_{t+1} during warm-up (t < w), eta_t = u_t after it",
    "all": "eta_t = u_{t+1} at every step",
}


def upstream_lrs(make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int, lr: float = 1.0) -> np.ndarray:
    r"""The learning rate an upstream scheduler sets for updates :math:`t = 0, \dots, \text{steps} - 1`.

    ``make_scheduler(optimizer)`` builds the scheduler on a one-parameter float64 ``torch.optim.SGD``
    with learning rate ``lr``; the scheduler is stepped once after each (empty) optimizer step,
    as in a training loop.
    """
    steps = count(steps, "steps")
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = make_scheduler(optimizer)
    values = []
    for t in range(steps):
        values.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        if t < steps - 1:
            scheduler.step()
    return np.array(values)


def schedule_values(schedule: Callable[[int], float], steps: int) -> np.ndarray:
    r""":math:`(\eta_0, \dots, \eta_{\text{steps}-1})` of a schedule, as a float64 array."""
    return np.array([schedule(t) for t in range(count(steps, "steps"))], dtype=np.float64)


def max_relative_difference(a, b) -> float:
    r""":math:`\max_t |a_t - b_t| / |b_t|`, with :math:`|a_t - b_t|` itself where :math:`b_t = 0`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
    diff = np.abs(a - b)
    scale = np.where(b == 0.0, 1.0, np.abs(b))
    return float(np.max(diff / scale))


def compare(ours: np.ndarray, theirs: np.ndarray, shift: str = "none", warmup: int = 0) -> float:
    """Largest relative difference between two runs of rates, after the alignment ``shift`` of :data:`SHIFTS`.

    ``theirs`` must hold one value more than ``ours`` when ``shift`` is not ``"none"``.
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {tuple(SHIFTS)}, got {shift!r}.")
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    n = len(ours)
    if shift == "none":
        return max_relative_difference(ours, theirs[:n])
    if shift == "all":
        return max_relative_difference(ours, theirs[1:n + 1])
    aligned = np.concatenate([theirs[1:warmup + 1], theirs[warmup:n]])
    return max_relative_difference(ours, aligned)


def _torch_rows() -> list[dict]:
    from optbook import schedules as s
    from torch.optim import lr_scheduler as L

    lr = 0.1
    T = 120
    rows = [
        ("step_decay_lr", "StepLR(step_size=30, gamma=0.5)", 200,
         partial(s.step_decay_lr, lr0=lr, factor=0.5, every=30), lambda o: L.StepLR(o, 30, 0.5)),
        ("exponential_lr", "ExponentialLR(gamma=0.98)", 300,
         partial(s.exponential_lr, lr0=lr, gamma=0.98), lambda o: L.ExponentialLR(o, 0.98)),
        ("linear_lr", "LinearLR(start_factor=0.25, total_iters=40)", 100,
         partial(s.linear_lr, lr0=0.25 * lr, lr_end=lr, total=40),
         lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=40)),
        ("cosine_lr", f"CosineAnnealingLR(T_max={T}, eta_min=1e-4)", T + 1,
         partial(s.cosine_lr, lr0=lr, total=T, lr_min=1e-4), lambda o: L.CosineAnnealingLR(o, T, eta_min=1e-4)),
        ("cosine_restarts_lr", "CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=1e-5)", 310,
         partial(s.cosine_restarts_lr, lr0=lr, period=10, period_mult=2, lr_min=1e-5),
         lambda o: L.CosineAnnealingWarmRestarts(o, 10, 2, eta_min=1e-5)),
    ]
    for anneal, three in (("cos", False), ("linear", False), ("cos", True)):
        label = f"OneCycleLR(total_steps=200, anneal_strategy='{anneal}'{', three_phase=True' if three else ''})"
        rows.append((f"one_cycle_lr(anneal='{anneal}'{', three_phase=True' if three else ''})", label, 201,
                     partial(s.one_cycle_lr, lr_max=lr, total=200, anneal=anneal, three_phase=three),
                     lambda o, a=anneal, th=three: L.OneCycleLR(o, max_lr=lr, total_steps=200, anneal_strategy=a,
                                                                three_phase=th, cycle_momentum=False)))
    out = []
    for ours, upstream, n, schedule, make in rows:
        diff = compare(schedule_values(schedule, n), upstream_lrs(make, n, lr))
        out.append({"ours": ours, "upstream": "torch " + upstream, "steps": n, "alignment": "none", "max_rel_diff": diff})
    return out


def _transformers_rows() -> list[dict]:
    import transformers as tf

    from optbook import schedules as s

    lr, w, T = 1e-3, 20, 200
    rows = [
        ("with_warmup(linear_lr)", "get_linear_schedule_with_warmup", "warmup",
         s.with_warmup(partial(s.linear_lr, lr0=lr, lr_end=0.0, total=T - w), w),
         lambda o: tf.get_linear_schedule_with_warmup(o, w, T)),
        ("with_warmup(cosine_lr)", "get_cosine_schedule_with_warmup", "warmup",
         s.with_warmup(partial(s.cosine_lr, lr0=lr, total=T - w), w),
         lambda o: tf.get_cosine_schedule_with_warmup(o, w, T)),
        ("with_warmup(cosine_restarts_lr)", "get_cosine_with_hard_restarts_schedule_with_warmup(num_cycles=3)",
         "warmup", s.with_warmup(partial(s.cosine_restarts_lr, lr0=lr, period=(T - w) // 3), w),
         lambda o: tf.get_cosine_with_hard_restarts_schedule_with_warmup(o, w, T, num_cycles=3)),
        ("with_warmup(constant_lr)", "get_constant_schedule_with_warmup", "warmup",
         s.with_warmup(partial(s.constant_lr, lr0=lr), w), lambda o: tf.get_constant_schedule_with_warmup(o, w)),
        ("noam_lr / its peak", "get_inverse_sqrt_schedule (timescale = w)", "all",
         lambda t: lr * s.noam_lr(t, 64, w) / s.noam_lr(w - 1, 64, w),
         lambda o: tf.get_inverse_sqrt_schedule(o, w)),
    ]
    if hasattr(tf, "get_wsd_schedule"):
        for shape in ("linear", "cosine", "1-sqrt"):
            rows.append((f"wsd_lr(decay_shape='{shape}')", f"get_wsd_schedule(decay_type='{shape}')", "warmup",
                         partial(s.wsd_lr, lr0=lr, warmup=w, stable=100, decay=60, decay_shape=shape),
                         lambda o, sh=shape: tf.get_wsd_schedule(o, w, 60, num_stable_steps=100, decay_type=sh)))
    out = []
    for ours, upstream, shift, schedule, make in rows:
        n = T
        theirs = upstream_lrs(make, n + 1, lr)
        diff = compare(schedule_values(schedule, n), theirs, shift, w)
        out.append({"ours": ours, "upstream": "transformers " + upstream, "steps": n, "alignment": shift,
                    "max_rel_diff": diff})
    return out


def crosscheck_rows(include_transformers: bool = True) -> list[dict]:
    """Every pairing of a book schedule with an upstream one, and its largest relative difference.

    Each row: ``ours``, ``upstream``, ``steps`` compared, ``alignment`` (a key of :data:`SHIFTS`)
    and ``max_rel_diff``. Also checks the torch adapter :func:`optbook.schedules.lambda_lr`
    against the schedule it wraps, and Adafactor's relative step against T5's schedule.
    """
    from optbook import schedules as s

    rows = _torch_rows()
    if include_transformers:
        rows += _transformers_rows()
    warm_cos = s.with_warmup(partial(s.cosine_lr, lr0=3e-3, total=180), 20)
    adapted = upstream_lrs(lambda o: s.lambda_lr(o, warm_cos), 200, lr=1.0)
    rows.append({"ours": "with_warmup(cosine_lr)", "upstream": "torch LambdaLR via optbook lambda_lr", "steps": 200,
                 "alignment": "none", "max_rel_diff": compare(schedule_values(warm_cos, 200), adapted)})
    n = 30_000
    rel = schedule_values(s.relative_step_lr, n)
    t5 = schedule_values(partial(s.t5_inverse_sqrt_lr, k=10_000), n)
    rows.append({"ours": "relative_step_lr (Adafactor)", "upstream": "t5_inverse_sqrt_lr(k=10^4)", "steps": n,
                 "alignment": "none", "max_rel_diff": compare(rel, t5)})
    assert all(math.isfinite(r["max_rel_diff"]) for r in rows)
    return rows


def convention_examples() -> dict:
    """The conventions on which the book's schedules and the upstream ones differ, as small tables.

    ``"warmup"``: the first six rates of a 4-step linear warm-up, ours and ``transformers``'.
    ``"cosine_after_T"``: :func:`optbook.schedules.cosine_lr` and ``CosineAnnealingLR`` past
    ``T_max = 100``. ``"timescale"``: the Transformer's schedule over its peak against
    ``transformers``' inverse square root with ``timescale`` equal to and ten times the warm-up.
    ``"recursion"``: the largest relative difference between ``CosineAnnealingLR``'s recursive
    rates and its own closed form over ten periods, and at which step it occurs.
    """
    import pandas as pd
    import transformers as tf
    from torch.optim import lr_scheduler as L

    from optbook import schedules as s

    w = 4
    hf = upstream_lrs(lambda o: tf.get_constant_schedule_with_warmup(o, w), 6)
    ours = schedule_values(s.with_warmup(partial(s.constant_lr, lr0=1.0), w), 6)
    warm = pd.DataFrame({"t": range(6), "optbook with_warmup": ours, "transformers": hf}).set_index("t")

    T = 100
    torch_cos = upstream_lrs(lambda o: L.CosineAnnealingLR(o, T), 10 * 2 * T + 1)
    at = [T, T + T // 4, T + T // 2, 2 * T]
    after = pd.DataFrame({"t": at, "optbook cosine_lr": [s.cosine_lr(t, 1.0, T) for t in at],
                          "torch CosineAnnealingLR": torch_cos[at]}).set_index("t")
    closed = np.array([0.5 * (1 + math.cos(math.pi * t / T)) for t in range(len(torch_cos))])
    rel = np.abs(torch_cos - closed) / np.maximum(np.abs(closed), 1e-300)
    rel[closed == 0.0] = np.abs(torch_cos - closed)[closed == 0.0]

    wu = 20
    peak = s.noam_lr(wu - 1, 64, wu)
    steps = [wu, 2 * wu, 5 * wu, 20 * wu, 100 * wu]
    hf1 = upstream_lrs(lambda o: tf.get_inverse_sqrt_schedule(o, wu), steps[-1] + 1)
    hf10 = upstream_lrs(lambda o: tf.get_inverse_sqrt_schedule(o, wu, timescale=10 * wu), steps[-1] + 1)
    scale = pd.DataFrame({"t": steps, "noam_lr / peak at t - 1": [s.noam_lr(t - 1, 64, wu) / peak for t in steps],
                          "transformers, timescale = w": hf1[steps],
                          "transformers, timescale = 10 w": hf10[steps]}).set_index("t")
    return {"warmup": warm, "cosine_after_T": after, "timescale": scale,
            "recursion": {"max_rel_diff": float(rel.max()), "at_step": int(rel.argmax()), "steps": len(rel)}}
