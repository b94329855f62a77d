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
