r"""Oversized updates from an out-of-date second moment, and a harness to watch them.

If the gradients of a tensor keep their pattern but change their overall size,
:math:`G_k = s_k G`, then every second-moment estimate of this book (the full
:math:`\hat V_t` of Adam or of vector Adafactor, and the factored
:math:`R_tC_t/1^\top R_t`) is the same weighted average of :math:`s_k^2` times the
estimate for :math:`G` alone, with the averaging weights :math:`w_{t,k}` of
:mod:`optbook.reference.averaging`. The normalised update is then the
update for :math:`G` times the *amplification*

.. math::

    A_t = \frac{s_t}{\sqrt{\sum_{k=1}^t w_{t,k}\, s_k^2}}
    \qquad(\epsilon_1 \to 0),

which is 1 when the scale is steady and the weights sum to one, and larger
than 1 when the newest gradient is bigger than the ones the average still
remembers (:func:`update_rms_amplification`). Two ways of getting
:math:`A_t > 1`:

* a constant :math:`\beta_2` without bias correction at the start,
  :math:`A_t = 1/\sqrt{1-\beta_2^t}`, so :math:`A_1 = 1/\sqrt{1-\beta_2}`;
* an abrupt rise of the gradient scale by :math:`\kappa` at step :math:`t_0`
  (:func:`loss_scale`), which a slow average notices late.

:func:`traced_run` runs the NumPy reference Adafactor with such a loss scale
and records :math:`\mathrm{RMS}(U_t)` and the loss at every step.

Clipping also bounds how fast a tensor can grow. Because
:math:`\mathrm{RMS}(X_t - X_{t-1}) = \alpha_t\,\mathrm{RMS}(\hat U_t) \le \rho_t d
\max(\epsilon_2, \mathrm{RMS}(X_{t-1}))`, the quantity
:math:`a_t = \max(\epsilon_2, \mathrm{RMS}(X_t))` grows by at most a factor
:math:`1 + \rho_t d` per step (:func:`parameter_scale_bound`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from optbook import tasks
from optbook.notation import symbol
from optbook.reference import adafactor as af

__all__ = [
    "loss_scale",
    "update_rms_amplification",
    "parameter_scale_bound",
    "SoftmaxRegressionTask",
    "TracedRun",
    "traced_run",
    "sweep",
    "seed_sweep",
    "run_summary",
    "robust_run_summary",
    "jump_summary",
]

# Public names that compose formulas rather than compute one book symbol.
__helpers__ = ("SoftmaxRegressionTask", "TracedRun", "traced_run", "sweep", "seed_sweep", "run_summary",
               "robust_run_summary", "jump_summary")


@symbol(r"s_t = 1 \text{ if } t < t_0 \text{ else } \kappa", "loss scale that jumps by kappa at step t_0")
def loss_scale(t: int, t_switch: int, factor: float) -> float:
    r"""The multiplier :math:`s_t` of the loss (and so of the gradient): 1 before step :math:`t_0` = ``t_switch``, :math:`\kappa` = ``factor`` from it on."""
    if int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    if not factor > 0:
        raise ValueError(f"factor must be > 0 (a loss scale), got {factor}.")
    return float(factor) if t >= t_switch else 1.0


@symbol(r"A_t = s_t / \sqrt{\textstyle\sum_k w_{t,k} s_k^2}", "amplification of the update by a stale second moment")
def update_rms_amplification(weights: Sequence[float], scales: Sequence[float]) -> float:
    r""":math:`A_t = s_t/\sqrt{\sum_{k=1}^t w_{t,k}s_k^2}` for gradients :math:`G_k = s_k G`.

    ``weights`` are :math:`w_{t,1}, \dots, w_{t,t}` (from
    :func:`optbook.reference.averaging.ema_weights`) and ``scales`` are
    :math:`s_1, \dots, s_t`; the last of each belongs to the current step.
    With :math:`\epsilon_1 = 0` and :math:`V_0 = 0`, :math:`U_t = A_t\,U(G)`
    where :math:`U(G)` is the update computed from :math:`G` alone.
    """
    w = np.asarray(weights, dtype=float)
    s = np.asarray(scales, dtype=float)
    if w.shape != s.shape or w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights and scales must be 1-D of the same length, got {w.shape} and {s.shape}.")
    return float(s[-1] / np.sqrt(np.sum(w * s**2)))


@symbol(
    r"\mathrm{RMS}(X_t) \le \max(\epsilon_2, \mathrm{RMS}(X_0)) \prod_{j=1}^t (1 + \rho_j d)",
    "largest parameter scale Adafactor can reach after t steps",
)
def parameter_scale_bound(
    t, rms_x0: float = 0.0, *, eps2: float = 1e-3, d: float = 1.0, rho_cap: float = 1e-2
):
    r"""Upper bound :math:`\max(\epsilon_2, \mathrm{RMS}(X_0))\prod_{j=1}^t (1 + \rho_j d)` on :math:`\mathrm{RMS}(X_t)`.

    :math:`\rho_j = \min(\text{cap}, 1/\sqrt j)`. It holds for any gradients
    (the triangle inequality for the RMS, which is a scaled Euclidean norm,
    and :math:`\mathrm{RMS}(\hat U_j) \le d`). It is attained only when
    :math:`\mathrm{RMS}(X_0) \ge \epsilon_2` and every update points straight away
    from the origin with RMS :math:`d`; below :math:`\epsilon_2` the relative step
    grows the scale additively, and the tight bound is
    :func:`optbook.analysis.relative_growth.tight_scale_bound`. With
    ``d = inf`` there is no bound (``inf``); ``t = 0`` gives
    :math:`\max(\epsilon_2, \mathrm{RMS}(X_0))`. ``t`` may be an array of
    step counts, for which an array is returned (computed in one pass).
    """
    steps = np.asarray(t)
    if steps.size == 0 or np.any(steps < 0) or np.any(steps != np.floor(steps)):
        raise ValueError(f"t must be a whole number >= 0 (or an array of them), got {t!r}.")
    if not (eps2 > 0 and d > 0 and rms_x0 >= 0):
        raise ValueError(f"need eps2 > 0, d > 0 and rms_x0 >= 0, got eps2={eps2}, d={d}, rms_x0={rms_x0}.")
    steps = steps.astype(int)
    a = float(max(eps2, rms_x0))
    t_max = int(steps.max())
    rho = np.array([af.relative_step_size(j, rho_cap) for j in range(1, t_max + 1)])
    with np.errstate(invalid="ignore"):
        log_growth = np.concatenate([[0.0], np.cumsum(np.log1p(rho * d))])  # log of the product up to j
    bound = np.where(steps == 0, a, a * np.exp(log_growth[steps]))
    return float(bound) if bound.ndim == 0 else bound


@dataclass(frozen=True)
class SoftmaxRegressionTask:
    """Multinomial logistic regression (:func:`optbook.tasks.softmax_cross_entropy`) on a bundled data set.

    The weight matrix has shape ``(n_features + 1, n_classes)`` (last row: bias),
    so Adafactor factors it. :meth:`grad` draws the mini-batch of step ``t``
    from a generator seeded with ``(seed, t)``: every run sees the same batch
    at the same step, whatever else was run before. ``batch_size=None`` gives
    the full-batch gradient.
    """

    data: tasks.Dataset
    batch_size: int | None = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.data.n_classes:
            raise ValueError(f"{self.data.name} is not a classification data set.")
        if self.batch_size is not None and not 1 <= self.batch_size <= len(self.data.x_train):
            raise ValueError(f"batch_size must lie in [1, {len(self.data.x_train)}] or be None, got {self.batch_size}.")

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the weight matrix :math:`W`."""
        return (self.data.x_train.shape[1] + 1, self.data.n_classes)

    def init(self, scale: float = 0.1, seed: int = 0) -> np.ndarray:
        """Initial weights with i.i.d. :math:`N(0, \text{scale}^2)` entries (all zero for ``scale=0``)."""
        return scale * np.random.default_rng(seed).standard_normal(self.shape)

    def batch(self, t: int) -> np.ndarray:
        """Indices of the training examples used at step ``t``."""
        n = len(self.data.x_train)
        if self.batch_size is None:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(t)]).choice(n, self.batch_size, replace=False)

    def grad(self, w: np.ndarray, t: int) -> np.ndarray:
        """Gradient of the mean cross-entropy on the mini-batch of step ``t``."""
        idx = self.batch(t)
        return tasks.softmax_cross_entropy_grad(w, self.data.x_train[idx], self.data.y_train[idx])

    def loss(self, w: np.ndarray) -> float:
        """Mean cross-entropy on the whole training set."""
        return tasks.softmax_cross_entropy(w, self.data.x_train, self.data.y_train)

    def test_loss(self, w: np.ndarray) -> float:
        """Mean cross-entropy on the test set."""
        return tasks.softmax_cross_entropy(w, self.data.x_test, self.data.y_test)

    def test_accuracy(self, w: np.ndarray) -> float:
        """Fraction of test examples classified correctly."""
        return tasks.accuracy(w, self.data.x_test, self.data.y_test)


@dataclass(frozen=True)
class TracedRun:
    """Per-step record of one Adafactor run; index ``t - 1`` of ``rms_u`` etc. holds step ``t``.

    ``loss[i]`` and ``test_loss[i]`` are the losses at :math:`X_{t}` with
    ``t = eval_t[i]``; ``eval_t`` starts at 0 and ends at the last step.
    Losses are of the *unscaled* objective, so runs with a loss scale can be
    compared with runs without.
    """

    x: np.ndarray
    eval_t: np.ndarray
    loss: np.ndarray
    test_loss: np.ndarray
    rms_u: np.ndarray
    rms_u_hat: np.ndarray
    alpha: np.ndarray
    beta2hat: np.ndarray
    rms_x: np.ndarray


def traced_run(
    x0: np.ndarray,
    grad: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    hp: af.AdafactorHyperparameters = af.AdafactorHyperparameters(),
    *,
    loss: Callable[[np.ndarray], float] | None = None,
    test_loss: Callable[[np.ndarray], float] | None = None,
    scale: Callable[[int], float] | None = None,
    eval_every: int = 1,
) -> TracedRun:
    r"""Run :func:`optbook.reference.adafactor.step` for ``steps`` steps and record what clipping sees.

    ``grad(x, t)`` returns the gradient used at step ``t`` (so a caller can
    draw mini-batches); it is multiplied by ``scale(t)`` when ``scale`` is
    given. ``loss``/``test_loss`` (NaN if not given) are evaluated at
    :math:`X_0`, every ``eval_every`` steps and after the last step; the
    update statistics are recorded at every step. Once an iterate stops
    being finite its losses are NaN.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    if int(eval_every) != eval_every or eval_every < 1:
        raise ValueError(f"eval_every must be a whole number >= 1, got {eval_every!r}.")
    nan = float("nan")
    state = af.AdafactorState()
    x = np.array(x0, dtype=float, copy=True)
    eval_t = [0]
    losses = [loss(x) if loss else nan]
    test_losses = [test_loss(x) if test_loss else nan]
    rec = {k: [] for k in ("rms_u", "rms_u_hat", "alpha", "beta2hat", "rms_x")}
    for t in range(1, int(steps) + 1):
        g = grad(x, t)
        if scale is not None:
            g = scale(t) * g
        with np.errstate(all="ignore"):
            x = af.step(x, g, state, hp, record=True)
        h = state.history.pop()
        rec["rms_u"].append(af.rms(h["U"]))
        rec["rms_u_hat"].append(af.rms(h["U_hat"]))
        rec["alpha"].append(h["alpha"])
        rec["beta2hat"].append(h["beta2hat"])
        rec["rms_x"].append(af.rms(x))
        if t % eval_every and t != steps:
            continue
        finite = bool(np.all(np.isfinite(x)))
        eval_t.append(t)
        with np.errstate(all="ignore"):
            losses.append(loss(x) if (loss and finite) else nan)
            test_losses.append(test_loss(x) if (test_loss and finite) else nan)
    return TracedRun(
        x=x,
        eval_t=np.array(eval_t),
        loss=np.array(losses),
        test_loss=np.array(test_losses),
        **{k: np.array(v, dtype=float) for k, v in rec.items()},
    )


def sweep(
    task: SoftmaxRegressionTask,
    configs: Mapping[object, af.AdafactorHyperparameters],
    steps: int,
    *,
    x0: np.ndarray | Mapping[object, np.ndarray],
    scale: Callable[[int], float] | None = None,
    eval_every: int = 1,
    desc: str = "runs",
) -> dict[object, TracedRun]:
    """:func:`traced_run` of ``task`` for every hyperparameter setting in ``configs``, with a progress bar.

    ``x0`` is one start point for all runs, or a mapping with one per key of ``configs``.
    """
    from optbook.progress import progress

    out = {}
    for key in progress(list(configs), desc=desc):
        start = x0[key] if isinstance(x0, Mapping) else x0
        out[key] = traced_run(
            start,
            task.grad,
            steps,
            configs[key],
            loss=task.loss,
            test_loss=task.test_loss,
            scale=scale,
            eval_every=eval_every,
        )
    return out


def seed_sweep(
    task: SoftmaxRegressionTask,
    configs: Mapping[str, af.AdafactorHyperparameters],
    steps: int,
    seeds: Sequence[int],
    *,
    init_scale: float = 0.1,
    eval_every: int | None = None,
    desc: str = "runs",
) -> dict[str, dict[str, list]]:
    r""":func:`traced_run` of every setting in ``configs`` once per seed, each seed a new mini-batch order and start.

    Seed :math:`s` trains ``dataclasses.replace(task, seed=s)`` (its own batch of each step) from
    ``task.init(init_scale, seed=s)`` (i.i.d. :math:`N(0, \text{init\_scale}^2)` weights; all zero
    for ``init_scale=0``, when only the batch order changes with the seed). Every setting sees the
    same batches and start for a given seed, and seed 0 reproduces :func:`sweep` of the task with
    ``seed=0`` from ``task.init(init_scale, 0)``.

    Returns, for each key of ``configs`` (strings, so that the result can be stored as JSON), a dict
    of lists with one entry per seed, in the order of ``seeds``: ``"train loss"``, ``"test loss"``,
    ``"test accuracy"`` (at the last step), ``"clipped"`` (fraction of steps with
    :math:`\mathrm{RMS}(U_t) > d`, i.e. :math:`\hat U_t \ne U_t`) and ``"rms_x"`` (final
    :math:`\mathrm{RMS}(X)`). With ``eval_every``, also ``"eval_t"`` (the evaluation steps, from 0)
    and, per seed, the curves ``"train loss curve"`` and ``"rms_x curve"`` at those steps.
    Summarise over seeds with :func:`optbook.analysis.seeds.summarize`.
    """
    from optbook.progress import progress

    if not isinstance(task, SoftmaxRegressionTask):
        raise TypeError(f"task must be a SoftmaxRegressionTask, got {type(task).__name__}.")
    if not isinstance(configs, Mapping) or not configs:
        raise ValueError("configs must be a non-empty mapping name -> AdafactorHyperparameters.")
    for key, hp in configs.items():
        if not isinstance(key, str):
            raise TypeError(f"configs keys must be strings (they become JSON keys), got {key!r}; use e.g. f'd={{d:g}}'.")
        if not isinstance(hp, af.AdafactorHyperparameters):
            raise TypeError(f"configs[{key!r}] must be an AdafactorHyperparameters, got {type(hp).__name__}.")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of whole numbers >= 0, got {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed repeats the same run), got {seeds!r}.")
    if not (np.isfinite(init_scale) and init_scale >= 0):
        raise ValueError(f"init_scale must be a finite number >= 0 (0 starts at zero), got {init_scale!r}.")
    if eval_every is not None and (int(eval_every) != eval_every or eval_every < 1):
        raise ValueError(f"eval_every must be None (final losses only) or a whole number >= 1, got {eval_every!r}.")
    curves = eval_every is not None
    out: dict[str, dict[str, list]] = {
        key: {name: [] for name in ("train loss", "test loss", "test accuracy", "clipped", "rms_x")}
        for key in configs
    }
    jobs = [(key, int(s)) for key in configs for s in seeds]
    for key, s in progress(jobs, desc=desc):
        seeded = replace(task, seed=s)
        x0 = task.init(init_scale, seed=s)
        run = traced_run(x0, seeded.grad, int(steps), configs[key], loss=seeded.loss, test_loss=seeded.test_loss,
                         eval_every=int(eval_every) if curves else int(steps))
        rec = out[key]
        rec["train loss"].append(float(run.loss[-1]))
        rec["test loss"].append(float(run.test_loss[-1]))
        rec["test accuracy"].append(float(seeded.test_accuracy(run.x)))
        rec["clipped"].append(float(np.mean(run.rms_u > run.rms_u_hat * (1 + 1e-12))))
        rec["rms_x"].append(float(run.rms_x[-1]))
        if curves:
            rms_path = np.concatenate([[af.rms(x0)], run.rms_x])
            rec["eval_t"] = [int(t) for t in run.eval_t]
            rec.setdefault("train loss curve", []).append([float(v) for v in run.loss])
            rec.setdefault("rms_x curve", []).append([float(rms_path[t]) for t in run.eval_t])
    return out


def run_summary(run: TracedRun) -> dict[str, float]:
    """Final training and test loss, largest training loss, largest :math:`\\mathrm{RMS}(X_t)`, and the
    fraction of steps with :math:`\\mathrm{RMS}(U_t) > 1` (before clipping) of one traced run."""
    if not isinstance(run, TracedRun):
        raise TypeError(f"run must be a TracedRun (from traced_run or sweep), got {type(run).__name__}.")
    return {"final train loss": run.loss[-1], "final test loss": run.test_loss[-1], "max train loss": np.nanmax(run.loss),
            "max RMS(X)": run.rms_x.max(), "steps with RMS(U)>1": np.mean(run.rms_u > 1.0)}


def robust_run_summary(run: TracedRun, *, diverged_loss: float, rms_x_bound: float) -> dict[str, str]:
    """:func:`run_summary` as text with 4 decimals, or, for a run that blew up, only what is robust.

    A run whose largest training loss exceeds ``diverged_loss`` is chaotic from then on: its
    later values change with the last bit of any sum, so it is shown as "diverged", its peak
    loss to whole units, and ``RMS(X) > rms_x_bound`` (checked: a ``ValueError`` if false).
    """
    summary = run_summary(run)
    if summary["max train loss"] <= diverged_loss:
        return {k: f"{v:.4f}" for k, v in summary.items()}
    if not summary["max RMS(X)"] > rms_x_bound:
        raise ValueError(f"a diverged run must have max RMS(X) > rms_x_bound = {rms_x_bound}, "
                         f"got {summary['max RMS(X)']:.4g}; lower rms_x_bound.")
    return {"final train loss": "diverged", "final test loss": "diverged",
            "max train loss": f"{summary['max train loss']:.0f}", "max RMS(X)": f"> {rms_x_bound}",
            "steps with RMS(U)>1": "n/a"}


def jump_summary(run: TracedRun, baseline: TracedRun, t0: int, window: int = 50) -> dict[str, float]:
    """What a jump of the gradient scale at step ``t0`` did to ``run``, next to the same run without it.

    The loss just before the jump (``loss[t0 - 1]``), the largest loss over steps ``t0 .. t0 + window``,
    the largest :math:`\\mathrm{RMS}(U_t)` from ``t0`` on, the final training and test loss, and the
    final training loss of ``baseline`` (the run without the jump).
    """
    if not isinstance(t0, (int, np.integer)) or not 1 <= t0 < len(run.loss):
        raise ValueError(f"t0 must be a step of the run, 1 <= t0 < {len(run.loss)}, got {t0!r}.")
    return {"loss at t0-1": run.loss[t0 - 1], f"max loss, t0..t0+{window}": run.loss[t0:t0 + window + 1].max(),
            "max RMS(U), t>=t0": run.rms_u[t0 - 1:].max(),
            "final train loss": run.loss[-1], "final test loss": run.test_loss[-1],
            "final train loss, no jump": baseline.loss[-1]}
