"""Progress bars that give the same text on every run.

A normal tqdm bar prints elapsed times and rates, and redraws on a timer, so a
notebook that shows one can never match its stored output. :func:`progress`
redraws at every tenth of the work instead of on a timer and leaves timings
out, so readers still see a live bar while nbval sees identical text.

The bar is written to standard error. Jupyter shows that stream live, nbval
compares it like any other output, and the book's pages drop it
(``nb_output_stderr: remove`` in ``_config.yml``): a frozen bar on a web page
tells a reader nothing.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.std import tqdm

T = TypeVar("T")

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}"


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a deterministic text progress bar written to standard error."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    miniters = max(1, math.ceil(total / 10)) if total else 1
    bar = tqdm(
        iterable,
        desc=desc,
        total=total,
        file=sys.stderr,
        bar_format=BAR_FORMAT,
        ascii=" #",
        miniters=miniters,
        mininterval=0.0,
        maxinterval=float("inf"),
        dynamic_ncols=False,
        ncols=80,
        smoothing=0,
    )
    yield from bar


def prange(n: int, desc: str = "") -> Iterator[int]:
    """``progress(range(n))``."""
    return progress(range(n), desc=desc, total=n)
