r"""Results of an experiment too long to re-run on every execution, stored with a checksum and re-checked live.

:mod:`optbook.tasks.stored_runs` does this for character-LM training runs; this
module does it for any experiment whose results are numbers: a sweep, a heat
map, several seeds of several optimizers, a run of :math:`10^4` steps.

The contract, for a chapter that calls :func:`stored_results`:

1. ``compute()`` runs the **full** experiment, once, on the author's machine.
   Its results are written to a JSON file under ``book/data/``, together with
   the experiment's *key* (sizes, steps, seeds, settings) and the SHA-256 of
   the canonical JSON of key and results.
2. On every later execution the file is loaded, its SHA-256 is recomputed and
   must equal the recorded one (a hand-edited or truncated file fails), and
   ``check()`` re-runs a **small slice** of the experiment live. Its numbers
   must agree, to ``rtol``/``atol``, with the same slice taken out of the
   stored full results by ``expected(results)`` (or, without ``expected``,
   with the check's own output recorded when the file was written).
3. A missing file, a key that differs from the experiment's, or the
   environment variable ``OPTBOOK_RECOMPUTE=1`` runs ``compute()`` and
   rewrites the file.

A live slice that disagrees raises :class:`StoredResultsMismatch`, which names
the file and the command that rewrites it: the page never shows numbers the
code no longer produces.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "StoredResults",
    "StoredResultsMismatch",
    "StoredResultsCorrupt",
    "stored_results",
    "payload_sha256",
    "RESULTS_FORMAT",
]
__helpers__ = ("stored_results", "payload_sha256")

RESULTS_FORMAT = "optbook.stored_results/1"
_RECOMPUTE_ENV = "OPTBOOK_RECOMPUTE"


class StoredResultsMismatch(RuntimeError):
    """The live slice of a stored experiment does not reproduce the stored numbers."""


class StoredResultsCorrupt(RuntimeError):
    """A stored-results file whose checksum does not match its contents, or that is not such a file."""


@dataclass(frozen=True)
class StoredResults:
    """The outcome of :func:`stored_results`.

    ``results`` are the full results as JSON gives them back (lists, not
    arrays); ``sha256`` the checksum of key and results; ``max_rel_diff`` the
    largest relative difference between the live slice and the stored one
    (0.0 when the file was just computed and the slice is taken from it).
    """

    results: Any
    sha256: str
    recomputed: bool
    max_rel_diff: float
    rtol: float
    atol: float
    path: Path


def _jsonable(value: Any) -> Any:
    """Plain JSON types from NumPy arrays and scalars, tuples and nested mappings."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"result keys must be strings, got {k!r}; convert them with str().")
            out[k] = _jsonable(v)
        return out
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if not math.isfinite(x):
            # JSON has no NaN or infinity; a diverged run is stored as a string.
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return x
    if isinstance(value, str) or value is None:
        return value
    raise TypeError(
        f"cannot store a {type(value).__name__} in a results file; return floats, ints, strings, "
        "lists, dicts or NumPy arrays from compute() and check()."
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def payload_sha256(key: Any, results: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``{"key": key, "results": results}``."""
    return hashlib.sha256(_canonical({"key": _jsonable(key), "results": _jsonable(results)}).encode()).hexdigest()


def _numbers(value: Any, where: str) -> list[tuple[str, float]]:
    """Flatten nested results into (location, number) pairs; strings must match exactly elsewhere."""
    if isinstance(value, Mapping):
        return [pair for k in sorted(value) for pair in _numbers(value[k], f"{where}[{k!r}]")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _numbers(v, f"{where}[{i}]")]
    if isinstance(value, str):
        return [(where, float(value))] if value in ("nan", "inf", "-inf") else [(where, value)]  # type: ignore[list-item]
    if value is None:
        return [(where, None)]  # type: ignore[list-item]
    return [(where, float(value))]


def _compare(live: Any, stored: Any, rtol: float, atol: float, path: Path) -> float:
    live_pairs, stored_pairs = _numbers(_jsonable(live), "check"), _numbers(_jsonable(stored), "check")
    if [w for w, _ in live_pairs] != [w for w, _ in stored_pairs]:
        raise StoredResultsMismatch(
            f"the live slice of {path} has a different structure from the stored one "
            f"({len(live_pairs)} against {len(stored_pairs)} values). The experiment changed: "
            f"rewrite the file with {_RECOMPUTE_ENV}=1."
        )
    worst = 0.0
    for (where, a), (_, b) in zip(live_pairs, stored_pairs):
        if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
            if a != b:
                raise StoredResultsMismatch(f"{path}: {where} is {a!r} live but {b!r} stored; rewrite with {_RECOMPUTE_ENV}=1.")
            continue
        if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                raise StoredResultsMismatch(f"{path}: {where} is {a} live but {b} stored; rewrite with {_RECOMPUTE_ENV}=1.")
            continue
        diff = abs(a - b)
        if diff > atol + rtol * abs(b):
            raise StoredResultsMismatch(
                f"{path}: the live slice gives {where} = {a!r}, the stored file {b!r} "
                f"(relative difference {diff / max(abs(b), 1e-300):.2e} > rtol {rtol:g}). The code, data or settings "
                f"changed since the file was written: rewrite it with {_RECOMPUTE_ENV}=1 and commit it."
            )
        if b != 0.0:
            worst = max(worst, diff / abs(b))
    return worst


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    # Relative paths are relative to the repository root (the folder that holds _toc.yml),
    # so a chapter finds book/data/ whatever its working directory.
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder / p
    # Outside the repository a relative path would silently recompute the whole experiment
    # into a new folder; say so instead.
    raise FileNotFoundError(
        f"{p} is relative to the book's repository root (the folder with _toc.yml), and none was found "
        f"above {here}. Run the chapter from inside the repository, or pass an absolute path."
    )


def stored_results(
    path: str | os.PathLike[str],
    key: Mapping[str, Any],
    compute: Callable[[], Any],
    check: Callable[[], Any],
    expected: Callable[[Any], Any] | None = None,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
) -> StoredResults:
    """Load the experiment ``key`` from ``path`` and re-check a slice of it live, or compute and store it.

    Parameters
    ----------
    path:
        The JSON file, relative to the repository root or absolute.
    key:
        A JSON-able description of the experiment. A stored file with another
        key is recomputed.
    compute:
        Runs the full experiment and returns its results (JSON-able; NumPy
        arrays and scalars are converted; NaN and infinities become strings).
    check:
        Runs a small slice of the experiment live and returns its numbers.
    expected:
        Takes the stored results and returns the same slice, so that the live
        slice is compared with the full results. Without it, the check's own
        output recorded when the file was written is the reference.
    rtol, atol:
        The agreement required, per number: ``|live - stored| <= atol + rtol*|stored|``.
    """
    if not isinstance(key, Mapping):
        raise TypeError(f"key must be a mapping (a dict describing the experiment), got {type(key).__name__}.")
    for name, fn in (("compute", compute), ("check", check)):
        if not callable(fn):
            raise TypeError(f"{name} must be a function of no arguments, got {type(fn).__name__}.")
    if expected is not None and not callable(expected):
        raise TypeError(f"expected must be a function of the stored results or None, got {type(expected).__name__}.")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}.")
    file = _resolve(path)
    key_json = _jsonable(key)
    stored = None
    if file.exists() and os.environ.get(_RECOMPUTE_ENV) != "1":
        try:
            stored = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise StoredResultsCorrupt(f"{file} is not valid JSON ({err}); rewrite it with {_RECOMPUTE_ENV}=1.") from None
        if not isinstance(stored, dict) or stored.get("format") != RESULTS_FORMAT:
            raise StoredResultsCorrupt(
                f"{file} is not a stored-results file (format {RESULTS_FORMAT!r}); move it away or rewrite it with {_RECOMPUTE_ENV}=1."
            )
        if stored.get("key") != key_json:
            stored = None  # another experiment: recompute below
    if stored is not None:
        digest = payload_sha256(stored["key"], stored["results"])
        if digest != stored.get("sha256"):
            raise StoredResultsCorrupt(
                f"{file}: the recorded SHA-256 {str(stored.get('sha256'))[:12]}… does not match the contents "
                f"({digest[:12]}…); the file was edited by hand or truncated. Rewrite it with {_RECOMPUTE_ENV}=1."
            )
        reference = expected(stored["results"]) if expected is not None else stored.get("check")
        worst = _compare(check(), reference, float(rtol), float(atol), file)
        return StoredResults(stored["results"], digest, False, worst, float(rtol), float(atol), file)

    results = _jsonable(compute())
    live = _jsonable(check())
    worst = 0.0
    if expected is not None:
        # The slice must be the same numbers as the full run's, or expected() picks the wrong part.
        worst = _compare(live, expected(results), float(rtol), float(atol), file)
    digest = payload_sha256(key_json, results)
    file.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": RESULTS_FORMAT, "sha256": digest, "key": key_json, "check": live, "results": results}
    file.write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    return StoredResults(results, digest, True, worst, float(rtol), float(atol), file)
