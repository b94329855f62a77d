"""NumPy references of every update rule in the book, one function per formula."""

from optbook.reference import adafactor

__all__ = ["adafactor"]
