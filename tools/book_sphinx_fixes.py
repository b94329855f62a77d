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


def setup(app) -> dict[str, Any]:
    # env-updated runs after every extension has registered its scripts while the
    # sources are read, and before the builder re-adds them to write the pages.
    app.connect("env-updated", _name_inline_scripts_consistently)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
