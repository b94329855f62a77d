"""Stored notebook outputs must not show digits that depend on the CPU.

NumPy's OpenBLAS, NumPy's SIMD loops and PyTorch's ATen choose their kernels
at run time, so the last bits of a float differ between machines. A stored
output that prints those bits fails strict nbval on the next machine. This
guard reads every committed chapter and fails on the two shapes such an output
takes:

- a float shown with more than ``MAX_SIGNIFICANT`` significant digits
  (``0.19370490012724012``): round it, or glue it with
  ``optbook.notebook.glue``, which rounds;
- a non-zero magnitude below ``TINY`` (``3.3e-16``): such a number is
  rounding noise; assert a bound instead (``assert err < 1e-12``) and print
  the bound.

A value that is genuinely exact (an input, a constant the chapter sets) may be
listed in ``ALLOWED`` with the reason; keep that list short and reviewed.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)

MAX_SIGNIFICANT = 10
TINY = 1e-12

# A number: optional sign, digits with an optional fraction, optional exponent.
# It must not be glued to a letter or a digit on either side (``float64``,
# ``x1e5`` and version strings such as ``2.13.0`` are not numbers here).
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")

# (chapter stem, exact token): numbers that are inputs, not results.
ALLOWED: dict[tuple[str, str], str] = {}


def significant_digits(token: str) -> int:
    mantissa = re.split(r"[eE]", token.lstrip("+-"))[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." in mantissa:
        return len(digits)
    return len(digits.rstrip("0")) or 1  # an integer: trailing zeros are not precision


def fragile_numbers(text: str) -> list[tuple[str, str]]:
    """Every number in ``text`` that would change with the kernels, with the reason."""
    found = []
    for m in NUMBER.finditer(text):
        token = m.group(0)
        is_float = "." in token or "e" in token.lower()
        if not is_float:
            continue  # integers are counts, sizes and seeds: exact
        value = float(token)
        if significant_digits(token) > MAX_SIGNIFICANT:
            found.append((token, f"more than {MAX_SIGNIFICANT} significant digits"))
        elif value != 0.0 and abs(value) < TINY:
            found.append((token, f"non-zero magnitude below {TINY:g}"))
    return found


def output_texts(nb: nbformat.NotebookNode):
    """(code-cell number, text) for every compared text output of a chapter."""
    n = -1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                yield n, out.text
            for mime, value in out.get("data", {}).items():
                if mime.startswith("image/"):
                    continue
                yield n, value if isinstance(value, str) else str(value)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT / "book")))
def test_no_kernel_fragile_number_is_stored(path):
    nb = nbformat.read(path, as_version=4)
    problems = []
    for cell, text in output_texts(nb):
        for token, why in fragile_numbers(text):
            if (path.stem, token) not in ALLOWED:
                problems.append(f"code cell {cell}: {token} ({why})")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "text, bad",
    [
        ("loss 0.19370490012724012", ["0.19370490012724012"]),
        ("gap 3.3e-16", ["3.3e-16"]),
        ("gap 3.3E-16 and 1.5e-13", ["3.3E-16", "1.5e-13"]),
        ("-0.00000000000042", ["-0.00000000000042"]),
        ("loss 0.1937, gap < 1e-12, 20000 steps, torch 2.13.0, float64", []),
        ("exactly 0.0 and 0e+00", []),
        ("31.622776601683782", ["31.622776601683782"]),
        ("1234567890 parameters", []),
    ],
)
def test_the_guard_catches_what_it_should(text, bad):
    assert [t for t, _ in fragile_numbers(text)] == bad


def test_allow_list_entries_still_occur():
    """A stale allow-list entry hides nothing and should be removed."""
    texts: dict[str, str] = {}
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        texts[path.stem] = "\n".join(t for _, t in output_texts(nb))
    for (stem, token), why in ALLOWED.items():
        assert why, f"allow-list entry {stem}/{token} needs a reason"
        assert token in texts.get(stem, ""), f"allow-list entry {stem}/{token} no longer occurs"
