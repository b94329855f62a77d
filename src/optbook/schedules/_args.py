"""Argument checks shared by the schedule modules (private)."""

from __future__ import annotations

import math
from numbers import Integral, Real


def count(value, name: str, minimum: int = 1) -> int:
    """A whole number of steps >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number of steps >= {minimum}, got {value!r}.")
    return int(value)


def real(value, name: str, low: float | None = None, high: float | None = None, *, open_low: bool = False,
         hint: str = "") -> float:
    """A finite real number in [low, high] (or (low, high] with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if open_low else value < low)
    if high is not None:
        bad = bad or value > high
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if open_low or low is None else '['}{lo}, {hi}]"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}. {hint}".strip())
    return value
