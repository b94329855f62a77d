"""Every public formula function carries its book symbol; the notation table is complete."""

import importlib
import inspect
import pkgutil

import optbook
from optbook.notation import notation_table

# Modules whose public functions are formulas of the book.
FORMULA_PACKAGES = ("optbook.reference", "optbook.problems", "optbook.analysis", "optbook.schedules", "optbook.tasks")


def formula_modules():
    for name in FORMULA_PACKAGES:
        module = importlib.import_module(name)
        yield module
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, prefix=name + "."):
                if info.name.rpartition(".")[2].startswith("_"):
                    continue
                yield importlib.import_module(info.name)


def test_every_public_formula_function_has_a_symbol():
    missing = []
    for module in formula_modules():
        helpers = set(getattr(module, "__helpers__", ()))
        public = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
        for name in public:
            obj = getattr(module, name, None)
            if not inspect.isfunction(obj) or obj.__module__ != module.__name__ or name in helpers:
                continue
            if not hasattr(obj, "__book_symbol__"):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public formula functions without @symbol (or list them in __helpers__): {missing}"


def test_notation_table_lists_registered_functions_once():
    table = notation_table()
    paths = [entry.function for entry in table]
    assert len(paths) == len(set(paths))
    assert "optbook.reference.adafactor.factored_second_moment" in paths
    for entry in table:
        module_name, _, qualname = entry.function.rpartition(".")
        assert getattr(importlib.import_module(module_name), qualname).__book_symbol__ is entry
        assert entry.latex and entry.meaning


def test_package_version_is_exposed():
    assert optbook.__version__
