"""The built book as its readers meet it, checked in a real browser.

Run by ``make test-browser`` (a step of ``make test``) after the book is built::

    .venv/bin/python -m pytest tests/browser/browser_check.py -p no:cacheprovider -q

The file is deliberately not named ``test_*.py``: the library run (``pytest tests``)
never collects it, and it runs only where the Makefile has installed Debian's
Chromium. Playwright drives that browser (``/usr/bin/chromium``, or ``$CHROMIUM``);
no browser is ever downloaded.

The book in ``_build/html`` (or ``$BOOK_HTML``) is served by a local HTTP server on
127.0.0.1. Every request the browser makes to any other address is aborted and
recorded, so each page is proved to need nothing from the network. For every page
of the book, reached by clicking its link in the sidebar:

- the page loads with no console error, no uncaught exception, no failed request
  and no response with an error status;
- MathJax, served from the book itself, has typeset every math element: each holds
  MathJax output (``mjx-container``), no expression has a TeX error or an undefined
  macro, and no raw ``$...$``, ``\\frac`` or other TeX is left in the text outside
  code;
- every image (figures and animation frames) has loaded and has a non-zero size,
  every video has decoded its first frame, and a chapter shows at least as many
  images as its notebook stores image outputs;
- a notebook chapter offers its ``.ipynb`` for download, byte for byte the source,
  plus edit-this-page, open-an-issue and Binder links;
- a chapter (under ``book/part*/``) has exercises, and their solutions are closed
  behind a toggle when the page opens;
- a screenshot is saved as ``_build/screenshots/<docname>.jpg``: the first screen a
  reader sees, or the whole page when the page has a problem or when
  ``BROWSER_FULL_SCREENSHOTS=1`` is set (a full page of a long chapter costs about
  1.7 s to capture, which over every page is most of a minute).

The search page must find a known term, the sidebar must list every source page
under ``book/``, the pages with the most mathematics also render when opened
straight from disk (``file://``), and the internal links of the whole site are
checked with ``tools/check_html_links.py``. A chapter that is not in ``_toc.yml``
fails here, because every ``.md``/``.ipynb`` directly under ``book/``, under
``book/part*/`` or under ``book/appendix/`` must be a page.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The flags of this machine type's probe: without the background-networking
# flags Chromium keeps trying to reach Google's services and is refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}
SEARCH_TERM = "Adafactor"  # in the title of the book's root page, so it must always be found
MATH_TIMEOUT_MS = 30_000
# Loading and typesetting the heaviest page takes about 7 s on a quiet 2-core machine;
# CI runs two browsers beside each other on 2 cores, and one load once ran past
# Playwright's 30 s default. The checks are of what a reader sees, not of speed.
NAVIGATION_TIMEOUT_MS = 90_000

sys.path.insert(0, str(ROOT / "tools"))
import check_html_links  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def source_pages() -> list[Path]:
    """Every page source of the book; each one must be a page of the built book.

    That is every .md and .ipynb directly under book/, under book/part*/ and under
    book/appendix/. Other folders of book/ (data, figures) hold no pages.
    """
    pages = []
    for path in sorted((ROOT / "book").rglob("*")):
        rel = path.relative_to(ROOT)
        if path.suffix not in {".md", ".ipynb"} or any(p.startswith((".", "_")) for p in rel.parts):
            continue
        if len(rel.parts) == 2 or rel.parts[1] == "appendix" or rel.parts[1].startswith("part"):
            pages.append(rel)
    return pages


def docname(source: Path) -> str:
    return source.with_suffix("").as_posix()


PAGES = source_pages()
DOCNAMES = [docname(p) for p in PAGES]


# --------------------------------------------------------------------------- server and browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
        ".ipynb": "application/x-ipynb+json",
    }

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture(scope="module")
def base_url():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book at {HTML}: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class NetworkLog:
    """Every request of the browser context: served locally, or aborted and recorded."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.bad_status: list[str] = []
        self.served = 0

    def reset(self) -> None:
        self.blocked.clear()
        self.failed.clear()
        self.bad_status.clear()

    def route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.base_url):
            self.served += 1
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def on_request_failed(self, request) -> None:
        if request.url.startswith(self.base_url):
            self.failed.append(f"{request.url} ({request.failure})")

    def on_response(self, response) -> None:
        if response.status >= 400:
            self.bad_status.append(f"{response.status} {response.url}")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def network(base_url):
    return NetworkLog(base_url)


@pytest.fixture(scope="module")
def context(browser, network):
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    context.route("**/*", network.route)
    if hasattr(context, "route_web_socket"):
        context.route_web_socket(re.compile(".*"), lambda ws: network.blocked.append(ws.url) or ws.close())
    context.on("requestfailed", network.on_request_failed)
    context.on("response", network.on_response)
    yield context
    context.close()


class ConsoleLog:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def on_page_error(self, error) -> None:
        self.errors.append(f"uncaught exception: {error}")


@pytest.fixture
def page(context, network):
    page = context.new_page()
    page.set_default_timeout(NAVIGATION_TIMEOUT_MS)
    console = ConsoleLog()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    page.console = console  # type: ignore[attr-defined]
    network.reset()
    yield page
    page.close()


FULL_SCREENSHOTS = os.environ.get("BROWSER_FULL_SCREENSHOTS", "") not in ("", "0")


def screenshot(page, name: str, full_page: bool = False) -> Path:
    """A screenshot of the first screen, or of the whole page. JPEG: a long chapter is
    over 10,000 pixels tall, and encoding it as PNG costs a second more for no visible gain."""
    path = SHOTS / f"{name}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(path), full_page=full_page or FULL_SCREENSHOTS, type="jpeg", quality=80)
    except Exception:  # a very long page can exceed Chromium's capture limits: keep the first screen
        page.screenshot(path=str(path), type="jpeg", quality=80)
    return path


# --------------------------------------------------------------------------- in-page probes

WAIT_FOR_MATHJAX = """
async () => {
  if (!document.querySelector('script[src*="mathjax/tex-mml-chtml.js"]')) return false;
  for (let i = 0; i < 600; i++) {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) break;
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  return true;
}
"""

MATH_REPORT = """
() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const elements = Array.from(article.querySelectorAll('.math'));
  const report = {
    elements: elements.length,
    rendered: 0,
    unrendered: [],
    containers: document.querySelectorAll('mjx-container').length,
    items: 0,
    errors: [],
  };
  for (const el of elements) {
    if (el.querySelector('mjx-container')) report.rendered++;
    else report.unrendered.push(el.textContent.slice(0, 120));
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.document) {
    for (const item of MathJax.startup.document.math) {
      report.items++;
      const bad = [];
      if (item.root) item.root.walkTree(node => {
        if (node.isKind('merror')) bad.push('TeX error');
        if (node.isKind('mtext') && node.attributes.get('mathcolor') === 'red') bad.push('undefined macro');
      });
      if (bad.length) report.errors.push(`${bad.join(', ')} in: ${String(item.math).slice(0, 120)}`);
    }
  }
  return report;
}
"""

# The reader-visible text of the article outside code, and outside typeset math.
PROSE_TEXT = """
() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, .highlight, script, style, textarea, mjx-container, .math, dt.sig')
      .forEach(el => el.remove());
  return copy.textContent;
}
"""

RAW_TEX = re.compile(
    r"\$\$|\$[^\s$][^$\n]{0,300}?\$"  # $...$ or $$ left as text
    r"|\\(?:[A-Za-z]{2,}|[()\[\]])"  # \frac, \hat, \( ... \), \[ ... \]
)

MEDIA_REPORT = """
() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const hidden = el => !!el.closest('details:not([open]), .toggle-hidden, [hidden]');
  const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const out = [];
  for (const img of article.querySelectorAll('img')) {
    out.push({kind: 'img', what: (img.getAttribute('src') || '').slice(0, 100), loaded: img.complete,
              natural: [img.naturalWidth, img.naturalHeight], box: box(img), hidden: hidden(img),
              output: !!img.closest('.cell_output')});
  }
  for (const v of article.querySelectorAll('video')) {
    out.push({kind: 'video', what: (v.currentSrc || '').slice(0, 100), loaded: v.readyState >= 2,
              natural: [v.videoWidth, v.videoHeight], box: box(v), hidden: hidden(v),
              output: !!v.closest('.cell_output')});
  }
  for (const el of article.querySelectorAll('.cell_output svg, figure svg, canvas')) {
    if (el.closest('mjx-container, button')) continue;
    const [w, h] = box(el);
    out.push({kind: el.tagName.toLowerCase(), what: el.id || el.getAttribute('class') || '', loaded: true,
              natural: [w, h], box: [w, h], hidden: hidden(el), output: !!el.closest('.cell_output')});
  }
  return out;
}
"""


def media_report(page) -> list[dict]:
    """MEDIA_REPORT, once every image and video has loaded or the wait has run out."""
    # Images are in the HTML from the start; an animation may set its frames by script.
    try:
        page.wait_for_function(
            "() => Array.from(document.images).every(i => i.complete)"
            " && Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
            timeout=15_000,
        )
    except Exception:  # what did not load is reported item by item
        pass
    return page.evaluate(MEDIA_REPORT)


def expected_images(source: Path) -> int:
    """Image outputs a notebook shows (glued outputs and removed cells excluded)."""
    if source.suffix != ".ipynb":
        return 0
    nb = nbformat.read(ROOT / source, as_version=4)
    count = 0
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & {"remove-output", "remove-cell"}:
            continue
        for output in cell.get("outputs", []):
            if set(output.get("data", {})) & {"image/png", "image/jpeg", "image/gif", "image/svg+xml"}:
                count += 1
    return count


# A frame of optbook.progress's bar: "desc:  40%|########            | 8/20".
PROGRESS_FRAME = re.compile(r"\d+%\|[ #]*\| \d+/\d+")


def inspect_page(page, network, source: Path) -> list[str]:
    """Everything a reader would notice on the current page, as a list of problems."""
    problems: list[str] = []
    page.wait_for_load_state("load")

    has_mathjax = page.evaluate(WAIT_FOR_MATHJAX)
    math = page.evaluate(MATH_REPORT)
    if math["elements"] and not has_mathjax:
        problems.append(f"{math['elements']} math elements but the page does not load the book's MathJax")
    if math["unrendered"]:
        problems.append(f"{len(math['unrendered'])} math elements not typeset, e.g. {math['unrendered'][:3]}")
    if math["containers"] < math["elements"]:
        problems.append(f"only {math['containers']} MathJax outputs for {math['elements']} math elements")
    problems += [f"MathJax: {e}" for e in math["errors"]]

    text = page.evaluate(PROSE_TEXT)
    for match in list(RAW_TEX.finditer(text))[:5]:
        start, end = max(0, match.start() - 40), min(len(text), match.end() + 40)
        problems.append("raw TeX left in the text: …" + " ".join(text[start:end].split()) + "…")

    media = media_report(page)
    for item in media:
        if not item["loaded"] or min(item["natural"]) <= 0:
            problems.append(f"{item['kind']} did not load: {item['what']}")
        elif not item["hidden"] and min(item["box"]) <= 0:
            problems.append(f"{item['kind']} has no size on the page: {item['what']} {item['box']}")
    shown = sum(1 for item in media if item["output"] and item["kind"] in {"img", "svg", "video", "canvas"})
    wanted = expected_images(source)
    if shown < wanted:
        problems.append(f"the notebook stores {wanted} image outputs but the page shows {shown}")

    # Exercise solutions are behind a toggle, closed when the page opens (CONTRIBUTING.md).
    open_solutions = page.evaluate(
        "() => Array.from(document.querySelectorAll('article .solution'))"
        ".filter(s => !s.classList.contains('toggle-hidden')).map(s => s.id)"
    )
    if open_solutions:
        problems.append(f"solutions shown openly, not behind a toggle (`:class: dropdown`): {open_solutions}")
    if source.parts[1].startswith("part") and page.locator("article .exercise").count() == 0:
        problems.append("a chapter without exercises (CONTRIBUTING.md: every chapter ends with ## Exercises)")

    # The page shows the computation, not the plumbing: no glue calls (tools/book_sphinx_fixes.py drops
    # them from the displayed code) and no frozen progress bars (stderr is not rendered).
    article = page.evaluate("() => document.querySelector('article') ? document.querySelector('article').innerText : ''")
    code = page.evaluate("() => Array.from(document.querySelectorAll('article .cell_input')).map(e => e.innerText).join('\\n')")
    if "glue(" in code:
        problems.append("a glue(...) call is shown in a cell's code on the page")
    frames = PROGRESS_FRAME.findall(article)
    if frames:
        problems.append(f"{len(frames)} progress-bar frames shown on the page, e.g. {frames[0]!r}")
    if source.suffix == ".ipynb" and source.parts[1].startswith("part"):
        if page.locator("a[href*='mybinder.org/v2/gh/']").count() == 0:
            problems.append("no Binder launch button")

    problems += [f"needed the network: {url}" for url in network.blocked]
    problems += [f"request failed: {f}" for f in network.failed]
    problems += [f"HTTP error: {s}" for s in network.bad_status]
    problems += page.console.errors
    return problems


# --------------------------------------------------------------------------- the tests


def test_every_source_page_was_built():
    missing = [d for d in DOCNAMES if not (HTML / f"{d}.html").exists()]
    assert not missing, f"pages under book/ that the build did not produce (missing from _toc.yml?): {missing}"


def test_internal_links_resolve_and_nothing_loads_from_elsewhere():
    problems = check_html_links.check(HTML)
    assert not problems, "\n".join(problems)


CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def test_every_citation_resolves_to_the_references_page():
    """Each cited key is in references.bib and listed once on the references page.

    The -W -n build already fails on an unknown key; this says which one, and checks
    that the bibliography really shows every cited source.
    """
    keys = set()
    for source in PAGES:
        text = (ROOT / source).read_text(encoding="utf-8")
        if source.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
        for match in CITE.finditer(text):
            keys.update(k.strip() for k in match.group(1).split(","))
    bib = "\n".join((ROOT / f).read_text(encoding="utf-8") for f in CONFIG.get("bibtex_bibfiles", []))
    known = set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", bib))
    assert keys, "no chapter cites anything"
    assert keys <= known, f"cited but not in references.bib: {sorted(keys - known)}"
    references = (HTML / "book" / "appendix" / "references.html").read_text(encoding="utf-8")
    listed = references.count('role="doc-biblioentry"')
    assert listed == len(keys), f"the references page lists {listed} sources for {len(keys)} cited keys"


def test_link_checker_reports_what_it_should(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "ok.css").write_text("a { background: url(missing.png) }")
    (tmp_path / "index.html").write_text(
        '<a id="top" href="#top">self</a> <a href="page.html#there">ok</a>'
        ' <a href="page.html#nowhere">bad anchor</a> <a href="gone.html">missing</a>'
        ' <a href="https://example.org/">an external link is fine</a>'
        ' <script src="https://cdn.example.org/x.js"></script>'
        ' <link rel="stylesheet" href="_static/ok.css">'
    )
    (tmp_path / "page.html").write_text('<h1 id="there">x</h1>')
    problems = check_html_links.check(tmp_path)
    assert len(problems) == 4, problems
    assert any("page.html#nowhere" in p for p in problems)
    assert any("gone.html" in p for p in problems)
    assert any("remote resource: https://cdn.example.org/x.js" in p for p in problems)
    assert any("missing.png" in p for p in problems)


def test_the_network_is_blocked(page, network, base_url):
    """The route handler really aborts and records requests that leave the local server."""
    page.goto(base_url + "genindex.html")
    result = page.evaluate(
        """async () => {
             const local = await fetch('genindex.html').then(r => r.status, e => 'error');
             const remote = await fetch('https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js')
                 .then(r => 'loaded ' + r.status, e => 'blocked');
             return {local, remote};
           }"""
    )
    assert result == {"local": 200, "remote": "blocked"}
    assert network.blocked == ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"]


def sidebar_links(page) -> dict[str, object]:
    """The sidebar's links, by the docname of the page they open."""
    links = {}
    for link in page.locator("nav.bd-docs-nav a.reference.internal").all():
        url = urljoin(page.url, link.get_attribute("href"))
        path = unquote(urlsplit(url).path)
        if path.endswith(".html"):
            links[path.lstrip("/").removesuffix(".html")] = link
    return links


def test_sidebar_reaches_every_page(page, base_url):
    page.goto(base_url)  # the root index.html redirects to the book's root page
    page.wait_for_url(re.compile(r".*/book/intro\.html$"))
    links = sidebar_links(page)
    missing = [d for d in DOCNAMES if d not in links]
    assert not missing, f"pages the sidebar does not reach: {missing}"


@pytest.mark.parametrize("source", PAGES, ids=DOCNAMES)
def test_page_as_a_reader_sees_it(page, network, base_url, source):
    name = docname(source)
    # Reach the page the way a reader does: by clicking its entry in the sidebar.
    page.goto(base_url + "genindex.html")
    link = sidebar_links(page).get(name)
    assert link is not None, f"{name} is not in the sidebar"
    if not link.is_visible():  # a page nested under a collapsed entry: open it
        page.evaluate("el => { for (let d = el.closest('details'); d; d = d.parentElement.closest('details')) d.open = true; }",
                      link.element_handle())
    network.reset()
    page.console.errors.clear()
    link.click()
    page.wait_for_url(re.compile(re.escape(f"/{name}.html") + r"(#.*)?$"))

    problems = inspect_page(page, network, source)

    header = page.locator(".article-header-buttons")
    repo = CONFIG["repository"]["url"].rstrip("/")
    branch = CONFIG["repository"].get("branch", "main")
    edit = header.locator("a.btn-source-edit-button")
    if edit.count() != 1 or edit.get_attribute("href") != f"{repo}/edit/{branch}/{source.as_posix()}":
        problems.append(f"no edit-this-page link to {repo}/edit/{branch}/{source.as_posix()}")
    if header.locator("a.btn-source-issues-button").count() != 1:
        problems.append("no open-an-issue link")
    if source.suffix == ".ipynb":
        download = header.locator("a.btn-download-source-button")
        href = download.get_attribute("href") if download.count() == 1 else None
        if not href or not href.endswith(f"{source.name}"):
            problems.append(f"no download link for {source.name}: {href}")
        else:
            response = page.request.get(urljoin(page.url, href))
            if not response.ok or response.body() != (ROOT / source).read_bytes():
                problems.append(f"the downloaded {source.name} is not the committed notebook ({response.status})")
            else:
                json.loads(response.body())
        binder = CONFIG.get("launch_buttons", {}).get("binderhub_url")
        if binder and header.locator(f'a[href^="{binder.rstrip("/")}/v2/gh/"]').count() != 1:
            problems.append(f"no Binder launch link to {binder}")

    shot = screenshot(page, name, full_page=bool(problems))  # the whole page when there is something to see
    assert not problems, f"{name} ({shot.relative_to(ROOT)}):\n  " + "\n  ".join(problems)


def pages_with_most_math(n: int) -> list[str]:
    counts = {d: (HTML / f"{d}.html").read_text(errors="replace").count('class="math') for d in DOCNAMES}
    return sorted(counts, key=lambda d: -counts[d])[:n]


def test_pages_read_straight_from_disk(browser):
    """Opened from _build/html with file:// URLs, as the README suggests, math and figures still render.

    The root page and the three pages with the most mathematics stand for the rest:
    every page loads MathJax, its fonts and the figures the same way.
    """
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    outside: list[str] = []
    failed: list[str] = []

    def route(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", route)
    context.on("requestfailed", lambda request: failed.append(f"{request.url} ({request.failure})"))
    page = context.new_page()
    problems = []
    try:
        page.goto((HTML / "index.html").as_uri())
        page.wait_for_url(re.compile(r".*/book/intro\.html$"))
        for name in pages_with_most_math(3):
            page.goto((HTML / f"{name}.html").as_uri())
            page.evaluate(WAIT_FOR_MATHJAX)
            math = page.evaluate(MATH_REPORT)
            if math["unrendered"] or math["errors"]:
                problems.append(f"{name}: {len(math['unrendered'])} math elements not typeset {math['errors']}")
            broken = [m["what"] for m in media_report(page) if not m["loaded"] or min(m["natural"]) <= 0]
            if broken:
                problems.append(f"{name}: media not loaded: {broken}")
    finally:
        context.close()
    assert not outside, f"pages read from disk reached for the network: {outside}"
    assert not failed, f"files that did not load from disk: {failed}"
    assert not problems, "\n".join(problems)


def test_search_finds_a_known_term(page, network, base_url):
    page.goto(f"{base_url}search.html?q={SEARCH_TERM}")
    # Sphinx lists hits one by one on a timer and writes the summary line
    # ("Search finished, found N page(s) ...") only after the last one, so
    # wait for that line; reading the list at its first entry races.
    page.wait_for_function(
        """() => {
            const s = document.querySelector('#search-results p.search-summary');
            return s !== null && /Search finished|did not match/.test(s.innerText);
        }""",
        timeout=30_000,
    )
    hits = [urlsplit(urljoin(page.url, a.get_attribute("href"))).path for a in page.locator("#search-results ul.search li a").all()]
    screenshot(page, "search")
    summary = page.locator("#search-results p.search-summary").inner_text()
    found = re.search(r"found (\d+) page", summary)
    assert found and int(found.group(1)) == len(hits), (summary, hits)
    assert "/book/intro.html" in hits, hits
    assert not network.blocked and not network.failed and not network.bad_status
    assert not page.console.errors, page.console.errors


@pytest.mark.parametrize("width", [390, 1280])
def test_choosing_summary_reads_on_a_phone_and_a_desktop(browser, network, base_url, width):
    """The choosing chapter's "when to try" table: nothing cut off with an ellipsis, no sideways scrolling of the page.

    A wide output may scroll inside its own box (that keeps every character readable); the page itself must not.
    """
    context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
    context.route("**/*", network.route)
    page = context.new_page()
    try:
        page.goto(f"{base_url}book/part1/10_choosing_an_optimizer.html")
        page.wait_for_load_state("load")
        report = page.evaluate(
            """() => {
                // The table is a pandas DataFrame, shown as an HTML table (or as text in a <pre>).
                const outputs = Array.from(document.querySelectorAll('article .cell_output table, article .cell_output pre'));
                const table = outputs.find(p => /when to try/.test(p.innerText));
                if (!table) return null;
                let box = table, scrolls = false;
                while (box && box.tagName !== 'ARTICLE') {
                    if (['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) { scrolls = true; break; }
                    box = box.parentElement;
                }
                table.scrollIntoView();  // so that the screenshot shows it
                const rows = table.tagName === 'TABLE' ? table.querySelectorAll('tbody tr').length : table.innerText.split('\\n').length - 1;
                return {
                    truncated: /\\u2026|\\.\\.\\./.test(table.innerText),
                    rows: rows,
                    fits: table.getBoundingClientRect().width <= table.parentElement.getBoundingClientRect().width + 1,
                    scrolls: scrolls,
                    pageWidth: document.documentElement.scrollWidth,
                    viewport: window.innerWidth,
                };
            }"""
        )
        screenshot(page, f"choosing_summary_{width}px")
    finally:
        context.close()
    assert report is not None, "the 'when to try' table is not on the page"
    assert not report["truncated"], "a cell of the table is cut off with an ellipsis"
    assert report["rows"] >= 16, report
    assert report["fits"] or report["scrolls"], f"the table is wider than its box and cannot scroll: {report}"
    assert report["pageWidth"] <= report["viewport"] + 1, f"the page scrolls sideways at {width} px: {report}"
