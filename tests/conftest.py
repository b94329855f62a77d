"""Shared pytest set-up for the library tests."""

import os

# CI has no GPU: Triton kernels run under the interpreter on CPU tensors. The
# variable must be set before triton is first imported anywhere in the process.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests run in CI on two cores: a modest, derandomised example budget
# keeps them fast and reproducible.
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


# The numba kernels of optbook.kernels.cpu_fused take tens of seconds to compile on a fresh
# checkout (then they load from numba's on-disk cache). Keeping every test that runs them on
# one pytest-xdist worker (`make test-lib` passes --dist loadgroup) compiles them once, not twice.
_NUMBA_KERNEL_TESTS = ("test_kernel_cpu.py", "test_kernel_cpu_cache.py")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name in _NUMBA_KERNEL_TESTS:
            item.add_marker(pytest.mark.xdist_group("numba-cpu-kernels"))
