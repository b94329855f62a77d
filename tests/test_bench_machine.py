"""The machine description printed next to CPU timings (optbook.bench.machine)."""

from __future__ import annotations

import os

import pytest

from optbook.bench.machine import (
    MachineDescription, format_machine, last_level_cache, machine_description, parse_cache_size,
)


@pytest.mark.parametrize("text, expected", [("32768K", 32 * 2**20), ("512K\n", 512 * 1024), ("1M", 2**20),
                                             ("64", 64), ("2 MiB", 2 * 2**20)])
def test_cache_sizes_as_sysfs_and_lscpu_write_them(text, expected):
    assert parse_cache_size(text) == expected


def test_bad_cache_sizes_are_refused():
    with pytest.raises(ValueError, match="cache size"):
        parse_cache_size("lots")
    with pytest.raises(TypeError, match="str"):
        parse_cache_size(512)


def _index(root, name, level, kind, size):
    d = root / name
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_last_level_cache_takes_the_highest_data_or_unified_level(tmp_path):
    _index(tmp_path, "index0", 1, "Data", "32K")
    _index(tmp_path, "index1", 1, "Instruction", "32K")
    _index(tmp_path, "index2", 2, "Unified", "512K")
    _index(tmp_path, "index3", 3, "Unified", "16384K")
    assert last_level_cache(tmp_path) == (3, 16 * 2**20)
    assert last_level_cache(tmp_path / "missing") is None


def test_description_of_this_machine():
    desc = machine_description()
    assert desc.logical_cpus == (os.cpu_count() or 1)
    assert set(desc.versions) == {"torch", "numba", "numpy"} and desc.versions["torch"]
    line = format_machine(desc)
    assert f"{desc.logical_cpus} logical CPUs" in line and desc.cpu_model in line


def test_format_names_an_unknown_cache_and_refuses_other_objects():
    desc = MachineDescription("CPU X", 4, None, None, {"torch": "2", "numba": None, "numpy": "2"})
    assert format_machine(desc) == "CPU X, 4 logical CPUs, last-level cache unknown; torch 2, numba not installed, numpy 2"
    with pytest.raises(TypeError, match="MachineDescription"):
        format_machine({"cpu_model": "x"})
