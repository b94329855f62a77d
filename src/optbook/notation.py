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


def _escape_markdown(text: str) -> str:
    """Backslash-escape Markdown punctuation, so a meaning is shown as written."""
    from string import punctuation

    return "".join("\\" + ch if ch in punctuation else ch for ch in text)


def _chapter_link(docname: str | None) -> str:
    """A MyST ``{doc}`` link to the chapter ``docname`` (relative to the repository), or "–"."""
    if not docname:
        return "–"
    docname = docname.strip("/").removesuffix(".ipynb").removesuffix(".md")
    if not docname.startswith("book/"):
        docname = "book/" + docname
    return f"{{doc}}`/{docname}`"


def notation_markdown(entries: list[NotationEntry]) -> str:
    """The notation appendix as MyST Markdown: a summary line, then one list-table per module.

    ``entries`` (usually :func:`notation_table`) must be sorted by function path, so that
    the rows of one module are adjacent. Each row shows the symbol as math, its meaning
    with Markdown punctuation escaped, the computing function, and, when any entry names
    a chapter, a link to the chapter that introduces it.
    """
    from itertools import groupby

    entries = list(entries)
    if not all(isinstance(entry, NotationEntry) for entry in entries):
        raise TypeError("entries must be NotationEntry objects, e.g. notation_table()")
    paths = [entry.function for entry in entries]
    if paths != sorted(paths):
        raise ValueError("entries must be sorted by function path; pass notation_table() or sort them")

    def module_of(entry: NotationEntry) -> str:
        return entry.function.rpartition(".")[0]

    with_chapters = any(entry.chapter for entry in entries)
    header = ["Symbol", "Meaning", "Computed by"] + (["Introduced in"] if with_chapters else [])
    widths = ":widths: 32 30 38" + (" 20" if with_chapters else "")
    parts = []
    for module, rows in groupby(entries, key=module_of):
        lines = [f"~~~{{list-table}} `{module}`", ":header-rows: 1", widths, ":class: notation-table", ""]
        for row in [header] + [
            [f"${e.latex.strip()}$", _escape_markdown(e.meaning), f"`{e.function}`"]
            + ([_chapter_link(e.chapter)] if with_chapters else [])
            for e in rows
        ]:
            lines += [f"* - {row[0]}"] + [f"  - {cell}" for cell in row[1:]]
        parts.append("\n".join(lines + ["~~~"]))
    n_modules = len({module_of(entry) for entry in entries})
    summary = f"{len(entries)} symbols, computed by {len(entries)} functions in {n_modules} modules."
    return "\n\n".join([summary] + parts)
