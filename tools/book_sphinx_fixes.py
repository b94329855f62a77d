"""A local Sphinx extension for the book (``sphinx: local_extensions`` in _config.yml).

Sphinx 7.4 registers an inline script added by ``app.add_js_file(None, body=...)``
after the HTML builder has started twice, once as ``None`` and once as ``''``, so
the two copies are not recognised as the same. sphinx-thebe and sphinx-togglebutton
add their inline configuration that way, and the second copy of sphinx-thebe's
``const THEBE_JS_URL = ...`` throws "Identifier 'THEBE_JS_URL' has already been
declared" on every page. This extension gives those scripts the name ``''``
before the pages are written, so that Sphinx drops the duplicates itself.
The browser test (tests/browser/browser_check.py) fails on that console error.

It also keeps the plumbing of the chapters off the pages. A chapter hands its
computed numbers to the prose with ``glue(name, value)``; readers of the page
see the number in the sentence, so the ``glue`` lines (and their import) are
dropped from the displayed code of each cell by :func:`strip_glue_calls`. The
notebooks keep them, so a reader who runs a chapter sees where every number
comes from.
"""

from __future__ import annotations

import ast
from typing import Any

GLUE = "glue"


def _is_glue_statement(stmt: ast.stmt) -> bool:
    """A ``glue(...)`` call, ``from optbook.notebook import glue``, or a block made only of them."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        return (isinstance(func, ast.Name) and func.id == GLUE) or (isinstance(func, ast.Attribute) and func.attr == GLUE)
    if isinstance(stmt, ast.ImportFrom):
        return [alias.name for alias in stmt.names] == [GLUE]
    if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With)):
        return not getattr(stmt, "orelse", []) and all(_is_glue_statement(s) for s in stmt.body)
    return False


def _glue_spans(body: list[ast.stmt]) -> list[tuple[int, int, str | None]]:
    """(first line, last line, replacement) of each statement to drop or rewrite, 1-based."""
    spans: list[tuple[int, int, str | None]] = []
    for stmt in body:
        if _is_glue_statement(stmt):
            spans.append((stmt.lineno, stmt.end_lineno or stmt.lineno, None))
        elif isinstance(stmt, ast.ImportFrom) and any(alias.name == GLUE for alias in stmt.names):
            kept = ast.ImportFrom(stmt.module, [a for a in stmt.names if a.name != GLUE], stmt.level)
            spans.append((stmt.lineno, stmt.end_lineno or stmt.lineno, ast.unparse(kept)))
        elif isinstance(stmt, (ast.For, ast.While, ast.If, ast.With)):
            spans.extend(_glue_spans(stmt.body))
            spans.extend(_glue_spans(getattr(stmt, "orelse", [])))
    return spans


def strip_glue_calls(source: str) -> str:
    """The cell's code as shown on the page: without ``glue`` calls, their import, and the comments right above them.

    A loop or block whose body only glues is dropped whole. Code that does not
    parse (e.g. IPython magics) is returned unchanged.
    """
    if GLUE not in source:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines()
    for first, last, replacement in sorted(_glue_spans(tree.body), reverse=True):
        start = first - 1
        # The comment lines just above a dropped statement describe it: drop them too.
        while replacement is None and start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
        lines[start:last] = [] if replacement is None else [indent + replacement]
    text = "\n".join(lines).strip("\n")
    # Blank lines left doubled where a block went.
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _hide_glue_in_cell_inputs(app, doctree) -> None:
    from docutils import nodes

    for container in doctree.findall(nodes.container):
        if "cell_input" not in container.get("classes", []):
            continue
        for block in container.findall(nodes.literal_block):
            shown = strip_glue_calls(block.astext())
            if shown != block.astext():
                block.children = [nodes.Text(shown)]
                block.rawsource = shown


def _name_inline_scripts_consistently(app, env) -> None:
    js_files = getattr(app.builder, "_js_files", None)
    if not js_files:
        return
    from sphinx.builders.html._assets import _JavaScript

    for i, script in enumerate(js_files):
        if isinstance(script, _JavaScript) and script.filename is None:
            js_files[i] = _JavaScript("", priority=script.priority, **script.attributes)


def _canonical_name(target: str) -> str | None:
    """``optbook.optim.Adafactor`` -> ``optbook.optim.adafactor.Adafactor``: where the object is defined.

    The library re-exports names from its packages (``optbook.Adafactor``,
    ``optbook.reference.adam_step``); the reference page documents each object
    once, where it is defined, so a docstring that names the short path needs
    the long one.
    """
    import importlib

    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if isinstance(obj, type(importlib)):  # a module
            return obj.__name__
        if module and qualname:
            return f"{module}.{qualname}"
        return None
    return None


def _resolve_reexported_names(app, env, node, contnode):
    """Resolve a Python cross-reference to an optbook name by the path where it is defined."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    if not target.startswith("optbook."):
        # a short name in a docstring, e.g. :class:`Problem` in optbook.problems: look in the current module
        module = node.get("py:module") or ""
        if not module.startswith("optbook"):
            return None
        target = f"{module}.{target}"
    canonical = _canonical_name(target)
    if not canonical or canonical == node.get("reftarget"):
        return None
    domain = env.get_domain("py")
    node = node.deepcopy()
    node["reftarget"] = canonical
    return domain.resolve_any_xref(env, node["refdoc"], app.builder, canonical, node, contnode) and \
        domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode) or \
        _first_any(domain.resolve_any_xref(env, node["refdoc"], app.builder, canonical, node, contnode))


def _first_any(results):
    return results[0][1] if results else None


def setup(app) -> dict[str, Any]:
    # env-updated runs after every extension has registered its scripts while the
    # sources are read, and before the builder re-adds them to write the pages.
    app.connect("env-updated", _name_inline_scripts_consistently)
    app.connect("missing-reference", _resolve_reexported_names)
    app.connect("doctree-read", _hide_glue_in_cell_inputs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
