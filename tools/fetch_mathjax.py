"""Put MathJax 3 inside the built book so that it reads offline.

Usage: python tools/fetch_mathjax.py DEST   (``make book`` runs it with DEST=_build/vendor/mathjax)

The version and its SHA-512 integrity hash are the ones pinned in
package.json / package-lock.json. The tarball comes from the npm registry,
is verified against that hash, and its ``es5/`` tree is unpacked into DEST.
This needs only Python, so a machine with nothing but Python 3.11 can build
the book; ``npm ci`` over the same lock file gives the identical tree.
A verified tarball is cached in .cache/ so later builds need no network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "https://registry.npmjs.org"


def pinned() -> tuple[str, str]:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/mathjax"]
    return entry["version"], entry["integrity"]


def verified_tarball(version: str, integrity: str) -> bytes:
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise SystemExit(f"package-lock.json: unsupported integrity algorithm {algo!r}")
    cache = ROOT / ".cache" / f"mathjax-{version}.tgz"
    data = cache.read_bytes() if cache.exists() else None
    if data is None or base64.b64encode(hashlib.sha512(data).digest()).decode() != expected:
        url = f"{REGISTRY}/mathjax/-/mathjax-{version}.tgz"
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
        actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if actual != expected:
            raise SystemExit(f"mathjax-{version}.tgz from {url} does not match package-lock.json's integrity hash")
        cache.parent.mkdir(exist_ok=True)
        cache.write_bytes(data)
    return data


def unpack(data: bytes, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if name == "package/LICENSE":
                target = dest / "LICENSE"
            elif name.startswith("package/es5/") and member.isfile():
                target = dest / name[len("package/es5/"):]
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "vendor" / "mathjax"
    version, integrity = pinned()
    unpack(verified_tarball(version, integrity), dest)
    print(f"MathJax {version} (verified) -> {dest}")


if __name__ == "__main__":
    main()
