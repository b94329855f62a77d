"""optbook: the tested library underneath the Adafactor textbook.

Layout: one package per idea
----------------------------
``optbook.reference``
    NumPy references, one small function per formula, readable line by line
    against the book (Adafactor, Adam and its relatives, Lion, Sophia, Newton).
``optbook.optim``
    PyTorch optimizers, one module per algorithm; ``optbook.Adafactor``,
    ``optbook.Lion`` and ``optbook.Sophia`` are those of :mod:`optbook.optim`.
``optbook.kernels``
    the fused paths: the Triton GPU kernel and the numba CPU kernel.
``optbook.distributed``
    Adafactor on sharded (DTensor) parameters.
``optbook.problems``
    analytic test functions and their exact derivatives.
``optbook.tasks``
    real data sets and models: digits, diabetes, the standard library as a
    corpus, the character Transformer, published model shapes, stored runs.
``optbook.analysis``
    memory accounting, cross-checks against upstream implementations,
    misconception and wiki audits, rate and stability measurements.
``optbook.schedules``
    learning-rate schedules.
``optbook.viz``
    plots and animations.
``optbook.bench``
    the step benchmarks (``python -m optbook.bench``) and the timing harness.
``optbook.notation``, ``optbook.notebook``, ``optbook.progress``, ``optbook.train``
    the symbol registry, the chapter set-up and glue, deterministic progress
    bars, and the harness that runs a torch optimizer on a problem.
"""

import importlib as _importlib

from optbook import notebook, optim, reference
from optbook.notation import notation_table, symbol
from optbook.optim import Adafactor, Lion, Sophia

__all__ = [
    "Adafactor", "Lion", "Sophia",
    "reference", "optim", "problems", "tasks", "analysis", "schedules", "viz", "bench",
    "notebook", "notation_table", "symbol",
]
__version__ = "0.1.0"

# The other packages load on first use (``optbook.tasks`` imports scikit-learn,
# ``optbook.viz`` matplotlib), so ``import optbook`` stays as cheap as torch.
_LAZY = {"analysis", "bench", "distributed", "kernels", "problems", "schedules", "tasks", "viz"}


def __getattr__(name: str):
    if name in _LAZY:
        return _importlib.import_module(f"optbook.{name}")
    raise AttributeError(f"module 'optbook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
