"""Check the links of the built HTML book without a network.

Usage: python tools/check_html_links.py [_build/html]

Every local ``href``/``src`` of every page (and every ``url(...)`` of the CSS
files) must name a file that exists under the book, and a ``#fragment`` on a
link to a page must name an ``id`` (or ``name``) in that page. Links to other
sites are allowed (the repository, Binder), but a page must not *load* anything
from another site: a remote ``<script src>``, stylesheet, image, frame or media
source is reported, because the book has to read offline. The browser test
(tests/browser/browser_check.py) proves the same thing at read time; this
check also covers pages and links the browser never opens.

Exits non-zero and lists every problem when there is one.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Attributes that make the browser fetch something while showing the page.
LOADED = {
    ("script", "src"),
    ("img", "src"),
    ("img", "srcset"),
    ("source", "src"),
    ("source", "srcset"),
    ("video", "src"),
    ("video", "poster"),
    ("audio", "src"),
    ("iframe", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("track", "src"),
    ("input", "src"),
}
# <link rel=...> values that load the target with the page.
LOADED_LINK_RELS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload", "manifest", "apple-touch-icon"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str, bool]] = []  # (tag, attr, value, loaded)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        for key in ("id", "name"):
            if key in values and (key == "id" or tag in {"a", "map"}):
                self.ids.add(values[key])
        for name, value in values.items():
            if name not in {"href", "src", "srcset", "poster", "data"}:
                continue
            if tag == "link":
                rels = set(values.get("rel", "").lower().split())
                loaded = bool(rels & LOADED_LINK_RELS)
            else:
                loaded = (tag, name) in LOADED
            if name == "srcset":
                for candidate in value.split(","):
                    if candidate.strip():
                        self.refs.append((tag, name, candidate.split()[0], loaded))
            elif tag == "object" and name != "data":
                continue
            else:
                self.refs.append((tag, name, value, loaded))

    handle_startendtag = handle_starttag


def _is_remote(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower()
    return url.startswith("//") or scheme in {"http", "https", "ftp", "ws", "wss"}


def _skip(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower()
    return not url or scheme in {"mailto", "javascript", "data", "blob", "tel", "about"}


def _pages(root: Path) -> list[Path]:
    # _static/ holds the themes' Jinja template fragments (*.html) and vendored
    # files, _sources/ the downloadable sources: neither is a page of the book.
    return sorted(p for p in root.rglob("*.html") if p.relative_to(root).parts[0] not in {"_static", "_sources"})


def check(root: Path) -> list[str]:
    """Return one line per broken local link or remote load under ``root``."""
    root = root.resolve()
    pages = _pages(root)
    parsed: dict[Path, _PageParser] = {}
    for page in pages:
        parser = _PageParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        parsed[page] = parser

    def ids_of(path: Path) -> set[str]:
        if path not in parsed:
            parser = _PageParser()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parsed[path] = parser
        return parsed[path].ids

    problems: list[str] = []
    for page in pages:
        rel_page = page.relative_to(root)
        for tag, attr, url, loaded in parsed[page].refs:
            url = url.strip()
            if _skip(url):
                continue
            if _is_remote(url):
                if loaded:
                    problems.append(f"{rel_page}: <{tag} {attr}> loads a remote resource: {url}")
                continue
            parts = urlsplit(url)
            if parts.scheme:  # some other scheme (file:, ...): never valid in a served book
                problems.append(f"{rel_page}: <{tag} {attr}> has an unexpected URL scheme: {url}")
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if parts.path.startswith("/"):
                problems.append(f"{rel_page}: <{tag} {attr}> is absolute to the server root: {url}")
                continue
            if not target.is_relative_to(root):
                problems.append(f"{rel_page}: <{tag} {attr}> points outside the book: {url}")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel_page}: <{tag} {attr}> target does not exist: {url}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in ids_of(target):
                problems.append(f"{rel_page}: <{tag} {attr}> names no anchor in its target: {url}")

    for css in sorted(root.rglob("*.css")):
        rel_css = css.relative_to(root)
        text = re.sub(r"/\*.*?\*/", "", css.read_text(encoding="utf-8", errors="replace"), flags=re.S)
        for _, url in CSS_URL.findall(text):
            url = url.strip()
            if _skip(url) or url.startswith("#"):
                continue
            if _is_remote(url):
                problems.append(f"{rel_css}: url() loads a remote resource: {url}")
                continue
            path = urlsplit(url).path
            if path and not (css.parent / unquote(path)).resolve().exists():
                problems.append(f"{rel_css}: url() target does not exist: {url}")
        if re.search(r"""@import\s+['"](https?:)?//""", text):
            problems.append(f"{rel_css}: @import of a remote stylesheet")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "_build/html")
    if not (root / "index.html").exists():
        print(f"no built book at {root} (run `make book` first)", file=sys.stderr)
        return 2
    problems = check(root)
    n_pages = len(_pages(root.resolve()))
    for line in problems:
        print(line)
    print(f"checked the links of {n_pages} pages under {root}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
