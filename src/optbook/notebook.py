"""One call at the top of every chapter makes its outputs reproducible.

``optbook.notebook.setup()`` seeds every random number generator the book
uses, pins torch to one thread (so floating-point reductions happen in the
same order on every machine), fixes NumPy's print format so printed values are
rounded, and sets a consistent figure style.

``optbook.notebook.glue()`` hands a computed number to the prose. It rounds a
float to ``GLUE_DIGITS`` significant digits first: the last bits of a result
depend on which SIMD kernels the CPU picked, and a stored output must be the
same on every machine (``tests/test_stored_outputs.py`` checks that).
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np

DEFAULT_SEED = 0
GLUE_DIGITS = 6


def setup(seed: int = DEFAULT_SEED, *, precision: int = 4) -> np.random.Generator:
    """Seed everything, fix print and plot styles; return a seeded NumPy Generator."""
    os.environ.setdefault("PYTHONHASHSEED", "0")
    # tqdm.auto (imported by transformers and pytorch_optimizer) warns once per kernel that
    # ipywidgets is missing. The warning goes to stderr with this machine's install path in it,
    # so a stored copy could never match a run elsewhere; it says nothing about the chapter.
    warnings.filterwarnings("ignore", message="IProgress not found")
    random.seed(seed)
    np.random.seed(seed)
    np.set_printoptions(precision=precision, suppress=True, linewidth=100)
    try:
        import torch
    except ImportError:  # the NumPy-only chapters do not need torch
        pass
    else:
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        _use_deterministic_algorithms(torch)
    import matplotlib

    _use_inline_figures()
    matplotlib.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "svg.hashsalt": "optbook",
        }
    )
    return np.random.default_rng(seed)


def _use_deterministic_algorithms(torch) -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)``, without importing TorchInductor.

    The public function imports ``torch._inductor.config`` to set its flag too, which costs
    1.6 s per kernel start; no chapter compiles with Inductor, so when Inductor is not loaded
    only the ATen flag is set (the same call the public function makes). If Inductor is
    already loaded, or torch lacks the private entry point, the public function is used.
    """
    import sys

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def _use_inline_figures() -> None:
    """Inside a kernel, draw figures inline even if MPLBACKEND names a file-only backend."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        shell.run_line_magic("matplotlib", "inline")


def rounded(value, digits: int = GLUE_DIGITS):
    """``value`` as a plain Python number, a float rounded to ``digits`` significant digits.

    NumPy scalars become Python scalars (their ``repr`` would leak into the
    page), integers and booleans stay exact, anything else is returned as is.
    """
    import numbers

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        if not np.isfinite(x) or x == 0.0:
            return x
        return float(f"{x:.{digits}g}")
    return value


def glue(name: str, value, *, digits: int = GLUE_DIGITS, display: bool = False) -> None:
    """``myst_nb.glue`` of ``rounded(value, digits)``, hidden from the cell's output by default.

    Six significant digits are more than any sentence of the book shows, and far
    coarser than the last-bit differences between CPUs.
    """
    from myst_nb import glue as _glue

    _glue(name, rounded(value, digits), display=display)


def bound(value, limit: float = 1e-12) -> str:
    """Assert ``value <= limit`` and return the limit formatted with ``:g``, for printing.

    A rounding-level difference depends on the last bits of a machine's floating-point
    reductions, so a chapter prints the bound it checked, never the difference itself.
    """
    import numbers

    if not isinstance(limit, numbers.Real) or not limit > 0:
        raise ValueError(f"limit must be a positive number, got {limit!r}; the default is 1e-12.")
    if not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"value must be a real number (a measured difference), got {type(value).__name__}.")
    if not value <= limit:  # an AssertionError, like the assert it replaces in a cell, but kept under -O
        raise AssertionError(f"{value} exceeds the bound {limit:g}")
    return f"{limit:g}"
