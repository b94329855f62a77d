"""Corrupted state dicts: a clear error or a well-defined load, never a crash or NaN later in step().

Hypothesis picks an optimizer, a parameter, an entry and a corruption (shape,
dtype, missing or extra key, NaN/inf/negative values, bad step counters,
wrong grouping). Either ``load_state_dict`` raises ``ValueError`` or
``TypeError`` and the optimizer is exactly as it was, or it loads and the
next steps run and leave finite parameters and state.
"""

from __future__ import annotations

import copy

import torch
from hypothesis import given
from hypothesis import strategies as st

from optbook import Adafactor
from optim_infos import INFOS, assert_unchanged, closure_for, model, snapshot, train

CORRUPTIONS = [
    "shape", "dtype-int", "dtype-complex", "dtype-bool", "dtype-float16", "missing-key", "extra-key",
    "nan", "inf", "negative", "not-a-tensor", "step-negative", "step-nan", "step-fraction", "step-str",
    "step-vector", "step-missing", "state-not-dict", "group-count", "param-count", "empty-state",
    "group-option-missing", "group-option-bad-type", "foreign-state-key",
]


def _prepared(info):
    net = model()
    opt = info.cls(net.parameters(), **({"k": 2} if info.name == "Sophia" else {}))
    train(opt, net, 3)
    closure_for(opt, net)()
    return net, opt


def _corrupt(sd, how, key, entry, rnd):
    state = sd["state"][key]
    tensors = [n for n, v in state.items() if torch.is_tensor(v) and v.dim() > 0]
    name = tensors[entry % len(tensors)]
    value = state[name]
    if how == "shape":
        state[name] = torch.zeros(value.numel() + 1, dtype=value.dtype)
    elif how == "dtype-int":
        state[name] = value.to(torch.int64)
    elif how == "dtype-complex":
        state[name] = value.to(torch.complex128)
    elif how == "dtype-bool":
        state[name] = value != 0
    elif how == "dtype-float16":
        state[name] = value.to(torch.float16)
    elif how == "missing-key":
        del state[name]
    elif how == "extra-key":
        state["exp_avg_sq"] = torch.zeros_like(value)
    elif how in ("nan", "inf", "negative"):
        flat = value.clone().reshape(-1)
        flat[rnd % flat.numel()] = {"nan": float("nan"), "inf": float("inf"), "negative": -1.0}[how]
        state[name] = flat.reshape(value.shape)
    elif how == "not-a-tensor":
        state[name] = value.tolist()
    elif how.startswith("step-"):
        if "step" not in state:
            state["step"] = -1  # Lion: an entry it does not keep
        elif how == "step-missing":
            del state["step"]
        else:
            state["step"] = {"step-negative": -2.0, "step-nan": float("nan"), "step-fraction": 2.5,
                             "step-str": "3", "step-vector": torch.tensor([1.0, 2.0])}[how]
    elif how == "state-not-dict":
        sd["state"][key] = [value]
    elif how == "group-count":
        sd["param_groups"] = sd["param_groups"] + [copy.deepcopy(sd["param_groups"][0])]
    elif how == "param-count":
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:-1]
    elif how == "empty-state":
        sd["state"][key] = {}
    elif how == "group-option-missing":
        del sd["param_groups"][0]["weight_decay"]
    elif how == "group-option-bad-type":
        sd["param_groups"][0]["weight_decay"] = "0.1"
    elif how == "foreign-state-key":
        state["row_var"] = torch.zeros(3)
    return sd


@given(
    which=st.sampled_from(range(len(INFOS))),
    how=st.sampled_from(CORRUPTIONS),
    param=st.integers(0, 3),
    entry=st.integers(0, 3),
    rnd=st.integers(0, 100),
)
def test_corrupted_state_dicts_fail_clearly_or_load_well(which, how, param, entry, rnd):
    info = INFOS[which]
    net, opt = _prepared(info)
    params = list(net.parameters())
    sd = copy.deepcopy(opt.state_dict())
    key = sorted(sd["state"])[param % len(sd["state"])]
    sd = _corrupt(sd, how, key, entry, rnd)
    before = snapshot(opt, params)
    try:
        opt.load_state_dict(sd)
    except (ValueError, TypeError) as err:
        assert "state_dict" in str(err) or "state dict" in str(err), err
        assert_unchanged(opt, params, before)
        return
    # a well-defined load: steps run, and nothing is NaN or inf afterwards
    train(opt, net, 3)
    assert all(bool(torch.isfinite(p).all()) for p in params), how
    for p in params:
        for value in opt.state[p].values():
            if torch.is_tensor(value) and value.is_floating_point():
                assert bool(torch.isfinite(value).all()), (how, value)


def test_adafactor_refuses_negative_or_nan_second_moments_at_load():
    net, opt = _prepared(INFOS[0])
    params = list(net.parameters())
    for name, bad in (("R", -1.0), ("C", float("nan")), ("V", float("inf"))):
        sd = copy.deepcopy(opt.state_dict())
        key = next(k for k, s in sd["state"].items() if name in s)
        sd["state"][key][name].reshape(-1)[0] = bad
        before = snapshot(opt, params)
        try:
            opt.load_state_dict(sd)
        except ValueError as err:
            assert name in str(err)
        else:  # pragma: no cover - the assertion below reports it
            raise AssertionError(f"{name}={bad} was loaded")
        assert_unchanged(opt, params, before)
    assert isinstance(opt, Adafactor)
