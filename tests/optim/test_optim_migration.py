"""Migration: optbook.Adafactor continues a run from torch.optim.Adafactor's or transformers' state dict.

Each test runs the original optimizer 5 steps, hands its state dict to a fresh
``optbook.Adafactor`` (built with its defaults: the hyperparameters come from
the state dict), and runs both 10 more steps on the same gradients. The
parameters must agree to 1e-6 relative in float32.
"""

from __future__ import annotations

import copy

import pytest
import torch

from optbook import Adafactor
from optim_infos import assert_unchanged, snapshot

SHAPES = [(6, 4), (2, 3, 5), (5,), (4, 1)]


def _problem(seed=0, steps=15):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g) for s in SHAPES]
    grads = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(steps)]
    return params, grads


def _run(opt, params, grads):
    for step in grads:
        for p, gr in zip(params, step):
            p.grad = gr.clone()
        opt.step()


def _continue_both(make_original, original_steps=5, more=10):
    x0, grads = _problem(steps=original_steps + more)
    ps = [torch.nn.Parameter(x.clone()) for x in x0]
    original = make_original(ps)
    _run(original, ps, grads[:original_steps])
    sd = copy.deepcopy(original.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ours = Adafactor(qs)
    ours.load_state_dict(sd)
    _run(original, ps, grads[original_steps:])
    _run(ours, qs, grads[original_steps:])
    return ps, qs, ours


def _assert_rel(ps, qs, rel=1e-6):
    for p, q in zip(ps, qs):
        scale = p.detach().abs().max().item()
        torch.testing.assert_close(q.detach(), p.detach(), rtol=rel, atol=rel * scale)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lr": 0.01, "weight_decay": 0.1}, {"maximize": True, "weight_decay": 0.1},
     {"beta2_decay": -1.0, "d": 1.5}, {"foreach": True}, {"lr": torch.tensor(0.005)}],
    ids=["default", "weight_decay", "maximize", "beta2_decay-d", "foreach", "tensor-lr"],
)
def test_continues_a_torch_optim_adafactor_run(kwargs):
    ps, qs, ours = _continue_both(lambda ps: torch.optim.Adafactor(ps, **copy.deepcopy(kwargs)))
    _assert_rel(ps, qs)
    group = ours.param_groups[0]
    assert group["eps"] == (1e-30, 1e-3)  # torch's clamp eps1=None becomes the paper's addend
    assert group["maximize"] == kwargs.get("maximize", False)
    assert set(ours.state[qs[0]]) == {"step", "R", "C", "nonfinite_skips"}
    assert ours.state[qs[0]]["step"].dtype == torch.float32 and float(ours.state[qs[0]]["step"]) == 15


TRANSFORMERS_CASES = {
    "default (relative step, parameter scale)": {},
    "external lr, no scaling": {"lr": 1e-3, "relative_step": False, "scale_parameter": False},
    "external lr, scaled": {"lr": 1e-2, "relative_step": False, "scale_parameter": True},
    "relative step, no scaling": {"scale_parameter": False},
    "momentum": {"beta1": 0.9},
    "clip and decay rate": {"clip_threshold": 2.0, "decay_rate": -0.5},
}


@pytest.mark.parametrize("kwargs", list(TRANSFORMERS_CASES.values()), ids=list(TRANSFORMERS_CASES))
def test_continues_a_transformers_adafactor_run(kwargs):
    from transformers.optimization import Adafactor as HFAdafactor

    args = {"lr": None, "warmup_init": False, **kwargs}
    ps, qs, ours = _continue_both(lambda ps: HFAdafactor(ps, **args))
    _assert_rel(ps, qs)
    group = ours.param_groups[0]
    assert group["relative_step"] == args.get("relative_step", True)
    assert group["scale_parameter"] == args.get("scale_parameter", True)
    assert group["beta1"] == args.get("beta1")
    assert "RMS" not in ours.state[qs[0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"weight_decay": 0.01}, "weight_decay"), ({"warmup_init": True, "lr": None}, "warmup_init")],
    ids=["weight_decay", "warmup_init"],
)
def test_transformers_options_without_an_equivalent_are_refused(kwargs, match):
    from transformers.optimization import Adafactor as HFAdafactor

    x0, grads = _problem(steps=2)
    ps = [torch.nn.Parameter(x.clone()) for x in x0]
    hf = HFAdafactor(ps, **{"lr": None, **kwargs})
    _run(hf, ps, grads)
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ours = Adafactor(qs)
    _run(ours, qs, grads[:1])
    before = snapshot(ours, qs)
    with pytest.raises(ValueError, match=match):
        ours.load_state_dict(hf.state_dict())
    assert_unchanged(ours, qs, before)


def test_the_input_state_dict_is_not_modified():
    x0, grads = _problem(steps=3)
    ps = [torch.nn.Parameter(x.clone()) for x in x0]
    original = torch.optim.Adafactor(ps)
    _run(original, ps, grads)
    sd = original.state_dict()
    kept = copy.deepcopy(sd)
    Adafactor([torch.nn.Parameter(p.detach().clone()) for p in ps]).load_state_dict(sd)
    assert sd["param_groups"] == kept["param_groups"]
    for k in kept["state"]:
        for name, value in kept["state"][k].items():
            assert torch.equal(sd["state"][k][name], value)
