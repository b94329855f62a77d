"""A local Sphinx extension for the book (``sphinx: local_extensions`` in _config.yml).

Sphinx 7.4 registers an inline script added by ``app.add_js_file(None, body=...)``
after the HTML builder has started twice, once as ``None`` and once as ``''``, so
the two copies are not recognised as the same. sphinx-thebe and sphinx-togglebutton
add their inline configuration that way, and the second copy of sphinx-thebe's
``const THEBE_JS_URL = ...`` throws "Identifier 'THEBE_JS_URL' has already been
declared" on every page. This extension gives those scripts the name ``''``
before the pages are written, so that Sphinx drops the duplicates itself.
The browser test (tests/browser/browser_check.py) fails on that console error.
"""

from __future__ import annotations

from typing import Any


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
    return {"parallel_read_safe": True, "parallel_write_safe": True}
