r"""Experiments of the chapter on learning-rate schedules.

- :func:`make_schedule` builds the chapter's named schedules for a run of ``total`` updates;
  :func:`gallery` lists every schedule of :mod:`optbook.schedules` for the figure.
- :func:`digits_run` / :func:`digits_runs`: the MLP on scikit-learn's digits, trained with Adam
  under a schedule (float64, seeded data order and weights).
- :func:`charlm_run` / :func:`charlm_runs`: the character Transformer of
  :mod:`optbook.tasks.charlm` in a tiny configuration, under a schedule.
- :func:`update_rms_runs`: the root mean square of Adam's update per unit learning rate,
  :math:`\mathrm{RMS}(\Delta\theta_t/\eta_t)`, over the first steps of the character model, with and
  without warm-up (through :func:`optbook.tasks.experiments.update_rms_recorder`).
- :func:`noise_update_rms` and :func:`adaptive_rate_variance`: the same quantities for Adam fed
  pure Gaussian noise, where the statistics of :math:`\hat v_t` are known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch

from optbook import schedules as S

__all__ = [
    "DIGITS_SCHEDULES",
    "CHARLM_SCHEDULES",
    "make_schedule",
    "gallery",
    "digits_run",
    "digits_runs",
    "tiny_charlm_setup",
    "charlm_run",
    "charlm_runs",
    "update_rms_runs",
    "noise_update_rms",
    "adaptive_rate_variance",
    "mean_std",
    "stored_digits",
    "stored_charlm",
    "stored_update_rms",
    "final_table",
    "update_rms_summary",
]
__helpers__ = tuple(name for name in __all__ if name[0].islower())

DIGITS_SCHEDULES = ("constant", "step", "cosine", "warm-up + cosine", "one-cycle", "WSD", "inverse sqrt")
CHARLM_SCHEDULES = ("constant", "warm-up + constant", "warm-up + cosine", "WSD", "one-cycle")
_NAMES = DIGITS_SCHEDULES + ("warm-up + constant", "exponential", "SGDR")


def make_schedule(name: str, lr: float, total: int, warmup: int | None = None) -> Callable[[int], float]:
    r"""The schedule ``name`` with peak rate ``lr`` for a run of ``total`` updates (:math:`t = 0, \dots, T-1`).

    ``warmup`` defaults to :math:`\lceil T/20 \rceil`. Settings: step decay by 0.3 at every third
    of the run; exponential from ``lr`` to ``lr/100``; cosine to 0 at :math:`t = T`; SGDR with
    :math:`T_0 = T/7` and :math:`T_{\mathrm{mult}} = 2` (three cycles); one-cycle with torch's
    defaults; WSD with a linear decay over the last fifth; inverse sqrt is the Transformer's
    schedule divided by its peak, times ``lr``.
    """
    if name not in _NAMES:
        raise ValueError(f"name must be one of {_NAMES}, got {name!r}.")
    if isinstance(total, bool) or not isinstance(total, int) or total < 20:
        raise ValueError(f"total must be a whole number of updates >= 20, got {total!r}.")
    w = warmup if warmup is not None else math.ceil(total / 20)
    if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w < total // 2:
        raise ValueError(f"warmup must be a whole number in [1, total/2), got {warmup!r}.")
    table = {
        "constant": lambda: partial(S.constant_lr, lr0=lr),
        "warm-up + constant": lambda: S.with_warmup(partial(S.constant_lr, lr0=lr), w),
        "step": lambda: partial(S.step_decay_lr, lr0=lr, factor=0.3, every=math.ceil(total / 3)),
        "exponential": lambda: partial(S.exponential_lr, lr0=lr, gamma=0.01 ** (1.0 / total)),
        "cosine": lambda: partial(S.cosine_lr, lr0=lr, total=total),
        "warm-up + cosine": lambda: S.with_warmup(partial(S.cosine_lr, lr0=lr, total=total - w), w),
        "SGDR": lambda: partial(S.cosine_restarts_lr, lr0=lr, period=max(1, total // 7), period_mult=2),
        "one-cycle": lambda: partial(S.one_cycle_lr, lr_max=lr, total=total),
        "WSD": lambda: partial(S.wsd_lr, lr0=lr, warmup=w, stable=total - w - total // 5, decay=total // 5),
        "inverse sqrt": lambda: (lambda t: lr * S.noam_lr(t, 1, w) / S.noam_lr(w - 1, 1, w)),
    }
    return table[name]()


def gallery(total: int = 1000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    r"""Every schedule of :mod:`optbook.schedules` as ``{title: (t, eta_t)}``, for one figure.

    All but the Transformer's, T5's and Adafactor's run for ``total`` updates with peak 1;
    those three keep their papers' constants and step ranges.
    """
    from optbook.schedules.upstream import schedule_values

    T = int(total)
    w = T // 10
    entries = {
        "constant": (partial(S.constant_lr, lr0=1.0), T),
        "step decay (x0.5 every T/4)": (partial(S.step_decay_lr, lr0=1.0, factor=0.5, every=T // 4), T),
        "exponential (gamma^T = 0.01)": (partial(S.exponential_lr, lr0=1.0, gamma=0.01 ** (1 / T)), T),
        "cosine to a floor of 0.1": (partial(S.cosine_lr, lr0=1.0, total=T, lr_min=0.1), T),
        "SGDR (T_0 = T/15, T_mult = 2)": (partial(S.cosine_restarts_lr, lr0=1.0, period=T // 15, period_mult=2), T),
        "warm-up + cosine": (S.with_warmup(partial(S.cosine_lr, lr0=1.0, total=T - w), w), T),
        "warm-up + linear decay": (S.with_warmup(partial(S.linear_lr, lr0=1.0, lr_end=0.0, total=T - w), w), T),
        "one-cycle, cos and linear": ([partial(S.one_cycle_lr, lr_max=1.0, total=T),
                                       partial(S.one_cycle_lr, lr_max=1.0, total=T, anneal="linear")], T),
        "WSD (linear, cosine, 1-sqrt)": ([partial(S.wsd_lr, lr0=1.0, warmup=w, stable=6 * w, decay=3 * w, decay_shape=k)
                                          for k in S.warmup.WSD_DECAY_SHAPES], T),
        "Transformer (d_model = 512, w = 4000)": (partial(S.noam_lr, d_model=512, warmup=4000), 40_000),
        "T5: 1/sqrt(max(s, 10^4))": (partial(S.t5_inverse_sqrt_lr, k=10_000), 40_000),
        "Adafactor: min(10^-2, 1/sqrt(s))": (S.relative_step_lr, 40_000),
    }
    out = {}
    for title, (schedule, n) in entries.items():
        t = np.arange(n)
        if isinstance(schedule, list):
            out[title] = (t, np.stack([schedule_values(f, n) for f in schedule]))
        else:
            out[title] = (t, schedule_values(schedule, n))
    return out


def mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof=1) over the first axis (the seeds)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or len(values) < 2:
        raise ValueError(f"need values of at least 2 seeds along the first axis, got shape {values.shape}.")
    return values.mean(axis=0), values.std(axis=0, ddof=1)


# --- digits ---------------------------------------------------------------------------------


def digits_run(name: str, seed: int, *, lr: float = 3e-3, epochs: int = 10, total_epochs: int | None = None,
               batch_size: int = 32, hidden: int = 64) -> dict[str, list[float]]:
    """Train the seeded MLP on digits with Adam (float64) under schedule ``name``; per-epoch losses.

    The schedule is built for ``total_epochs`` (default ``epochs``) epochs, so a run of fewer
    epochs is the beginning of the full run: the live check of the stored results uses this.
    """
    from optbook import tasks

    data = tasks.digits()
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    total = steps_per_epoch * (total_epochs or epochs)
    model = tasks.mlp(data.x_train.shape[1], hidden, data.n_classes, seed=seed).to(torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    scheduler = S.lambda_lr(optimizer, make_schedule(name, lr, total))
    history = tasks.train_classifier(model, optimizer, data, epochs=epochs, batch_size=batch_size, seed=seed,
                                     on_step=lambda step: scheduler.step())
    return {"train_loss": history.train_loss, "test_loss": history.test_loss, "test_accuracy": history.test_accuracy}


def digits_runs(names: Sequence[str] = DIGITS_SCHEDULES, seeds: Sequence[int] = (0, 1, 2, 3, 4), **kwargs) -> dict:
    """:func:`digits_run` for every schedule and seed: ``{name: {metric: [per seed [per epoch]]}}``."""
    from optbook.progress import progress

    out: dict = {}
    for name in progress(list(names), desc="digits schedules"):
        runs = [digits_run(name, seed, **kwargs) for seed in seeds]
        out[name] = {k: [r[k] for r in runs] for k in runs[0]}
    return out


# --- character language model ----------------------------------------------------------------


def tiny_charlm_setup(max_chars: int = 200_000, context: int = 32, d_model: int = 32, n_layers: int = 2,
                      batch_size: int = 16, val_batches: int = 4):
    """``(corpus, config, val)``: a small stdlib corpus, a two-layer width-32 model config, fixed validation batches."""
    from optbook.tasks import charlm
    from optbook.tasks import text_corpus as tc

    corpus = tc.load_stdlib_corpus(max_chars, val_fraction=0.1)
    config = charlm.CharLMConfig(vocab_size=len(corpus.vocab), context=context, d_model=d_model, n_heads=2,
                                 n_layers=n_layers, d_ff=4 * d_model)
    val = tc.fixed_batches(corpus.val, val_batches, batch_size, context, seed=1)
    return corpus, config, val


def charlm_run(name: str, seed: int, *, lr: float = 1e-2, steps: int = 600, total: int | None = None,
               eval_every: int = 50, batch_size: int = 16) -> dict[str, list[float]]:
    """Train the tiny character model with Adam (float64) under ``name``; per-step train and periodic validation loss.

    The schedule is built for ``total`` updates (default ``steps``), so a shorter run is the
    beginning of the full one.
    """
    from optbook.tasks import charlm
    from optbook.tasks import text_corpus as tc

    corpus, config, val = tiny_charlm_setup(batch_size=batch_size)
    model = charlm.build_model(config, seed=seed, dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    scheduler = S.lambda_lr(optimizer, make_schedule(name, lr, total or steps))
    run = charlm.train(model, optimizer, tc.batches(corpus.train, batch_size, config.context, seed=seed), val,
                       steps=steps, eval_every=eval_every, scheduler=scheduler, show_progress=False)
    return {"train_loss": run.train_loss, "val_steps": run.val_steps, "val_loss": run.val_loss}


def charlm_runs(names: Sequence[str] = CHARLM_SCHEDULES, seeds: Sequence[int] = (0, 1, 2), **kwargs) -> dict:
    """:func:`charlm_run` for every schedule and seed: ``{name: {metric: [per seed [...]]}}``."""
    from optbook.progress import progress

    out: dict = {}
    for name in progress(list(names), desc="char LM schedules"):
        runs = [charlm_run(name, seed, **kwargs) for seed in seeds]
        out[name] = {k: [r[k] for r in runs] for k in runs[0]}
    return out


def update_rms_runs(seeds: Sequence[int] = (0, 1, 2), *, steps: int = 200, lr: float = 1e-2, warmup: int = 100,
                    batch_size: int = 16) -> dict:
    r""":math:`\mathrm{RMS}(\Delta\theta_t/\eta_t)` and the training loss per step, Adam on the tiny character model.

    Two settings per seed: a constant rate ``lr`` from the first step, and a linear warm-up to
    ``lr`` over ``warmup`` steps. Returns ``{setting: {"rms": [per seed], "loss": [per seed],
    "lr": [eta_t]}}``.
    """
    from optbook.tasks import charlm
    from optbook.tasks import text_corpus as tc
    from optbook.tasks.experiments import update_rms_recorder

    corpus, config, val = tiny_charlm_setup(batch_size=batch_size)
    schedules = {"no warm-up": partial(S.constant_lr, lr0=lr),
                 f"warm-up over {warmup} steps": S.with_warmup(partial(S.constant_lr, lr0=lr), warmup)}
    out: dict = {}
    for setting, schedule in schedules.items():
        eta = np.array([schedule(t) for t in range(steps)])
        rms_runs, loss_runs = [], []
        for seed in seeds:
            model = charlm.build_model(config, seed=seed, dtype=torch.float64)
            optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
            scheduler = S.lambda_lr(optimizer, schedule)
            on_step, rms = update_rms_recorder(model.parameters(), lr)  # Delta theta / lr; rescaled to eta_t below
            run = charlm.train(model, optimizer, tc.batches(corpus.train, batch_size, config.context, seed=seed),
                               val[:1], steps=steps, eval_every=steps, scheduler=None, show_progress=False,
                               on_step=lambda step: (on_step(step), scheduler.step()))
            rms_runs.append((np.array(rms) * lr / eta[: len(rms)]).tolist())
            loss_runs.append(run.train_loss)
        out[setting] = {"rms": rms_runs, "loss": loss_runs, "lr": eta.tolist()}
    return out


# --- Adam on pure noise -----------------------------------------------------------------------


def _check_mc(steps, n) -> None:
    for name, value, low in (("steps", steps, 1), ("n", n, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}.")


def noise_update_rms(steps: int, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, n: int = 100_000,
                     seed: int = 0) -> np.ndarray:
    r""":math:`\mathrm{RMS}(\hat m_t/(\sqrt{\hat v_t}+\epsilon))` for :math:`t = 1, \dots`, steps, with i.i.d. :math:`g_t \sim N(0, 1)` in ``n`` coordinates.

    Uses the formulas of :mod:`optbook.reference.adam`. For pure noise the update has no signal, so
    its size is set by how well :math:`\hat v_t` and :math:`\hat m_t` are estimated.
    """
    from optbook.reference import adam

    _check_mc(steps, n)
    rng = np.random.default_rng(seed)
    m = np.zeros(n)
    v = np.zeros(n)
    out = []
    for t in range(1, int(steps) + 1):
        g = rng.standard_normal(n)
        m, v = adam.first_moment(m, g, beta1), adam.second_moment(v, g, beta2)
        u = adam.adam_direction(adam.bias_correction(m, beta1, t), adam.bias_correction(v, beta2, t), eps)
        out.append(float(np.sqrt(np.mean(u * u))))
    return np.array(out)


def adaptive_rate_variance(steps: int, *, beta2: float = 0.999, n: int = 100_000, seed: int = 0) -> np.ndarray:
    r"""Sample variance over ``n`` draws of the adaptive rate :math:`\psi_t = 1/\sqrt{\hat v_t}`, :math:`t = 1, \dots`, steps, for :math:`g_t \sim N(0, 1)`.

    The exact variance is infinite while :math:`\hat v_t` rests on too few samples (:math:`t \le 2`
    here, since :math:`\mathbb E[1/\chi^2_k] = \infty` for :math:`k \le 2`), so for those
    :math:`t` the sample variance does not settle as ``n`` grows.
    """
    from optbook.reference import adam

    _check_mc(steps, n)
    rng = np.random.default_rng(seed)
    v = np.zeros(n)
    out = []
    for t in range(1, int(steps) + 1):
        g = rng.standard_normal(n)
        v = adam.second_moment(v, g, beta2)
        psi = 1.0 / np.sqrt(adam.bias_correction(v, beta2, t))
        out.append(float(np.var(psi, ddof=1)))
    return np.array(out)


# --- stored experiments of the chapter -----------------------------------------------------------

DATA = "book/data/schedules_{}.json"
DIGITS_SETTINGS = {"lr": 3e-3, "epochs": 10, "batch_size": 32, "hidden": 64}
CHARLM_SETTINGS = {"lr": 1e-2, "steps": 500, "eval_every": 50, "batch_size": 16}
RMS_SETTINGS = {"steps": 200, "lr": 1e-2, "warmup": 100, "batch_size": 16}
SEEDS_DIGITS = (0, 1, 2, 3, 4)
SEEDS_CHARLM = (0, 1, 2)


def stored_digits(check_name: str = "warm-up + cosine", check_epochs: int = 2):
    """The digits experiment through :func:`optbook.tasks.stored_results.stored_results`.

    The live check re-trains ``check_name`` with seed 0 for ``check_epochs`` epochs of the full
    schedule and compares its per-epoch losses with the stored run.
    """
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "digits MLP, Adam, float64", "schedules": list(DIGITS_SCHEDULES), "seeds": list(SEEDS_DIGITS),
           **DIGITS_SETTINGS}
    return stored_results(
        DATA.format("digits"), key,
        compute=lambda: digits_runs(DIGITS_SCHEDULES, SEEDS_DIGITS, **DIGITS_SETTINGS),
        check=lambda: digits_run(check_name, 0, **{**DIGITS_SETTINGS, "epochs": check_epochs},
                                 total_epochs=DIGITS_SETTINGS["epochs"])["test_loss"],
        expected=lambda res: res[check_name]["test_loss"][0][:check_epochs],
    )


def stored_charlm(check_name: str = "warm-up + cosine", check_steps: int = 20):
    """The character-model experiment, stored; the live check re-trains the first ``check_steps`` steps of one run."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "tiny char LM, Adam, float64", "schedules": list(CHARLM_SCHEDULES), "seeds": list(SEEDS_CHARLM),
           **CHARLM_SETTINGS}
    live = {**CHARLM_SETTINGS, "steps": check_steps, "total": CHARLM_SETTINGS["steps"]}
    return stored_results(
        DATA.format("charlm"), key,
        compute=lambda: charlm_runs(CHARLM_SCHEDULES, SEEDS_CHARLM, **CHARLM_SETTINGS),
        check=lambda: charlm_run(check_name, 0, **live)["train_loss"],
        expected=lambda res: res[check_name]["train_loss"][0][:check_steps],
    )


def stored_update_rms(check_steps: int = 15):
    """The update-RMS experiment, stored; the live check re-runs seed 0 of both settings for ``check_steps`` steps."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "RMS of Adam's update per unit rate, tiny char LM, float64", "seeds": list(SEEDS_CHARLM),
           **RMS_SETTINGS}
    return stored_results(
        DATA.format("update_rms"), key,
        compute=lambda: update_rms_runs(SEEDS_CHARLM, **RMS_SETTINGS),
        check=lambda: {k: v["rms"][0] for k, v in
                       update_rms_runs((0,), **{**RMS_SETTINGS, "steps": check_steps}).items()},
        expected=lambda res: {k: v["rms"][0][:check_steps] for k, v in res.items()},
    )


def final_table(results: dict, names: Sequence[str], metrics: Sequence[str], index: int = -1):
    """A DataFrame of mean and sample std over seeds of ``results[name][metric][seed][index]``, one row per schedule."""
    import pandas as pd

    rows = {}
    for name in names:
        if name not in results:
            raise KeyError(f"no results for schedule {name!r}; stored ones: {sorted(results)}.")
        row = {}
        for metric in metrics:
            mean, std = mean_std([run[index] for run in results[name][metric]])
            row[f"{metric} mean"], row[f"{metric} std"] = float(mean), float(std)
        rows[name] = row
    return pd.DataFrame(rows).T


def update_rms_summary(results: dict, steady: tuple[int, int] = (150, 200), last: int = 20):
    r"""One row per setting of :func:`update_rms_runs`: the update per unit rate at :math:`t = 1` and :math:`t = 20`,
    the largest actual step :math:`\mathrm{RMS}(\Delta\theta_t)` and where it occurs, the mean step over ``steady``
    (Adam's steps, 1-based, inclusive-exclusive), and the training loss over the ``last`` steps (mean and std over seeds).
    """
    import pandas as pd

    rows = {}
    for setting, v in results.items():
        rms = np.asarray(v["rms"], dtype=float)
        step = rms * np.asarray(v["lr"], dtype=float)
        loss_mean, loss_std = mean_std([np.mean(run[-last:]) for run in v["loss"]])
        rows[setting] = {
            "RMS(u_1)": rms[:, 0].mean(),
            "RMS(u_20)": rms[:, 19].mean(),
            "largest RMS step": step.max(axis=1).mean(),
            "at t (mean)": (step.argmax(axis=1) + 1).mean(),
            f"mean RMS step, t = {steady[0] + 1}-{steady[1]}": step[:, steady[0]:steady[1]].mean(),
            f"train loss, last {last} steps": float(loss_mean),
            "train loss std": float(loss_std),
        }
    return pd.DataFrame(rows).T
