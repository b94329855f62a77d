"""optbook.notation.notation_markdown: the notation appendix's tables, built from registry entries."""

import pytest

from optbook.notation import NotationEntry, notation_markdown, notation_table


def entry(function, latex=r"\rho_t", meaning="a step size", chapter=None):
    return NotationEntry(latex=latex, meaning=meaning, function=function, chapter=chapter)


def test_one_module_without_chapters_gives_the_expected_table_text():
    text = notation_markdown([entry("pkg.mod.f", latex=r" \alpha ", meaning="size (x_t)")])
    expected = "\n".join([
        "1 symbols, computed by 1 functions in 1 modules.",
        "",
        "~~~{list-table} `pkg.mod`",
        ":header-rows: 1",
        ":widths: 32 30 38",
        ":class: notation-table",
        "",
        "* - Symbol",
        "  - Meaning",
        "  - Computed by",
        r"* - $\alpha$",
        r"  - size \(x\_t\)",
        "  - `pkg.mod.f`",
        "~~~",
    ])
    assert text == expected


def test_entries_are_grouped_by_module_and_chapters_become_links():
    text = notation_markdown([entry("a.m.f", chapter="part2/01_memory.ipynb"), entry("a.m.g"), entry("b.n.h")])
    assert text.startswith("3 symbols, computed by 3 functions in 2 modules.")
    assert text.count("~~~{list-table}") == 2
    assert "Introduced in" in text and ":widths: 32 30 38 20" in text
    assert "{doc}`/book/part2/01_memory`" in text
    assert text.count("  - –") == 2  # the two entries without a chapter


def test_the_library_registry_renders_every_entry():
    entries = notation_table()
    text = notation_markdown(entries)
    assert all(f"`{e.function}`" in text for e in entries)


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="sorted"):
        notation_markdown([entry("b.m.f"), entry("a.m.f")])
    with pytest.raises(TypeError, match="NotationEntry"):
        notation_markdown(["not an entry"])
