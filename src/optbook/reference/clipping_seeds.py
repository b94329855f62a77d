r"""The update-clipping experiments over several seeds: per-run statistics, seed bands, and tables.

The chapter on update clipping trains multinomial logistic regression
(:class:`optbook.reference.instability.SoftmaxRegressionTask`) with the NumPy reference Adafactor for
every combination of a cap on :math:`\rho_t`, a decay schedule :math:`\hat\beta_{2t}` and a clipping
threshold :math:`d`. One run is one draw: the mini-batch order and the start point :math:`X_0` are random.
:func:`seed_runs` repeats every configuration for each seed :math:`s` of a given list (the chapter uses
:math:`s = 0, \dots, 4`), each with its own batch order (``dataclasses.replace(task, seed=s)``) and its own start
(``task.init(scale, seed=s)``, entries :math:`N(0, \text{scale}^2)`), and keeps

* for every run the scalars of :func:`run_statistics` (final losses, peak loss, the size of the
  loss spike after a jump of the gradient scale at :math:`t_0`, ...), one list over seeds per scalar,
  to be summarised with :func:`optbook.analysis.seeds.summarize` and compared with
  :func:`optbook.analysis.seeds.compare`;
* for figures, a band per curve: the lowest, median and highest value over seeds at each plotted step.

A run *diverged* when its training loss rose above ``diverged_loss`` (the chapter uses ten times the
initial loss) or stopped being finite. From then on it is chaotic: the last bit of any sum changes its
later values. Its final losses are recorded as :math:`+\infty`, which
:func:`optbook.analysis.seeds.summarize` reports as "diverged".
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from optbook.analysis.seeds import SeedSummary, summarize
from optbook.reference import adafactor as af
from optbook.reference import instability as ins

__all__ = [
    "seeded_start",
    "run_statistics",
    "seed_runs",
    "by_config",
    "seed_summaries",
    "seed_table",
    "seed_slice",
]
__helpers__ = tuple(__all__)


def seeded_start(task: ins.SoftmaxRegressionTask, seed: int, *, scale: float = 0.1):
    """The task with the batch order of ``seed`` and the start point :math:`X_0 \\sim N(0, \\text{scale}^2)` of ``seed``.

    Returns ``(task_s, x0)`` with ``task_s = dataclasses.replace(task, seed=seed)`` and
    ``x0 = task_s.init(scale, seed=seed)``.
    """
    if not isinstance(task, ins.SoftmaxRegressionTask):
        raise TypeError(f"task must be an instability.SoftmaxRegressionTask, got {type(task).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}.")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0 (the std of the start point), got {scale!r}.")
    task_s = dataclasses.replace(task, seed=int(seed))
    return task_s, task_s.init(scale, seed=int(seed))


def _finite_or_inf(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.inf


def run_statistics(
    run: ins.TracedRun,
    task: ins.SoftmaxRegressionTask,
    *,
    diverged_loss: float,
    t0: int | None = None,
    window: int = 50,
    x0: np.ndarray | None = None,
) -> dict[str, float]:
    r"""Scalars of one traced run that the chapter compares across configurations.

    Always: ``diverged`` (1.0 if the training loss exceeded ``diverged_loss`` or stopped being finite,
    else 0.0), ``final_train`` and ``final_test`` (the last losses, :math:`+\infty` for a diverged run),
    ``initial_train`` (the loss at :math:`X_0`), ``peak_train`` (the largest training loss) and
    ``peak_ratio`` (``peak_train / initial_train``), ``max_rms_x`` (largest :math:`\mathrm{RMS}(X_t)`),
    ``frac_clipped`` (fraction of steps with :math:`\mathrm{RMS}(U_t) > 1` before clipping, counted
    whether or not the run clips),
    ``steps_rms_u_below_1e-2`` and ``min_rms_u`` (how far the update collapsed), ``grad_rms_end``
    (RMS of the mini-batch gradient of the last step at the final weights; :math:`+\infty` if they are not finite),
    and with ``x0`` (the start point) ``grad_rms_start``, the RMS of the mini-batch gradient of step 1 at ``x0``.

    With ``t0`` (the step at which the gradient scale jumps; the run must have been evaluated at every
    step): ``loss_before`` (loss at :math:`X_{t_0-1}`), ``spike`` (largest loss over :math:`X_{t_0}, \dots,
    X_{t_0+\text{window}}` divided by ``loss_before``), ``rms_u_t0`` (:math:`\mathrm{RMS}(U_{t_0})`),
    ``max_rms_u_after`` (largest :math:`\mathrm{RMS}(U_t)`, :math:`t \ge t_0`) and ``median_rms_u_before``
    (median of :math:`\mathrm{RMS}(U_t)`, :math:`t < t_0`).
    """
    if not isinstance(run, ins.TracedRun):
        raise TypeError(f"run must be a TracedRun (from instability.traced_run or sweep), got {type(run).__name__}.")
    if not (isinstance(diverged_loss, (int, float, np.floating)) and diverged_loss > 0):
        raise ValueError(f"diverged_loss must be a number > 0 (e.g. ten times the initial loss), got {diverged_loss!r}.")
    steps = len(run.rms_u)
    with np.errstate(invalid="ignore"):
        peak = float(np.nanmax(run.loss)) if np.any(np.isfinite(run.loss)) else math.inf
        diverged = bool(peak > diverged_loss or not np.all(np.isfinite(run.loss)))
    finite_x = bool(np.all(np.isfinite(run.x)))
    stats = {
        "diverged": float(diverged),
        "final_train": math.inf if diverged else float(run.loss[-1]),
        "final_test": math.inf if diverged else float(run.test_loss[-1]),
        "initial_train": float(run.loss[0]),
        "peak_train": _finite_or_inf(peak),
        "peak_ratio": _finite_or_inf(peak / run.loss[0]),
        "max_rms_x": _finite_or_inf(np.max(run.rms_x)) if np.all(np.isfinite(run.rms_x)) else math.inf,
        "frac_clipped": float(np.mean(run.rms_u > 1.0)),
        "steps_rms_u_below_1e-2": float(np.sum(run.rms_u < 1e-2)),
        "min_rms_u": _finite_or_inf(np.min(run.rms_u)) if np.all(np.isfinite(run.rms_u)) else math.inf,
        "grad_rms_end": _finite_or_inf(af.rms(task.grad(run.x, steps))) if finite_x and steps else math.inf,
    }
    if x0 is not None:
        stats["grad_rms_start"] = float(af.rms(task.grad(np.asarray(x0, dtype=float), 1)))
    if t0 is not None:
        if isinstance(t0, bool) or not isinstance(t0, (int, np.integer)) or not 2 <= t0 <= steps:
            raise ValueError(f"t0 must be a step of the run with a step before it, 2 <= t0 <= {steps}, got {t0!r}.")
        if not np.array_equal(run.eval_t, np.arange(steps + 1)):
            raise ValueError("the statistics of a jump need the loss at every step: run with eval_every=1.")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
            raise ValueError(f"window must be a whole number >= 0 (steps after t0), got {window!r}.")
        before = float(run.loss[t0 - 1])
        with np.errstate(all="ignore"):
            stats.update({
                "loss_before": _finite_or_inf(before),
                "spike": _finite_or_inf(np.max(run.loss[t0:t0 + window + 1]) / before),
                "rms_u_t0": _finite_or_inf(run.rms_u[t0 - 1]),
                "max_rms_u_after": _finite_or_inf(np.max(run.rms_u[t0 - 1:])),
                "median_rms_u_before": _finite_or_inf(np.median(run.rms_u[:t0 - 1])),
            })
    return stats


def _band(curves: Sequence[np.ndarray], index: np.ndarray, digits: int) -> list[list[float]]:
    """Lowest, median and highest value over seeds at ``index``, rounded to ``digits`` significant digits."""
    arr = np.array([np.asarray(c, dtype=float)[index] for c in curves])
    arr[~np.isfinite(arr)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (every seed diverged) gives NaN
        rows = [np.nanmin(arr, axis=0), np.nanmedian(arr, axis=0), np.nanmax(arr, axis=0)]
    return [[float(f"{v:.{digits}g}") if np.isfinite(v) else math.nan for v in row] for row in rows]


def seed_runs(
    task: ins.SoftmaxRegressionTask,
    configs: Mapping[tuple, af.AdafactorHyperparameters],
    steps: int,
    seeds: Iterable[int],
    *,
    diverged_factor: float = 10.0,
    scale: Callable[[int], float] | None = None,
    eval_every: int = 1,
    t0: int | None = None,
    window: int = 50,
    band_from: int = 0,
    band_stride: int = 1,
    bands: bool = True,
    rms_u_bands: Iterable[tuple] | None = None,
    band_digits: int = 4,
    init_scale: float = 0.1,
    desc: str = "seeds",
) -> list[dict]:
    r""":func:`optbook.reference.instability.sweep` of every configuration for every seed, reduced to statistics.

    For each seed :math:`s`, :func:`seeded_start` gives the batch order and the start point; a run
    diverged when its loss exceeds ``diverged_factor`` times the initial loss :math:`\ell(X_0)` of that seed.
    Returns one record per configuration, in the order of ``configs``::

        {"config": list(key), "seeds": [...], "stats": {name: [value per seed]},
         "bands": {"t_loss": steps, "loss": [lowest, median, highest],
                   "t_rms_u": steps, "rms_u": [lowest, median, highest]}}

    ``stats`` are those of :func:`run_statistics` (with ``t0``, ``window`` and the seed's start point). The
    bands hold every ``band_stride``-th recorded point from step ``band_from`` on, rounded to ``band_digits``
    significant digits (they are for figures): the training loss for every configuration, and
    :math:`\mathrm{RMS}(U_t)` for the configurations in ``rms_u_bands`` (all when ``None``);
    ``bands=False`` leaves them out. Keys of ``configs`` are tuples of
    JSON-able values (numbers and strings; an infinite threshold :math:`d` is stored as ``"inf"``).
    """
    from optbook.progress import progress

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct whole numbers, at least one, got {seeds!r}.")
    if not isinstance(configs, Mapping) or not configs:
        raise ValueError("configs must be a non-empty mapping (configuration tuple -> AdafactorHyperparameters).")
    for key in configs:
        if not isinstance(key, tuple):
            raise TypeError(f"configuration keys must be tuples such as (cap, schedule name, d), got {key!r}.")
    if not diverged_factor > 1:
        raise ValueError(f"diverged_factor must be > 1 (a multiple of the initial loss), got {diverged_factor!r}.")
    if isinstance(band_stride, bool) or not isinstance(band_stride, int) or band_stride < 1 or band_from < 0:
        raise ValueError(f"band_stride must be a whole number >= 1 and band_from >= 0, got {band_stride!r}, {band_from!r}.")
    rms_u_keys = set(configs) if rms_u_bands is None else set(rms_u_bands)
    if not rms_u_keys <= set(configs):
        raise ValueError(f"rms_u_bands names configurations that are not in configs: {sorted(map(str, rms_u_keys - set(configs)))}.")
    per_seed: dict[tuple, list[ins.TracedRun]] = {k: [] for k in configs}
    stats: dict[tuple, dict[str, list[float]]] = {k: {} for k in configs}
    for s in progress(seeds, desc=desc):
        task_s, x0 = seeded_start(task, s, scale=init_scale)
        diverged_loss = diverged_factor * task_s.loss(x0)
        for key, hp in configs.items():
            run = ins.traced_run(x0, task_s.grad, steps, hp, loss=task_s.loss, test_loss=task_s.test_loss,
                                 scale=scale, eval_every=eval_every)
            for name, value in run_statistics(run, task_s, diverged_loss=diverged_loss, t0=t0, window=window,
                                              x0=x0).items():
                stats[key].setdefault(name, []).append(value)
            if bands:
                per_seed[key].append(run)
    records = []
    for key in configs:
        record = {"config": [("inf" if isinstance(v, float) and math.isinf(v) else v) for v in key],
                  "seeds": seeds, "stats": stats[key]}
        if bands:
            runs = per_seed[key]
            t_l = runs[0].eval_t
            i_l = np.flatnonzero(t_l >= band_from)[::band_stride]
            record["bands"] = {"t_loss": t_l[i_l].tolist(), "loss": _band([r.loss for r in runs], i_l, band_digits)}
            if key in rms_u_keys:
                t_u = np.arange(1, steps + 1)
                i_u = np.flatnonzero(t_u >= band_from)[::band_stride]
                record["bands"].update(t_rms_u=t_u[i_u].tolist(), rms_u=_band([r.rms_u for r in runs], i_u, band_digits))
        records.append(record)
    return records


def _config_tuple(config: Sequence) -> tuple:
    return tuple(float(v) if v in ("inf", "-inf", "nan") else v for v in config)


def by_config(records: Sequence[Mapping]) -> dict[tuple, dict]:
    """The records of :func:`seed_runs` (or loaded back from JSON) keyed by their configuration tuple.

    ``"inf"`` becomes ``float("inf")`` again, and every stored value (a diverged run's ``"inf"`` and
    ``"nan"`` strings included) becomes a float; band values become NumPy arrays.
    """
    out = {}
    for rec in records:
        if not isinstance(rec, Mapping) or "config" not in rec or "stats" not in rec:
            raise TypeError("records must be the list that seed_runs returns (each with 'config' and 'stats').")
        stats = {name: [float(v) for v in values] for name, values in rec["stats"].items()}
        item = {"seeds": list(rec.get("seeds", [])), "stats": stats}
        if "bands" in rec:
            item["bands"] = {name: np.array(v, dtype=float) for name, v in rec["bands"].items()}
        out[_config_tuple(rec["config"])] = item
    return out


def seed_summaries(runs: Mapping[tuple, Mapping], stat: str) -> dict[tuple, SeedSummary]:
    """:func:`optbook.analysis.seeds.summarize` of the statistic ``stat`` for every configuration of :func:`by_config`."""
    out = {}
    for key, rec in runs.items():
        if stat not in rec["stats"]:
            raise KeyError(f"no statistic {stat!r} for {key}; available: {sorted(rec['stats'])}.")
        out[key] = summarize(rec["stats"][stat])
    return out


def seed_table(runs: Mapping[tuple, Mapping], columns: Mapping[str, str], *, key_names: Sequence[str],
               digits: int = 3, formats: Mapping[tuple, Callable[[object], str]] | None = None) -> list[dict[str, str]]:
    """One row per configuration: its key fields (named ``key_names``) and ``"mean ± std"`` over seeds
    (:meth:`SeedSummary.format` with ``digits``) of each statistic, for ``columns`` = {column title: statistic}.

    ``formats`` may map a key field's position to a function that writes it (e.g. ``d = inf`` as "none").
    """
    formats = dict(formats or {})
    rows = []
    for key, rec in runs.items():
        if len(key) != len(key_names):
            raise ValueError(f"key_names has {len(key_names)} names for the {len(key)} fields of {key}.")
        row = {name: formats.get(i, str)(v) for i, (name, v) in enumerate(zip(key_names, key))}
        for title, stat in columns.items():
            if stat not in rec["stats"]:
                raise KeyError(f"no statistic {stat!r} for {key}; available: {sorted(rec['stats'])}.")
            row[title] = summarize(rec["stats"][stat]).format(digits)
        rows.append(row)
    return rows


def seed_slice(runs: Mapping[tuple, Mapping], keys: Iterable[tuple], seed_index: int = 0,
               stats: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """The statistics of one seed (position ``seed_index``) for ``keys``: what a live re-run of that seed gives.

    Keys of the result are ``str(key)``, so that it can be compared with the live slice by
    :func:`optbook.tasks.stored_results.stored_results`.
    """
    out = {}
    for key in keys:
        if key not in runs:
            raise KeyError(f"no configuration {key!r}; stored: {list(runs)[:4]}...")
        rec = runs[key]["stats"]
        names = list(rec) if stats is None else list(stats)
        out[str(key)] = {name: rec[name][seed_index] for name in names}
    return out
