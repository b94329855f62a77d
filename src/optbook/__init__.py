"""optbook: the tested library underneath the Adafactor textbook.

Layout
------
``optbook.reference``
    NumPy references, one small function per formula, readable line by line
    against the book.
``optbook.optim``
    PyTorch optimizers, one module per algorithm; ``optbook.Adafactor``,
    ``optbook.Lion`` and ``optbook.Sophia`` are those of :mod:`optbook.optim`.
``optbook.notation``
    The registry that maps book symbols to the functions computing them.
``optbook.problems``, ``optbook.plots``, ``optbook.train``, ``optbook.progress``
    Test problems, figures, a training harness and deterministic progress bars
    used by the chapters.
"""

from optbook import notebook, optim, reference
from optbook.notation import notation_table, symbol
from optbook.optim import Adafactor, Lion, Sophia

__all__ = ["Adafactor", "Lion", "Sophia", "notebook", "optim", "reference", "notation_table", "symbol"]
__version__ = "0.1.0"
