"""``optbook.Adafactor.step`` remembers the checks that passed; a change anywhere is still refused exactly as before.

The oracle for every refusal is the uncached check itself: the module's
``_check_foreign_options`` and ``_check_hyperparameters`` and the optimizer's
``_check_parameter``, called directly on the edited optimizer (what ``step``
ran for every group and parameter before the cache existed). A cached step
must raise the same exception type with the same message, and leave every
parameter and all state untouched. The bit-identity test compares the cached
optimizer with a fresh one rebuilt from the state dict at every step, which
checks everything.
"""

from __future__ import annotations

import copy
import gc
import pickle
import re
import weakref

import pytest
import torch

from optbook import Adafactor
from optbook.optim import adafactor as A

F64 = torch.float64
# A matrix, a vector, a scalar and a 3-D tensor: R/C, V and a batch of R/C
# (whose two largest dims are not the last two).
SHAPES = [(5, 3), (7,), (), (5, 2, 3)]


def _grads(params, seed):
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=gen)


def _stepped(steps=2, **options):
    """Two param groups (the second holds the last three tensors), stepped ``steps`` times."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, dtype=F64, generator=gen)) for s in SHAPES]
    opt = Adafactor([{"params": params[:1]}, {"params": params[1:]}], **options)
    for k in range(steps):
        _grads(params, seed=10 + k)
        opt.step()
    _grads(params, seed=99)
    return opt, params


def _uncached_error(opt):
    """The exception that the full (uncached) checks raise for ``opt`` now, or None."""
    try:
        for gi, group in enumerate(opt.param_groups):
            A._check_foreign_options(group, f"param group {gi}")
            A._check_hyperparameters(group, f"param group {gi}")
            for pi, p in enumerate(group["params"]):
                if p.grad is not None:
                    opt._check_parameter(p, f"parameter {pi} of param group {gi}", group)
    except Exception as exc:  # noqa: BLE001 - the oracle records whatever the checks raise
        return exc
    return None


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy([dict(opt.state[p]) for p in params])


def _assert_untouched(before, opt, params):
    old_params, old_state = before
    for p, old in zip(params, old_params):
        assert torch.equal(p.detach(), old), "a refused step changed a parameter"
    for p, old_entries in zip(params, old_state):
        state = dict(opt.state[p])
        assert list(state) == list(old_entries), "a refused step added or removed a state entry"
        for name, value in state.items():
            old = old_entries[name]
            if torch.is_tensor(value):
                assert value.dtype == old.dtype and value.shape == old.shape and value.device == old.device
                assert torch.equal(value, old), f"a refused step changed {name}"
            else:
                assert value is old or value == old


def _assert_refused_like_uncached(opt, params, error, match):
    expected = _uncached_error(opt)
    assert isinstance(expected, error), f"the uncached check raised {expected!r}, not {error.__name__}"
    assert re.search(match, str(expected)), str(expected)
    before = _snapshot(opt, params)
    with pytest.raises(error) as info:
        opt.step()
    assert type(info.value) is type(expected)
    assert str(info.value) == str(expected)
    _assert_untouched(before, opt, params)


def _set_data(tensor, value):
    tensor.data = value  # the same Python object with new metadata (shape, dtype or device)


# ----------------------------------------------------------------- (a) state changed after a step

STATE_EDITS = {
    # a new tensor of the wrong shape, on the last parameter (so the others would be written first)
    "R-replaced-wrong-shape": (lambda opt, ps: opt.state[ps[3]].__setitem__("R", torch.zeros(2, 5, dtype=F64)),
                               ValueError, r"parameter 2 of param group 1 .* has R=\(\(2, 5\)"),
    # the same tensor object, reshaped in place (identity alone would not see it)
    "C-same-object-new-shape": (lambda opt, ps: _set_data(opt.state[ps[0]]["C"], torch.zeros(4, dtype=F64)),
                                ValueError, r"parameter 0 of param group 0 .* has C=\(\(4,\)"),
    "V-same-object-new-dtype": (lambda opt, ps: _set_data(opt.state[ps[1]]["V"], torch.zeros(7)),
                                ValueError, r"has V as torch.float32 on cpu; it must be torch.float64"),
    "step-same-object-new-dtype": (lambda opt, ps: _set_data(opt.state[ps[2]]["step"], torch.zeros((), dtype=F64)),
                                   ValueError, r"has step=.*of dtype torch.float32"),
    "step-removed": (lambda opt, ps: opt.state[ps[3]].pop("step"), ValueError, r"has step=None"),
    "foreign-entry": (lambda opt, ps: opt.state[ps[1]].__setitem__("exp_avg_sq", torch.zeros(7, dtype=F64)),
                      ValueError, r"entry 'exp_avg_sq'"),
    "state-dict-replaced": (lambda opt, ps: opt.state.__setitem__(ps[3], {"step": torch.zeros(()), "V": torch.ones(3)}),
                            ValueError, r"has V=.*needs a floating-point tensor|entry 'V'"),
    "parameter-cast-in-place": (lambda opt, ps: _set_data(ps[1], ps[1].data.float()),
                                ValueError, r"parameter 0 of param group 1: its gradient is \(7,\) torch.float64"),
}


@pytest.mark.parametrize("edit,error,match", STATE_EDITS.values(), ids=list(STATE_EDITS))
def test_state_changed_after_steps_is_refused_as_without_the_cache(edit, error, match):
    opt, params = _stepped()
    assert opt._checked_parameters, "the steps should have remembered their checks"
    edit(opt, params)
    _assert_refused_like_uncached(opt, params, error, match)


def test_a_replaced_state_tensor_is_not_kept_alive_by_the_cache():
    opt, params = _stepped()
    old = weakref.ref(opt.state[params[0]]["R"])
    opt.state[params[0]]["R"] = opt.state[params[0]]["R"].clone()
    gc.collect()
    assert old() is None
    opt.step()  # a clone of the right layout passes (and is checked afresh)


# ----------------------------------------------------------------- (b) a bad gradient at a later step


def _grad_wrong_dtype(opt, ps):
    ps[3].grad_dtype = None  # lets torch assign a gradient of another dtype
    ps[3].grad = ps[3].grad.float()


def _grad_sparse(opt, ps):
    ps[1].grad = ps[1].grad.to_sparse()


GRAD_EDITS = {
    "dtype": (_grad_wrong_dtype, ValueError,
              r"parameter 2 of param group 1: its gradient is \(5, 2, 3\) torch.float32"),
    "shape": (lambda opt, ps: _set_data(ps[3].grad, torch.zeros(2, 5, 3, dtype=F64)),
              ValueError, r"parameter 2 of param group 1: its gradient is \(2, 5, 3\)"),
    "flattened": (lambda opt, ps: ps[0].grad.set_(torch.zeros(15, dtype=F64)),
                  ValueError, r"parameter 0 of param group 0: its gradient is \(15,\)"),
    "sparse": (_grad_sparse, A.SparseGradientError, r"parameter 0 of param group 1 has a sparse gradient"),
}


@pytest.mark.parametrize("edit,error,match", GRAD_EDITS.values(), ids=list(GRAD_EDITS))
# steps=1: the record was made before the state existed (checked again); steps=3: the remembered check.
@pytest.mark.parametrize("steps", [1, 3])
def test_bad_gradient_at_a_later_step_is_refused_as_without_the_cache(edit, error, match, steps):
    opt, params = _stepped(steps)
    edit(opt, params)
    _assert_refused_like_uncached(opt, params, error, match)


# ----------------------------------------------------------------- (c) an option changed between steps


def _set(name, value):
    return lambda opt: opt.param_groups[1].__setitem__(name, value)


def _eps_list_then_mutated(opt):
    opt.param_groups[1]["eps"] = [1e-30, 1e-3]  # a list: allowed, but never remembered (it can change in place)
    opt.step()
    opt.param_groups[1]["eps"][1] = -1.0


OPTION_EDITS = {
    "d-negative": (_set("d", -1), ValueError, r"param group 1: d \(clipping threshold\) must be > 0"),
    "d-true": (_set("d", True), TypeError, r"param group 1: d must be a real number, got True"),
    "eps-none": (_set("eps", (None, 1e-3)), ValueError, r"param group 1: eps\[0\] \(eps1\) is None"),
    "eps2-zero": (_set("eps", (1e-30, 0.0)), ValueError, r"param group 1: eps\[1\] \(eps2\)"),
    "eps-list-mutated": (_eps_list_then_mutated, ValueError, r"param group 1: eps\[1\] \(eps2\)"),
    "lr-nan": (_set("lr", float("nan")), ValueError, r"param group 1: lr must be finite"),
    "lr-negative": (_set("lr", -1e-3), ValueError, r"param group 1: lr must be finite and >= 0, got -0.001"),
    "lr-bool": (_set("lr", True), TypeError, r"param group 1: lr must be a real number, got True"),
    "lr-times-wd": (lambda opt: opt.param_groups[1].update(weight_decay=0.5, lr=2.0), ValueError,
                    r"param group 1: lr \* weight_decay must be < 1"),
    "lr-grows-past-wd": (lambda opt: (opt.param_groups[1].update(weight_decay=0.5), opt.step(),
                                      opt.param_groups[1].update(lr=2.5)), ValueError,
                         r"param group 1: lr \* weight_decay must be < 1, got 2.5"),
    "tensor-lr-nan-in-place": (lambda opt: (opt.param_groups[1].update(lr=torch.tensor(1e-2)), opt.step(),
                                            opt.param_groups[1]["lr"].fill_(float("nan"))), ValueError,
                               r"param group 1: lr must be finite"),
    "weight-decay": (_set("weight_decay", -0.1), ValueError, r"param group 1: weight_decay must be finite and >= 0"),
    "beta1": (_set("beta1", 1.0), ValueError, r"param group 1: beta1 must lie in \[0, 1\)"),
    "beta2-decay": (_set("beta2_decay", 0.8), ValueError, r"param group 1: beta2_decay must lie in \[-1, 0\)"),
    "factor-dims": (_set("factor_dims", "first_two"), ValueError, r"param group 1: factor_dims must be"),
    "maximize": (_set("maximize", 1), TypeError, r"param group 1: maximize must be True or False"),
    "capturable": (_set("capturable", "yes"), TypeError, r"param group 1: capturable must be True or False"),
    "fused-foreach": (lambda opt: opt.param_groups[1].update(fused=True, foreach=True), ValueError,
                      r"param group 1: fused=True does not support foreach=True"),
    "foreign-option": (_set("decay_rate", -0.8), ValueError, r"param group 1 sets 'decay_rate'"),
    "option-removed": (lambda opt: opt.param_groups[1].pop("d"), KeyError, r"'d'"),
    "group-replaced": (lambda opt: opt.param_groups.__setitem__(1, {**opt.param_groups[1], "d": 0.0}), ValueError,
                       r"param group 1: d \(clipping threshold\) must be > 0"),
    # changes that alter what the state must look like: the per-parameter records depend on them
    "factor-dims-switched": (_set("factor_dims", "two_largest"), ValueError,
                             r"parameter 2 of param group 1 .* has C=\(\(5, 3\).*shape \(2, 3\)"),
}


@pytest.mark.parametrize("edit,error,match", OPTION_EDITS.values(), ids=list(OPTION_EDITS))
def test_option_changed_between_steps_is_refused_as_without_the_cache(edit, error, match):
    opt, params = _stepped()
    edit(opt)
    _grads(params, seed=123)
    _assert_refused_like_uncached(opt, params, error, match)


def test_valid_changes_between_steps_are_taken():
    """A scheduler's lr, a switched-on beta1 and a new generator pass and take effect at the next step."""
    opt, params = _stepped()
    for k, lr in enumerate([3e-3, 2e-3, 1e-3]):
        opt.param_groups[0]["lr"] = lr
        opt.param_groups[1]["lr"] = lr
        _grads(params, seed=200 + k)
        opt.step()
    opt.param_groups[1]["beta1"] = 0.9
    opt.generator = torch.Generator().manual_seed(1)
    opt.step()
    assert all("exp_avg" in opt.state[p] for p in params[1:])


# ----------------------------------------------------------------- what forgets the records


def test_load_state_dict_add_param_group_and_copies_forget_the_records():
    opt, params = _stepped()
    assert opt._checked_parameters and opt._checked_options
    opt.load_state_dict(opt.state_dict())
    assert not opt._checked_parameters and not opt._checked_options
    opt.step()
    assert opt._checked_parameters
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, dtype=F64))]})
    assert not opt._checked_parameters and not opt._checked_options
    opt.step()
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert not clone._checked_parameters and not clone._checked_options
    state = opt.__getstate__()
    assert "_checked_parameters" not in state and "_checked_options" not in state


def test_steady_steps_skip_the_per_parameter_checks(monkeypatch):
    """After the step that creates the state, an unchanged step checks no parameter again."""
    opt, params = _stepped(steps=2)
    calls = []
    original = Adafactor._check_parameter
    monkeypatch.setattr(Adafactor, "_check_parameter", lambda self, p, *a: (calls.append(p), original(self, p, *a)))
    monkeypatch.setattr(A, "_check_hyperparameters", lambda *a: calls.append("options"))
    for k in range(3):
        opt.param_groups[1]["lr"] = 1e-3 * (k + 1)  # a scheduler: lr alone is checked, on its own
        _grads(params, seed=300 + k)
        opt.step()
    assert calls == []
    opt.state[params[2]]["step"] = opt.state[params[2]]["step"].clone()
    opt.step()
    assert len(calls) == 1 and calls[0] is params[2]


# ----------------------------------------------------------------- (d) the cached path computes the same


@pytest.mark.parametrize(
    "dtype,options",
    [
        (torch.float64, {}),
        (torch.float32, {"beta1": 0.9, "weight_decay": 0.1, "factor_dims": "two_largest"}),
        (torch.bfloat16, {"relative_step": False, "foreach": True}),
    ],
)
def test_cached_steps_are_bit_identical_to_a_fresh_optimizer_each_step(dtype, options):
    gen = torch.Generator().manual_seed(5)
    init = [torch.randn(s, generator=gen).to(dtype) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(5)]
    lrs = [1e-2, 8e-3, 6e-3, 4e-3, 2e-3]

    cached = [torch.nn.Parameter(x.clone()) for x in init]
    opt = Adafactor(cached, **options)
    fresh = [torch.nn.Parameter(x.clone()) for x in init]
    saved = None
    for k in range(5):
        for p, q, g in zip(cached, fresh, grads[k]):
            p.grad, q.grad = g.clone(), g.clone()
        opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        other = Adafactor(fresh, **options)  # a new optimizer: nothing remembered, everything checked
        if saved is not None:
            other.load_state_dict(saved)
        other.param_groups[0]["lr"] = lrs[k]
        other.step()
        saved = other.state_dict()
    assert opt._checked_parameters
    for p, q in zip(cached, fresh):
        assert torch.equal(p.detach(), q.detach())
        for name, value in opt.state[p].items():
            assert torch.equal(value, other.state[q][name]), name
