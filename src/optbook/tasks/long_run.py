r"""One long character-LM run per optimizer: :math:`10^4` steps, several seeds, and when each one stops improving.

The chapter "Adafactor in applications" asks one question that short runs cannot
answer: with momentum switched on (:math:`\beta_1 = 0.9`), does Adafactor still
need its update clipping (:math:`d = 1`) over a long run, or does the unclipped
optimizer (:math:`d = \infty`) keep up? It trains the character Transformer of
:mod:`optbook.tasks.charlm`, tiny enough that :math:`10^4` steps take seconds,
with three optimizers (:data:`CONFIGS`):

* ``"adafactor_noclip"``: :class:`optbook.Adafactor` with the paper's defaults
  (relative step :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)`, parameter scaling,
  :math:`\hat\beta_{2t} = 1 - t^{-0.8}`, :math:`\epsilon = (10^{-30}, 10^{-3})`),
  but :math:`\beta_1 = 0.9` and :math:`d = \infty`;
* ``"adafactor_clip"``: the same with :math:`d = 1`;
* ``"adamw"``: ``torch.optim.AdamW`` (betas 0.9, 0.999, weight decay 0.01) at a
  constant learning rate chosen on a short grid (:func:`tune_adamw`).

The model trains in float64: at this size a step costs the same in float64 as
in float32 (the time goes to per-tensor overhead, not arithmetic), and float64
keeps the first 200 steps reproducible across CPU kernel sets well within
the :math:`10^{-4}` relative tolerance of the chapter's live check.

Where a curve stops improving
-----------------------------
The per-step training loss is averaged over non-overlapping windows of
:math:`w` steps, :math:`\bar\ell_k` at step :math:`s_k = kw`
(:func:`optbook.tasks.charlm.window_mean`). Then

.. math::

    s_{\text{div}} &= \min\{s_k : \bar\ell_k > \min_{j \le k}\bar\ell_j + \delta\}
    &&\text{(divergence: a rise of } \delta \text{ nats above the best so far)} \\
    s_{\text{plat}} &= \min\{s_k : \bar\ell_k - \min_{k < j \le k + h}\bar\ell_j < \tau\}
    &&\text{(plateau: less than } \tau \text{ nats gained over the next } hw \text{ steps)}

(:func:`divergence_step`, :func:`plateau_step`); either is ``None`` when no
window qualifies. A non-finite loss counts as divergence at the first such step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

import optbook
from optbook.notation import symbol
from optbook.tasks import charlm
from optbook.tasks import text_corpus as tc

__all__ = [
    "LongRunSetup",
    "CONFIGS",
    "make_optimizer",
    "train_losses",
    "divergence_step",
    "plateau_step",
    "tune_adamw",
    "compute_long_runs",
    "summarise",
    "stored_tuning",
    "stored_long_run",
    "TUNING_FILE",
    "LONG_RUN_FILE",
]
__helpers__ = ("make_optimizer", "train_losses", "tune_adamw", "compute_long_runs", "summarise", "stored_tuning", "stored_long_run")

#: The three optimizers of the long run, in the order of the chapter.
CONFIGS = ("adafactor_noclip", "adafactor_clip", "adamw")


@dataclass(frozen=True)
class LongRunSetup:
    """Model, data and smoothing of the long run (see the module docstring)."""

    max_chars: int = 200_000
    context: int = 16
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 1
    d_ff: int = 64
    batch_size: int = 16
    val_batches: int = 4
    eval_every: int = 1000
    window: int = 100

    def key(self) -> dict:
        """The setup as a JSON-able dict (part of a stored experiment's key)."""
        return asdict(self)


@lru_cache(maxsize=4)
def _corpus(max_chars: int) -> tc.Corpus:
    return tc.load_stdlib_corpus(max_chars)


def make_optimizer(name: str, params, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer ``name`` (one of :data:`CONFIGS`) over ``params``; ``lr`` is required for ``"adamw"`` only."""
    if name == "adafactor_noclip":
        return optbook.Adafactor(params, beta1=0.9, d=float("inf"), foreach=True)
    if name == "adafactor_clip":
        return optbook.Adafactor(params, beta1=0.9, d=1.0, foreach=True)
    if name == "adamw":
        if lr is None or not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"adamw needs a learning rate lr > 0, got {lr!r}; take it from tune_adamw().")
        return torch.optim.AdamW(params, lr=float(lr), weight_decay=0.01, foreach=True)
    raise ValueError(f"name must be one of {CONFIGS}, got {name!r}.")


def _round(values: Sequence[float]) -> list[float]:
    return [float(f"{v:.10g}") if math.isfinite(v) else v for v in values]


def train_losses(
    name: str,
    seed: int,
    steps: int,
    *,
    lr: float | None = None,
    setup: LongRunSetup = LongRunSetup(),
    show_progress: bool = True,
) -> dict:
    """Train the tiny character LM from ``seed`` (weights and batches) for ``steps`` steps in float64.

    Returns ``{"train_loss": [...], "val_steps": [...], "val_loss": [...], "nonfinite_step": int or None}``,
    losses in nats per character rounded to 10 significant digits.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    corpus = _corpus(setup.max_chars)
    cfg = charlm.CharLMConfig(
        vocab_size=len(corpus.vocab), context=setup.context, d_model=setup.d_model,
        n_heads=setup.n_heads, n_layers=setup.n_layers, d_ff=setup.d_ff,
    )
    model = charlm.build_model(cfg, seed=seed, dtype=torch.float64)
    optimizer = make_optimizer(name, model.parameters(), lr)
    val = tc.fixed_batches(corpus.val, setup.val_batches, setup.batch_size, setup.context, seed=10_000)
    stream = tc.batches(corpus.train, setup.batch_size, setup.context, seed=seed)
    run = charlm.train(model, optimizer, stream, val, steps=steps, eval_every=setup.eval_every,
                       name=f"{name} seed {seed}", show_progress=show_progress)
    return {"train_loss": _round(run.train_loss), "val_steps": list(run.val_steps),
            "val_loss": _round(run.val_loss), "nonfinite_step": run.nonfinite_step}


def _checked_curve(steps, smoothed) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(steps, dtype=float)
    y = np.asarray(smoothed, dtype=float)
    if s.ndim != 1 or s.shape != y.shape or s.size == 0:
        raise ValueError(f"steps and smoothed must be 1-D of the same non-zero length, got {s.shape} and {y.shape}.")
    return s, y


@symbol(r"s_{\mathrm{div}}", "first window whose smoothed loss exceeds its running minimum by delta")
def divergence_step(steps: Sequence[int], smoothed: Sequence[float], rise: float) -> int | None:
    r""":math:`s_{\text{div}} = \min\{s_k : \bar\ell_k > \min_{j\le k}\bar\ell_j + \delta\}`, ``rise`` = :math:`\delta > 0`.

    A non-finite :math:`\bar\ell_k` counts as divergence at :math:`s_k`. ``None`` if no window qualifies.
    """
    s, y = _checked_curve(steps, smoothed)
    if not (isinstance(rise, (int, float)) and rise > 0):
        raise ValueError(f"rise must be a number > 0 (nats), got {rise!r}.")
    best = math.inf
    for k in range(len(y)):
        if not math.isfinite(y[k]) or y[k] > best + rise:
            return int(s[k])
        best = min(best, y[k])
    return None


@symbol(r"s_{\mathrm{plat}}", "first window after which the smoothed loss gains less than tau over the next h windows")
def plateau_step(steps: Sequence[int], smoothed: Sequence[float], horizon: int, tol: float) -> int | None:
    r""":math:`s_{\text{plat}} = \min\{s_k : \bar\ell_k - \min_{k<j\le k+h}\bar\ell_j < \tau\}`.

    ``horizon`` = :math:`h \ge 1` windows, ``tol`` = :math:`\tau > 0` nats.
    Only windows with :math:`h` windows after them are candidates; ``None`` if none qualifies.
    """
    s, y = _checked_curve(steps, smoothed)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a whole number of windows >= 1, got {horizon!r}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a number > 0 (nats), got {tol!r}.")
    for k in range(len(y) - horizon):
        if y[k] - np.min(y[k + 1:k + 1 + horizon]) < tol:
            return int(s[k])
    return None


def _job(args: tuple) -> dict:
    name, seed, steps, lr, setup, show = args
    torch.set_num_threads(1)
    return train_losses(name, seed, steps, lr=lr, setup=setup, show_progress=show)


def _map_runs(jobs: list[tuple], processes: int) -> list[dict]:
    """Run :func:`train_losses` for each job, in ``processes`` worker processes if > 1 (same results: each run is
    seeded on its own and single-threaded)."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a whole number >= 1, got {processes!r}.")
    if processes == 1:
        return [_job(j + (True,)) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_job, [j + (False,) for j in jobs]))


def tune_adamw(
    lrs: Sequence[float], steps: int, seed: int = 0, setup: LongRunSetup = LongRunSetup(), processes: int = 1
) -> dict:
    """AdamW at each learning rate of ``lrs`` for ``steps`` steps; the score is the mean training loss of the last 10%.

    Returns ``{"lrs": [...], "score": [...], "best_lr": float, "first_steps": [losses of the first 50 steps per lr]}``.
    ``processes`` > 1 runs the learning rates in parallel worker processes (the results do not change).
    """
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate.")
    scores, first = [], []
    runs = _map_runs([("adamw", seed, steps, float(lr), setup) for lr in lrs], processes)
    for run in runs:
        losses = run["train_loss"]
        tail = losses[-max(1, steps // 10):]
        scores.append(float(np.mean(tail)) if all(math.isfinite(v) for v in tail) else math.inf)
        first.append(losses[:50])
    best = float(lrs[int(np.argmin(scores))])
    return {"lrs": [float(v) for v in lrs], "score": _round(scores), "best_lr": best, "first_steps": first}


def compute_long_runs(
    steps: int, seeds: Sequence[int], adamw_lr: float, keep_first: int = 200, setup: LongRunSetup = LongRunSetup(),
    processes: int = 1,
) -> dict:
    """Every configuration of :data:`CONFIGS` for every seed: smoothed curves, validation losses and the first steps.

    Returns ``{config: {str(seed): {"window_steps", "smoothed", "first", "val_steps", "val_loss", "nonfinite_step"}}}``
    where ``smoothed`` are the window means of width ``setup.window`` and ``first`` the raw losses of the first
    ``keep_first`` steps. ``processes`` > 1 trains the runs in parallel worker processes (the results do not change).
    """
    out: dict = {name: {} for name in CONFIGS}
    jobs = [(name, seed, steps, adamw_lr if name == "adamw" else None, setup) for name in CONFIGS for seed in seeds]
    for (name, seed, *_), run in zip(jobs, _map_runs(jobs, processes)):
        window_steps, smoothed = charlm.window_mean(run["train_loss"], setup.window)
        out[name][str(seed)] = {
            "window_steps": window_steps, "smoothed": _round(smoothed), "first": run["train_loss"][:keep_first],
            "val_steps": run["val_steps"], "val_loss": run["val_loss"], "nonfinite_step": run["nonfinite_step"],
        }
    return out


def summarise(results: dict, rise: float, horizon: int, tol: float) -> list[dict]:
    """Per configuration: final smoothed and validation loss (mean and std over seeds) and each seed's s_div and s_plat."""
    rows = []
    for name, runs in results.items():
        finals = [r["smoothed"][-1] for r in runs.values()]
        vals = [r["val_loss"][-1] for r in runs.values()]
        rows.append({
            "config": name,
            "final smoothed loss mean": float(np.mean(finals)), "final smoothed loss std": float(np.std(finals)),
            "final val loss mean": float(np.mean(vals)), "final val loss std": float(np.std(vals)),
            "s_div per seed": [divergence_step(r["window_steps"], r["smoothed"], rise) for r in runs.values()],
            "s_plat per seed": [plateau_step(r["window_steps"], r["smoothed"], horizon, tol) for r in runs.values()],
        })
    return rows


#: The stored experiments of the chapter, relative to the repository root.
TUNING_FILE = "book/data/applications_long_run_tuning.json"
LONG_RUN_FILE = "book/data/applications_long_run.json"


def stored_tuning(
    lrs: Sequence[float] = (3e-3, 1e-2, 3e-2), steps: int = 2000, setup: LongRunSetup = LongRunSetup(), processes: int = 1
):
    """:func:`tune_adamw` through :func:`optbook.tasks.stored_results.stored_results`; live slice: 50 steps at ``lrs[0]``."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "adamw lr grid", "lrs": list(lrs), "steps": steps, "seed": 0, "setup": setup.key()}
    return stored_results(
        TUNING_FILE, key,
        compute=lambda: tune_adamw(lrs, steps, 0, setup, processes),
        check=lambda: train_losses("adamw", 0, 50, lr=lrs[0], setup=setup)["train_loss"],
        expected=lambda results: results["first_steps"][0],
        rtol=1e-6,
    )


def stored_long_run(
    adamw_lr: float, steps: int = 10_000, seeds: Sequence[int] = (0, 1, 2), check_steps: int = 200,
    setup: LongRunSetup = LongRunSetup(), processes: int = 1,
):
    """:func:`compute_long_runs` through the stored-results helper; live slice: the first ``check_steps``
    training losses of seed ``seeds[0]`` for every configuration, compared with the stored ones at rtol 1e-4
    (in float64, AdamW's larger early steps amplify a last-bit difference between CPU kernel sets to about 1e-5
    relative by step 200; Adafactor's stay near 1e-8)."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "long run", "configs": list(CONFIGS), "steps": steps, "seeds": list(seeds),
           "adamw_lr": float(adamw_lr), "keep_first": check_steps, "setup": setup.key()}
    s0 = seeds[0]
    return stored_results(
        LONG_RUN_FILE, key,
        compute=lambda: compute_long_runs(steps, seeds, adamw_lr, check_steps, setup, processes),
        check=lambda: {name: train_losses(name, s0, check_steps, lr=adamw_lr if name == "adamw" else None,
                                          setup=setup)["train_loss"] for name in CONFIGS},
        expected=lambda results: {name: results[name][str(s0)]["first"][:check_steps] for name in CONFIGS},
        rtol=1e-4,
    )
