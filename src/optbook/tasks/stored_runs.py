r"""Long training runs that a chapter stores, and re-checks live every time it runs.

A chapter's experiment may need minutes of CPU time: several optimizer
configurations trained for a few hundred steps each. Running all of it on
every execution would make the book's test suite too slow for CI, and skipping
it would leave numbers on the page that nothing checks. The compromise is this:

1. The full runs are stored once, by the author, in a JSON file beside the
   chapter (``book/data/``), together with a *key* that describes the
   experiment (model sizes, steps, seeds, optimizer settings).
2. Every time the chapter runs, each configuration (or each run that ``check``
   names, say one seed per configuration) is trained **live** for its
   first ``check_steps`` steps. Its training losses, and its validation losses
   at the steps both runs evaluated, must agree with the stored curve to a
   relative ``rtol``. Float64 training is deterministic up to the last bits of
   the CPU's kernels, so a stored run that came from different code, data or
   settings fails this check at once.
3. If the file is missing, its key differs from the experiment's, or the
   environment variable ``OPTBOOK_RECOMPUTE=1`` is set, the runs are done in
   full and the file is (re)written.

A stale file therefore stops the chapter with :class:`StoredRunsMismatch`,
which names the file and the command that rewrites it, instead of showing
numbers that the code no longer produces.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optbook.tasks.charlm import TrainingRun

__all__ = ["StoredRuns", "StoredRunsMismatch", "run_or_load", "RECOMPUTE_ENV", "FORMAT"]
__helpers__ = ("run_or_load",)

RECOMPUTE_ENV = "OPTBOOK_RECOMPUTE"
FORMAT = "optbook.stored_runs/1"

# A runner trains one configuration from scratch for the given number of steps
# and returns the run and whatever else the chapter wants from it (its optimizer).
Runner = Callable[[int], tuple[TrainingRun, Any]]


class StoredRunsMismatch(RuntimeError):
    """The live re-run of a stored configuration does not reproduce the stored curve."""


@dataclass
class StoredRuns:
    """The outcome of :func:`run_or_load`.

    ``runs`` holds the full-length runs (stored or just computed), ``extras``
    what each runner returned beside its run, from the live run (after
    ``check_steps`` steps, for the runs that ``check`` names; after all of them,
    for every run, when ``recomputed``), and
    ``max_rel_diff`` the largest relative difference found by the live check
    (0 when the runs were recomputed).
    """

    runs: dict[str, TrainingRun]
    extras: dict[str, Any]
    recomputed: bool
    steps: int
    check_steps: int
    rtol: float
    max_rel_diff: float
    path: Path


def _normalised(key: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(key, sort_keys=True))


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise StoredRunsMismatch(f"{path} is not a stored-runs file of format {FORMAT!r} (found {data.get('format')!r}).")
    return data


def _run_from_dict(d: Mapping[str, Any]) -> TrainingRun:
    return TrainingRun(
        name=d["name"], train_loss=list(d["train_loss"]), val_steps=list(d["val_steps"]),
        val_loss=list(d["val_loss"]), nonfinite_step=d["nonfinite_step"],
    )


def _relative_difference(live: TrainingRun, stored: TrainingRun) -> float:
    """Largest relative difference over the live run's training losses and shared validation points."""
    if len(live.train_loss) > len(stored.train_loss):
        return math.inf
    pairs = list(zip(live.train_loss, stored.train_loss))
    stored_val = dict(zip(stored.val_steps, stored.val_loss))
    pairs += [(v, stored_val[s]) for s, v in zip(live.val_steps, live.val_loss) if s in stored_val]
    worst = 0.0
    for a, b in pairs:
        if a == b:
            continue
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.inf
        worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
    return worst


def _recompute_requested() -> bool:
    return os.environ.get(RECOMPUTE_ENV, "") not in ("", "0")


def run_or_load(
    path: str | os.PathLike[str],
    key: Mapping[str, Any],
    runners: Mapping[str, Runner],
    *,
    steps: int,
    check_steps: int,
    rtol: float = 1e-9,
    recompute: bool | None = None,
    check: Collection[str] | None = None,
) -> StoredRuns:
    """Load the stored full-length runs and re-check them live, or compute and store them.

    ``key`` (JSON-serialisable) describes the experiment; ``runners[name](n)``
    trains configuration ``name`` from scratch for ``n`` steps. With
    ``recompute=None`` the decision follows ``$OPTBOOK_RECOMPUTE``. ``check``
    names the runs that are re-trained live on load (default: every run), for
    example one seed of each configuration when the others differ only in the
    seed; ``extras`` then holds only those runs' extras.
    """
    path = Path(path)
    if not 1 <= check_steps <= steps:
        raise ValueError(f"check_steps must be between 1 and steps={steps}, got {check_steps}.")
    if not runners:
        raise ValueError("runners is empty; pass at least one configuration to run.")
    if check is None:
        check = list(runners)
    elif isinstance(check, str) or not check or not set(check) <= set(runners):
        raise ValueError(f"check must be a non-empty collection of names from runners, got {check!r}; "
                         f"pass names such as {next(iter(runners))!r}, or None to check every run.")
    else:
        check = [name for name in runners if name in set(check)]
    if recompute is None:
        recompute = _recompute_requested()
    stored = None if recompute else _load(path)
    if stored is not None and (stored["key"] != _normalised(key) or stored["steps"] != steps
                               or set(stored["runs"]) != set(runners)):
        stored = None  # a different experiment: compute it afresh

    if stored is None:
        runs, extras = {}, {}
        for name, runner in runners.items():
            runs[name], extras[name] = runner(steps)
        payload = {"format": FORMAT, "key": _normalised(key), "steps": steps,
                   "runs": {name: asdict(run) for name, run in runs.items()}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1) + "\n")
        return StoredRuns(runs, extras, True, steps, check_steps, rtol, 0.0, path)

    runs = {name: _run_from_dict(stored["runs"][name]) for name in runners}
    extras, worst = {}, 0.0
    for name in check:
        live, extras[name] = runners[name](check_steps)
        diff = _relative_difference(live, runs[name])
        if not diff <= rtol:
            raise StoredRunsMismatch(
                f"{name!r}: the first {check_steps} live steps differ from the run stored in {path} "
                f"(relative difference {diff:.3g} > {rtol:g}). The code, data or settings changed since the "
                f"file was written; re-run the chapter with {RECOMPUTE_ENV}=1 to recompute and store the runs."
            )
        worst = max(worst, diff)
    return StoredRuns(runs, extras, False, steps, check_steps, rtol, worst, path)
