r"""The "Which optimizer to choose?" table, computed from measurements.

Every cell of the chapter's summary table comes from a function here, applied to
runs the chapter shows:

* :func:`state_bytes_per_parameter` and :func:`state_tensor_names`: what an optimizer
  holds, measured on the tensors of its state (a wrapper's inner optimizer included);
* :func:`stored_lr_sweep`: every optimizer at a few multiples of its default learning
  rate, on several tasks and seeds, stored once in ``book/data/`` and re-checked live;
* :func:`seed_statistics`: for each task and optimizer, the learning rate whose seed-mean
  test loss is lowest, and the mean :math:`\bar L` and sample standard deviation :math:`s` over
  seeds there (:func:`optbook.analysis.seeds.summarize`);
* :func:`lr_sensitivity`: worst over best seed-mean test loss over the learning-rate grid;
* :func:`clearly_better`: the rule by which one optimizer is called better than another;
* :func:`when_to_try` and :func:`versus`: short phrases computed from these numbers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from optbook.notation import symbol

__all__ = [
    "state_bytes_per_parameter",
    "state_tensor_names",
    "stored_lr_sweep",
    "seed_statistics",
    "lr_sensitivity",
    "clearly_better",
    "when_to_try",
    "versus",
]

__helpers__ = (
    "state_tensor_names",
    "stored_lr_sweep",
    "seed_statistics",
    "when_to_try",
    "versus",
)


def _optimizers(optimizer) -> list:
    """The optimizer and every optimizer it wraps (``.optimizer``, as in Lookahead), outermost first."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.")
    chain, seen = [], set()
    while isinstance(optimizer, torch.optim.Optimizer) and id(optimizer) not in seen:
        chain.append(optimizer)
        seen.add(id(optimizer))
        optimizer = getattr(optimizer, "optimizer", None)
    return chain


@symbol(r"\mathrm{bytes}(S)/P", "measured optimizer state per parameter (bytes)")
def state_bytes_per_parameter(optimizer, n_params: int) -> float:
    r"""Bytes of the optimizer's state per parameter, :math:`\mathrm{bytes}(S)/P`.

    :math:`\mathrm{bytes}(S)` is :func:`optbook.analysis.memory.optimizer_state_bytes` of
    ``optimizer`` plus that of every optimizer it wraps (a ``Lookahead`` keeps its slow
    weights and its inner optimizer keeps :math:`m, v`); :math:`P` is ``n_params``, the
    number of parameters it trains. Take one step first: most optimizers create their
    state lazily.
    """
    from optbook.analysis.memory import optimizer_state_bytes

    if isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer)) or n_params < 1:
        raise ValueError(f"n_params must be a positive integer (the number of parameters trained), got {n_params!r}.")
    return sum(optimizer_state_bytes(opt) for opt in _optimizers(optimizer)) / int(n_params)


def state_tensor_names(optimizer) -> str:
    """The names of the state tensors with at least one dimension, in first-seen order, joined by ", ".

    Scalar counters (0-d tensors such as ``"step"``) are left out; a wrapped optimizer's
    names follow its wrapper's. ``"none"`` when there are none (plain SGD).
    """
    names: list[str] = []
    for opt in _optimizers(optimizer):
        for state in opt.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() >= 1 and str(key) not in names:
                    names.append(str(key))
    return ", ".join(names) if names else "none"


def stored_lr_sweep(path: str, setups: Mapping[str, tuple], base_lr: Mapping[str, float], factors: Sequence[float],
                    seeds: Sequence[int], *, check: tuple[str, str, float, int], rtol: float = 1e-6):
    r"""The sweep :func:`optbook.tasks.lr_factor_sweep_seeds`, stored in ``path`` and re-checked live.

    ``setups`` maps a task name to ``(data, train_kwargs)`` as for
    :func:`optbook.tasks.lr_factor_sweep`; the experiment's key holds the tasks' keyword
    arguments, the base rates, the factors and the seeds (float64 throughout). ``check`` is
    ``(task, optimizer, factor, seed)``: that one run is re-trained live on every load and
    its final train and test loss must agree with the stored row to ``rtol``.
    Returns :class:`optbook.tasks.stored_results.StoredResults` whose ``results["rows"]``
    are the sweep's rows.
    """
    from optbook import tasks
    from optbook.tasks.stored_results import stored_results

    task, name, factor, seed = check
    if task not in setups or name not in base_lr or factor not in tuple(factors) or seed not in tuple(seeds):
        raise ValueError(f"check must be (task, optimizer, factor, seed) taken from the sweep's grid, got {check!r}.")
    key = {"tasks": {t: dict(kw) for t, (_, kw) in setups.items()}, "base_lr": dict(base_lr),
           "factors": [float(f) for f in factors], "seeds": [int(s) for s in seeds], "dtype": "float64"}
    data, kwargs = setups[task]

    def run_slice():
        hist = tasks.train_run(name, base_lr[name] * factor, data, seed=seed, dtype=torch.float64, **kwargs)
        return {"test loss": hist.test_loss[-1], "train loss": hist.train_loss[-1]}

    def pick(results):
        row, = [r for r in results["rows"] if (r["task"], r["optimizer"], r["factor"], r["seed"]) == (task, name, factor, seed)]
        return {"test loss": row["test loss"], "train loss": row["train loss"]}

    return stored_results(path, key=key, compute=lambda: {"rows": tasks.lr_factor_sweep_seeds(setups, base_lr, factors, seeds)},
                          check=run_slice, expected=pick, rtol=rtol)


def _loss(value) -> float:
    """A stored loss as a float (a diverged run is stored as the string "inf")."""
    return float(value)


def _summary(task: str, name: str, factor: float, runs: Sequence[Mapping]):
    """:func:`optbook.analysis.seeds.summarize` of the test losses of ``runs`` (one per seed)."""
    from optbook.analysis.seeds import summarize

    try:
        return summarize(_loss(r["test loss"]) for r in runs)
    except ValueError as exc:
        raise ValueError(f"{task}/{name} at factor {factor}: {exc}") from None


def seed_statistics(rows: Sequence[Mapping]) -> list[dict]:
    r"""Per task and optimizer: the best factor by seed-mean test loss, and mean and spread over seeds there.

    ``rows`` are runs with keys ``"task"``, ``"optimizer"``, ``"factor"``, ``"lr"``, ``"seed"``,
    ``"test loss"`` (and optionally ``"test accuracy"``). For each (task, optimizer) the
    factor minimising :math:`\bar L = \frac1S\sum_s L_s` is chosen, so one rate serves all
    seeds; the row reports :math:`\bar L` ("mean") and the sample standard deviation
    :math:`s = \sqrt{\frac{1}{S-1}\sum_s (L_s-\bar L)^2}` ("std") at that factor, its rank
    among the task's optimizers (1 = lowest mean), and whether that factor is an end of
    the grid; with the rows' ``"test accuracy"`` and ``"train loss"``, also their means
    there ("accuracy", "train mean"). The statistics are :func:`optbook.analysis.seeds.summarize`'s:
    at least three seeds at every factor (``ValueError`` otherwise), and a factor where any seed
    diverged has mean :math:`+\infty`.
    """
    if not rows:
        raise ValueError("rows must be a non-empty list of runs (the rows of lr_factor_sweep_seeds).")
    needed = {"task", "optimizer", "factor", "lr", "seed", "test loss"}
    missing = needed - set(rows[0])
    if missing:
        raise ValueError(f"rows lack the keys {sorted(missing)}; pass the rows of optbook.tasks.lr_factor_sweep_seeds.")
    groups: dict[tuple, dict[float, list]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["optimizer"]), {}).setdefault(float(r["factor"]), []).append(r)
    out = []
    for (task, name), by_factor in groups.items():
        factors = sorted(by_factor)
        summaries = {f: _summary(task, name, f, by_factor[f]) for f in factors}
        best = min(factors, key=lambda f: summaries[f].mean)
        runs, s = by_factor[best], summaries[best]
        row = {"task": task, "optimizer": name, "factor": best, "lr": float(runs[0]["lr"]), "mean": s.mean,
               "std": s.std, "n_seeds": s.n, "at grid end": best in (factors[0], factors[-1])}
        if "test accuracy" in runs[0]:
            row["accuracy"] = float(np.mean([float(r["test accuracy"]) for r in runs]))
        if "train loss" in runs[0]:
            row["train mean"] = float(np.mean([_loss(r["train loss"]) for r in runs]))
        out.append(row)
    for task in {r["task"] for r in out}:
        these = sorted((r for r in out if r["task"] == task), key=lambda r: r["mean"])
        for rank, r in enumerate(these, 1):
            r["rank"] = rank
    return out


@symbol(r"\max_\eta \bar L(\eta) / \min_\eta \bar L(\eta)", "learning-rate sensitivity over a grid")
def lr_sensitivity(rows: Sequence[Mapping], task: str, optimizer: str) -> float:
    r"""Worst over best seed-mean test loss over the learning-rate grid, :math:`\max_\eta \bar L(\eta)/\min_\eta \bar L(\eta)`.

    :math:`\bar L(\eta)` is the mean over seeds of the final test loss of ``optimizer`` on
    ``task`` at rate :math:`\eta`. It is :math:`+\infty` if some rate diverged for some seed.
    1 means the grid did not matter.
    """
    by_factor: dict[float, list[float]] = {}
    for r in rows:
        if r["task"] == task and r["optimizer"] == optimizer:
            by_factor.setdefault(float(r["factor"]), []).append(_loss(r["test loss"]))
    if not by_factor:
        raise ValueError(f"no runs of {optimizer!r} on {task!r} in rows; check the names against the sweep's.")
    means = np.array([np.mean(v) for v in by_factor.values()])
    if not np.all(means > 0):
        raise ValueError("test losses must be positive for a ratio of losses.")
    return float(means.max() / means.min())


@symbol(r"\bar L_A + s_A < \bar L_B - s_B", "A is clearly better than B: the mean-plus-minus-spread intervals do not overlap")
def clearly_better(mean_a: float, std_a: float, mean_b: float, std_b: float) -> bool:
    r"""Whether A's loss is lower than B's by more than the seed spread: :math:`\bar L_A + s_A < \bar L_B - s_B`.

    The intervals :math:`\bar L \pm s` over seeds must not overlap, that is
    :math:`\bar L_B - \bar L_A > s_A + s_B`: the book's rule,
    :func:`optbook.analysis.seeds.compare_means`, returning ``"lower"``. A smaller difference is
    not claimed either way. Raises ``TypeError`` for a value that is not a number and
    ``ValueError`` for a negative or NaN standard deviation.
    """
    from optbook.analysis.seeds import compare_means

    return compare_means(mean_a, std_a, mean_b, std_b) == "lower"


def _stat(stats: Sequence[Mapping], task: str, name: str) -> Mapping:
    found = [r for r in stats if r["task"] == task and r["optimizer"] == name]
    if len(found) != 1:
        raise ValueError(f"no seed statistics for {name!r} on {task!r}; pass the output of seed_statistics.")
    return found[0]


def versus(stats: Sequence[Mapping], task: str, name: str, reference: str) -> str:
    """``"better than R"``, ``"worse than R"`` or ``"same as R"`` on ``task``, by :func:`clearly_better`.

    ``stats`` is the output of :func:`seed_statistics`; ``R`` is ``reference``. "Same" means
    the difference is within the seed spread.
    """
    a, b = _stat(stats, task, name), _stat(stats, task, reference)
    if clearly_better(a["mean"], a["std"], b["mean"], b["std"]):
        return f"better than {reference}"
    if clearly_better(b["mean"], b["std"], a["mean"], a["std"]):
        return f"worse than {reference}"
    return f"same as {reference}"


def when_to_try(stats: Sequence[Mapping], state_bytes: Mapping[str, float], sensitivity: Mapping[str, Mapping[str, float]],
                name: str, *, reference: str = "Adam", improved: Sequence[str] = ()) -> str:
    r"""A short verdict on optimizer ``name``, computed from the measurements by fixed rules.

    The phrases, in this order, joined by "; " (the task rules run over the tasks of ``stats``
    in their order of appearance):

    * "smallest state" if its bytes per parameter are the least of all, else "state < 1 B/param"
      below one byte;
    * "best on {task}" if its mean is the lowest and :func:`clearly_better` than every other
      optimizer's, "best on {task} (within seed spread)" if lowest but not clearly;
    * "beats {reference} on {task}" if clearly better than the reference but not best;
    * "worse than {reference} on {task}" (or "on both" / "on all") if clearly worse;
    * "sensitive to lr" if its :func:`lr_sensitivity`, the geometric mean over the tasks, is
      in the highest quarter of all optimizers'; "robust to lr" if in the lowest quarter and
      not worse than the reference on any task (a loss that is flat because every rate is
      poor is not robustness);
    * for a name in ``improved`` neither clearly better nor clearly worse than the reference
      on any task: "no better than {reference} here";
    * otherwise "no clear edge here".

    ``state_bytes`` maps every optimizer to its bytes per parameter, ``sensitivity`` every
    optimizer to a mapping task -> :func:`lr_sensitivity`.
    """
    for what, table in (("state_bytes", state_bytes), ("sensitivity", sensitivity)):
        if name not in table or reference not in table:
            raise ValueError(f"{what} must have entries for {name!r} and the reference {reference!r}.")
    tasks_ = list(dict.fromkeys(r["task"] for r in stats))
    phrases = []
    b = state_bytes[name]
    if b <= min(state_bytes.values()):
        phrases.append("smallest state")
    elif b < 1:
        phrases.append("state < 1 B/param")
    worse, beats = [], False
    for task in tasks_:
        mine = _stat(stats, task, name)
        if mine["rank"] == 1:
            others = [r for r in stats if r["task"] == task and r["optimizer"] != name]
            clear = all(clearly_better(mine["mean"], mine["std"], o["mean"], o["std"]) for o in others)
            phrases.append(f"best on {task}" + ("" if clear else " (within seed spread)"))
        if name != reference:
            verdict = versus(stats, task, name, reference)
            if verdict.startswith("better"):
                beats = True
                if mine["rank"] != 1:
                    phrases.append(f"beats {reference} on {task}")
            elif verdict.startswith("worse"):
                worse.append(task)
    if worse:
        where = " and ".join(worse)
        if len(worse) == len(tasks_) > 1:
            where = "both" if len(worse) == 2 else "all"
        phrases.append(f"worse than {reference} on {where}")
    geo = {n: float(np.exp(np.mean(np.log([sensitivity[n][t] for t in tasks_])))) for n in sensitivity}
    values = np.array(list(geo.values()))
    low, high = np.quantile(np.where(np.isfinite(values), values, np.finfo(float).max), [0.25, 0.75])
    if geo[name] >= high:
        phrases.append("sensitive to lr")
    elif geo[name] <= low and not worse:
        phrases.append("robust to lr")
    if name in improved and not beats and not worse:
        phrases.append(f"no better than {reference} here")
    return "; ".join(phrases) if phrases else "no clear edge here"
