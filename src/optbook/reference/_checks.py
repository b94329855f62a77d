"""Argument checks shared by the Part I references and the Lion/Sophia optimizers.

Each check raises before anything is computed, names the offending argument
and says what a valid value looks like, so a reader who mistypes a
hyperparameter in a chapter gets a sentence, not a NaN twenty cells later.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


# What to pass for an epsilon that guards a division; the messages of every reference share it.
EPS_HINT = "pass a small positive number such as 1e-8."
EPS_HINT_ZERO_DIVIDES = "pass a small positive number such as 1e-8 (0 is allowed but divides by zero on a zero gradient)."


def _real(value, name: str) -> float:
    # bool is an Integral; a flag passed as a learning rate is always a mistake.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    return value


def check_lr(lr, name: str = "lr") -> float:
    """A learning rate: finite and >= 0 (0 freezes the parameters, which is allowed)."""
    lr = _real(lr, name)
    if lr < 0:
        raise ValueError(
            f"{name} must be >= 0, got {lr}; a negative learning rate climbs the loss. "
            f"Pass a positive value such as 1e-3 (use maximize=True to ascend on purpose)."
        )
    return lr


def check_beta(beta, name: str) -> float:
    """A decay rate of an exponential moving average: 0 <= beta < 1."""
    beta = _real(beta, name)
    if not 0.0 <= beta < 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1), got {beta}; it is the weight an average keeps on its past "
            f"(typical values 0.9 to 0.999)."
        )
    return beta


def check_betas(betas, name: str = "betas") -> tuple[float, float]:
    """A pair (beta1, beta2) of decay rates, each in [0, 1)."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {betas!r}.") from None
    return check_beta(b1, f"{name}[0]"), check_beta(b2, f"{name}[1]")


def check_positive(value, name: str, hint: str) -> float:
    """A strictly positive constant such as an epsilon."""
    value = _real(value, name)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}; {hint}")
    return value


def check_nonnegative(value, name: str, hint: str) -> float:
    """A constant that may be zero, such as a weight decay or an epsilon that may be switched off."""
    value = _real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}; {hint}")
    return value


def check_rho(rho, name: str = "rho") -> float:
    """Sophia's curvature scale: 0 < rho <= 1."""
    rho = _real(rho, name)
    if not 0.0 < rho <= 1.0:
        raise ValueError(
            f"{name} must lie in (0, 1], got {rho}; it scales the Hessian estimate in "
            f"max(rho * h, eps) (the paper's gamma; 0.01 to 0.05 are the published values)."
        )
    return rho


def check_interval(k, name: str = "k") -> int:
    """A positive whole number of steps."""
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {k!r}; k = 10 re-estimates every 10 steps.")
    return int(k)


def as_array(a, name: str) -> np.ndarray:
    """``a`` as a float64 array; the references compute in double precision."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be array-like of real numbers, got {type(a).__name__}.") from None
    return arr


def check_same_shape(x: np.ndarray, other: np.ndarray, other_name: str, x_name: str = "x") -> None:
    """``other`` (a gradient, a state array) must have the shape of the parameters ``x``."""
    if np.shape(other) != np.shape(x):
        raise ValueError(
            f"{other_name} has shape {np.shape(other)} but {x_name} has shape {np.shape(x)}; "
            f"they must match (one entry per parameter)."
        )


def params_and_grad(x, g) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and gradient as float64 arrays of one shape."""
    x = as_array(x, "x")
    g = as_array(g, "g")
    check_same_shape(x, g, "g")
    return x, g


def check_state_arrays(x: np.ndarray, **arrays) -> None:
    """Every state array must have the shape of ``x`` (a state built for other parameters is a bug)."""
    for name, arr in arrays.items():
        check_same_shape(x, arr, f"state.{name}")


def check_step_number(t) -> int:
    """A step index t >= 1 (steps count from 1, as in the bias corrections)."""
    if isinstance(t, bool) or int(t) != t or t < 1:
        raise ValueError(f"t must be a whole number >= 1 (steps count from 1), got {t!r}.")
    return int(t)


def check_step_count(t) -> int:
    """A number of steps t >= 0 (a schedule's value before the first step included)."""
    if isinstance(t, bool) or int(t) != t or t < 0:
        raise ValueError(f"t must be a whole number of steps >= 0, got {t!r}.")
    return int(t)


def check_positive_finite(value, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return value
