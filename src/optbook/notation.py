"""The book's notation, attached to the functions that compute it.

Every public formula function in :mod:`optbook` is decorated with
:func:`symbol`, which records the book's LaTeX symbol and a short meaning.
The notation appendix of the book is generated from :func:`notation_table`,
so the table can never drift from the code, and a test fails when a public
formula function is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class NotationEntry:
    """One row of the notation table."""

    latex: str
    meaning: str
    function: str  # dotted path, e.g. "optbook.reference.adafactor.step_size"
    chapter: str | None = None


_REGISTRY: dict[str, NotationEntry] = {}


def symbol(latex: str, meaning: str, *, chapter: str | None = None) -> Callable[[F], F]:
    """Decorator: register ``latex`` as the book symbol computed by the function.

    Parameters
    ----------
    latex:
        The symbol as it appears in the book, in LaTeX without dollar signs,
        for example ``r"\\rho_t"``.
    meaning:
        A few words saying what the symbol is.
    chapter:
        Optional docname of the chapter that introduces the symbol.
    """

    def register(func: F) -> F:
        path = f"{func.__module__}.{func.__qualname__}"
        entry = NotationEntry(latex=latex, meaning=meaning, function=path, chapter=chapter)
        _REGISTRY[path] = entry
        func.__book_symbol__ = entry  # type: ignore[attr-defined]
        return func

    return register


def notation_table() -> list[NotationEntry]:
    """All registered symbols, after importing every module that defines some."""
    import importlib
    import pkgutil

    import optbook

    for info in pkgutil.walk_packages(optbook.__path__, prefix="optbook."):
        # The Triton kernels and the benchmark CLI import optional, heavy
        # dependencies; they define no book symbols of their own.
        if info.name.startswith(("optbook.kernels", "optbook.bench")) or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    return sorted(_REGISTRY.values(), key=lambda e: e.function)
