"""The behaviour parity table of Part II's implementations chapter (optbook.analysis.crosscheck.behaviour_parity_table)."""

from __future__ import annotations

import pytest

from optbook.analysis.crosscheck import PARITY_BEHAVIOURS, behaviour_parity_table


@pytest.fixture(scope="module")
def detailed():
    return behaviour_parity_table(details=True)


def test_parity_table_runs_every_behaviour_on_every_implementation(detailed):
    table = detailed.map(lambda cell: cell.split(" (")[0])
    assert list(table.index) == list(PARITY_BEHAVIOURS)
    assert list(table.columns) == [
        "torch.optim.Adafactor", "transformers Adafactor", "pytorch_optimizer AdaFactor", "optbook.Adafactor",
    ]
    assert set(table.to_numpy().ravel()) <= {"yes", "no", "error"}
    # optbook has every behaviour; torch the ones its own suite checks
    assert (table["optbook.Adafactor"] == "yes").all(), detailed["optbook.Adafactor"]
    torch_col = table["torch.optim.Adafactor"]
    for row in ("copy.deepcopy continues bit-exactly", "complex parameter raises RuntimeError (torch's type)",
                "Tensor lr (equals the float lr)"):
        assert torch_col[row] == "yes", row
    # a fact the chapter states: torch writes NaN into the parameter for good
    assert torch_col["a NaN gradient leaves the parameters finite"] == "no"


def test_error_cells_name_the_exception(detailed):
    cells = [c for c in detailed.to_numpy().ravel() if c.startswith("error")]
    assert cells and all(c.startswith("error (") and ":" in c for c in cells)


def test_migration_difference_is_below_1e_6_and_checks_its_source():
    import pytest as _pytest

    from optbook.analysis.crosscheck import migration_difference

    assert migration_difference("torch") < 1e-6
    assert migration_difference("torch", weight_decay=0.1, lr=0.01) < 1e-6
    assert migration_difference("transformers") < 1e-6
    assert migration_difference("transformers", beta1=0.9, relative_step=False, lr=1e-3) < 1e-6
    with _pytest.raises(ValueError, match="source"):
        migration_difference("optax")
