"""Set ``html.baseurl`` in _config.yml (the published book's address, for canonical links and the sitemap).

Usage: python tools/set_baseurl.py https://owner.github.io/repo/

The book's workflow (.github/workflows/book.yml) calls it with the URL that
GitHub Pages reports, before the book is built. Only the one key is rewritten;
the rest of the file, comments included, stays as it is.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "_config.yml"


def set_baseurl(text: str, url: str) -> str:
    """``text`` (a _config.yml) with ``html: baseurl:`` set to ``url`` (added under ``html:`` if absent)."""
    if not re.fullmatch(r"https?://[^\s\"']+/", url):
        raise ValueError(f"url must be an http(s) address ending in '/', got {url!r}.")
    if re.search(r"^  baseurl:.*$", text, flags=re.MULTILINE):
        return re.sub(r"^  baseurl:.*$", f'  baseurl: "{url}"', text, count=1, flags=re.MULTILINE)
    if not re.search(r"^html:\s*$", text, flags=re.MULTILINE):
        raise ValueError("_config.yml has no top-level 'html:' section to put baseurl in.")
    return re.sub(r"^html:\s*$", f'html:\n  baseurl: "{url}"', text, count=1, flags=re.MULTILINE)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    CONFIG.write_text(set_baseurl(CONFIG.read_text(), argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
