"""What machine a CPU timing ran on: processor model, logical CPUs, last-level cache, library versions.

A CPU timing means little without the machine it came from. :func:`machine_description`
collects what identifies it, from the operating system and the installed packages only
(nothing is timed, nothing is downloaded), and :func:`format_machine` prints it in one line.

* the processor model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere);
* the logical CPUs (``os.cpu_count()``: hardware threads, not cores);
* the last-level cache, from ``/sys/devices/system/cpu/cpu0/cache`` (the data or unified
  cache of the highest level), ``None`` where the system does not say;
* the versions of torch, numba and NumPy, from the installed metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MachineDescription", "machine_description", "format_machine", "parse_cache_size", "last_level_cache"]

# Functions that describe the machine rather than compute a symbol of the book.
__helpers__ = ("machine_description", "format_machine", "parse_cache_size", "last_level_cache")

_SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class MachineDescription:
    """The processor, its logical CPUs and last-level cache, and the versions of the libraries that ran."""

    cpu_model: str
    logical_cpus: int
    llc_level: int | None
    llc_bytes: int | None
    versions: dict


def parse_cache_size(text: str) -> int:
    """Bytes of a cache size as sysfs writes it: ``"32768K"``, ``"512K"``, ``"1M"``, ``"64"`` (bytes).

    Raises ``ValueError`` for anything else.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str such as '32768K', got {type(text).__name__}.")
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if m is None:
        raise ValueError(f"text must be a cache size such as '32768K' or '1M', got {text!r}.")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]


def last_level_cache(cache_dir: Path | str = _SYS_CACHE) -> tuple[int, int] | None:
    """``(level, bytes)`` of the highest-level data or unified cache under ``cache_dir`` (sysfs layout:
    ``index*/level``, ``index*/type``, ``index*/size``), or ``None`` if there is none to read."""
    best = None
    for index in sorted(Path(cache_dir).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and (best is None or level > best[0]):
            best = (level, size)
    return best


def _cpu_model() -> str:
    from optbook.bench.harness import _cpu_name  # the name the benchmark records carry

    return _cpu_name() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_description() -> MachineDescription:
    """The processor model, logical CPUs, last-level cache and the torch/numba/NumPy versions of this machine."""
    llc = last_level_cache()
    return MachineDescription(
        cpu_model=_cpu_model(),
        logical_cpus=os.cpu_count() or 1,
        llc_level=None if llc is None else llc[0],
        llc_bytes=None if llc is None else llc[1],
        versions={name: _version(name) for name in ("torch", "numba", "numpy")},
    )


def format_machine(desc: MachineDescription) -> str:
    """One line: ``"<model>, <n> logical CPUs, L3 32 MiB; torch 2.13.0, numba ..., numpy ..."``."""
    if not isinstance(desc, MachineDescription):
        raise TypeError(f"desc must be a MachineDescription (from machine_description()), got {type(desc).__name__}.")
    if desc.llc_bytes is None:
        cache = "last-level cache unknown"
    else:
        cache = f"L{desc.llc_level} {desc.llc_bytes / (1 << 20):g} MiB"
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in desc.versions.items())
    return f"{desc.cpu_model}, {desc.logical_cpus} logical CPUs, {cache}; {versions}"
