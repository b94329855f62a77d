"""optbook.notebook.glue stores CPU-independent values."""

import numpy as np
import pytest

from optbook.notebook import rounded


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.19370490012724012, 0.193705),
        (np.float64(31.622776601683782), 31.6228),
        (np.float32(0.1), 0.1),
        (-2.5e-7, -2.5e-7),
        (0.0, 0.0),
        (np.int64(20000), 20000),
        (True, True),
        ("Adam", "Adam"),
    ],
)
def test_rounded(value, expected):
    got = rounded(value)
    assert got == expected and type(got) is type(expected)


def test_rounding_hides_last_bit_noise():
    x = 0.19370490012724012
    assert rounded(x) == rounded(x * (1 + 4e-16)) == rounded(np.nextafter(x, 1.0))


def test_non_finite_pass_through():
    assert np.isnan(rounded(float("nan"))) and rounded(float("inf")) == float("inf")


def test_setup_makes_torch_deterministic_without_loading_inductor():
    """setup() sets torch's deterministic flag (warn-only) as the public call would, in a fresh
    process, without the 1.6 s import of TorchInductor that the public call makes."""
    import subprocess
    import sys

    code = (
        "import sys, torch, optbook.notebook as nb; nb.setup(seed=0); "
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
        "'torch._inductor.config' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "MPLBACKEND": "Agg"}).stdout.split()
    assert out == ["True", "True", "False"]


def test_setup_silences_tqdms_ipywidgets_notice():
    """The notice carries the install path in its text, so a stored copy would fail nbval on any other machine."""
    import warnings

    import optbook.notebook

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optbook.notebook.setup(seed=0)
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", UserWarning)
    assert not [w for w in caught if "IProgress" in str(w.message)]
