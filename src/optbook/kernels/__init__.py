"""GPU kernels of the book, and the byte counts that judge them.

``optbook.kernels.adafactor_fused``
    The fused, multi-tensor Adafactor step in Triton that
    ``optbook.Adafactor(..., fused=True)`` runs on CUDA tensors. It imports
    triton, so it is loaded only when used.
``optbook.kernels.cpu_fused``
    The fused Adafactor step that ``optbook.Adafactor(..., fused=True)`` runs on CPU tensors,
    compiled by numba (imported, and compiled once and cached, only when used).
``optbook.kernels.layout``
    How tensors are cut into tiles (no triton needed).
``optbook.kernels.roofline``
    Bytes per element of each pass and of a whole step, and the floor time at
    a given bandwidth (no triton needed).
``optbook.kernels.aot``
    Compiles the kernels for an H100 (``sm_90``) without a GPU and reports
    registers, spills and load widths.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["adafactor_fused", "cpu_fused", "layout", "roofline", "aot", "fused_adafactor", "triton_available"]


def triton_available() -> bool:
    """True if triton can be imported (it is the optional ``gpu`` extra)."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def __getattr__(name: str) -> Any:
    # Lazy: `import optbook.kernels` must work without triton installed.
    if name in ("adafactor_fused", "cpu_fused", "layout", "roofline", "aot"):
        return importlib.import_module(f"optbook.kernels.{name}")
    if name == "fused_adafactor":
        return importlib.import_module("optbook.kernels.adafactor_fused").fused_adafactor
    raise AttributeError(f"module 'optbook.kernels' has no attribute {name!r}")
