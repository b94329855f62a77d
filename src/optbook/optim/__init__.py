"""PyTorch optimizers of the book, one module per algorithm, written with the book's symbols."""

from optbook.optim.adafactor import Adafactor
from optbook.optim.lion import Lion
from optbook.optim.sophia import Sophia

__all__ = ["Adafactor", "Lion", "Sophia"]
