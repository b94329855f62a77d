"""``optbook.Adafactor.step`` under ``torch.compile(fullgraph=True)``: no graph break, the eager numbers.

``fullgraph=True`` turns any graph break into an error, so a passing compile
is the check that there is none. ``backend="aot_eager"`` runs dynamo and
AOTAutograd's functionalisation (the parts that decide graph breaks and
in-place handling) without a C++ compiler. The fused group runs its Triton
kernels as the custom op ``optbook::fused_adafactor_step`` (in Triton's
interpreter here, ``tests/conftest.py``). The oracle is the same optimizer
stepped eagerly from the same start: the non-fused path must agree to
float32 rounding, the fused one too (its compiled call re-reads X for
RMS(X_{t-1}) at every step, where the eager one carries the sum from the
previous update: a rounding-level difference).
"""

from __future__ import annotations

import pytest
import torch

import optbook

pytest.importorskip("triton")


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


@pytest.mark.parametrize(
    "options", [{}, {"fused": True, "beta1": 0.9, "weight_decay": 0.1}], ids=["default", "fused-momentum"]
)
def test_compiled_step_has_no_graph_break_and_matches_eager(options):
    torch._dynamo.reset()
    eager_model, compiled_model = _model(), _model()
    eager = optbook.Adafactor(eager_model.parameters(), **options)
    compiled = optbook.Adafactor(compiled_model.parameters(), **options)
    step = torch.compile(compiled.step, fullgraph=True, backend="aot_eager")
    gen = torch.Generator().manual_seed(1)
    for t in range(3):
        x, y = torch.randn(5, 8, generator=gen), torch.randn(5, 4, generator=gen)
        for model, run in ((eager_model, eager.step), (compiled_model, step if t else compiled.step)):
            model.zero_grad()
            (model(x) - y).square().mean().backward()
            run()  # the first step (which creates the state) runs eagerly, the next two compiled
    for p, q in zip(eager_model.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q, p, rtol=2e-6, atol=1e-7)
        for name, value in eager.state[p].items():
            torch.testing.assert_close(compiled.state[q][name], value, rtol=2e-6, atol=1e-7)
    assert float(compiled.state[q]["step"]) == 3.0
