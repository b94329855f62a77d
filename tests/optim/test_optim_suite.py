"""optbook's optimizers against the categories of PyTorch's own optimizer suite (TestOptimRenewed).

Every test runs over every optimizer of :data:`optim_infos.INFOS` and, where
it makes sense, over its curated inputs with ``foreach`` False and True.
Comparisons between two runs that should agree are bit for bit.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as sched
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import optbook
from optbook import Adafactor, Lion, Sophia
from optbook.optim._compat import ComplexParameterError, SparseGradientError
from optim_infos import (
    IDS,
    INFOS,
    assert_same,
    assert_unchanged,
    bind_estimator,
    closure_for,
    inputs_with_global_flags,
    loss_of,
    model,
    snapshot,
    train,
)

F64 = torch.float64


def test_top_level_exports():
    assert optbook.Lion is Lion and optbook.Sophia is Sophia and optbook.Adafactor is Adafactor
    assert {"Adafactor", "Lion", "Sophia"} <= set(optbook.__all__)


# --------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_state_dict_round_trip_through_torch_save_weights_only(info):
    for inp in inputs_with_global_flags(info):
        net = model()
        opt = info.cls(net.parameters(), **inp.kwargs)
        train(opt, net, 3)
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)
        assert_same(loaded, opt.state_dict())
        net2 = copy.deepcopy(net)
        opt2 = info.cls(net2.parameters(), **copy.deepcopy(inp.kwargs))
        opt2.load_state_dict(loaded)
        train(opt, net, 3)
        train(opt2, net2, 3)
        assert_same(list(net.parameters()), list(net2.parameters()))
        assert_same(opt.state_dict(), opt2.state_dict())


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_loading_a_state_dict_without_newer_options(info):
    """A checkpoint saved before an option existed loads, and steps as with that option's default."""
    for inp in info.inputs():
        net = model()
        opt = info.cls(net.parameters(), **inp.kwargs)
        train(opt, net, 3)
        sd = copy.deepcopy(opt.state_dict())
        for group in sd["param_groups"]:
            for name in list(group):
                if name not in info.og_options and name != "params":
                    del group[name]
        # the reference: the same options without every newer one (their defaults)
        net_ref = copy.deepcopy(net)
        kept = {k: v for k, v in copy.deepcopy(inp.kwargs).items() if k in info.og_options}
        ref = info.cls(net_ref.parameters(), **kept)
        ref.load_state_dict(copy.deepcopy(sd))
        opt.load_state_dict(sd)
        for group in opt.param_groups:
            assert set(info.cls.__init__.__kwdefaults__) - {"hessian_estimator"} <= set(group)
        train(opt, net, 2)
        train(ref, net_ref, 2)
        assert_same(list(net.parameters()), list(net_ref.parameters()))


@pytest.mark.parametrize("info", INFOS, ids=IDS)
@pytest.mark.parametrize("form", ["float", "int", "0-dim float64", "1-element"])
def test_loading_a_step_stored_as_a_number_or_another_tensor(info, form):
    if info.cls is Lion:
        pytest.skip("Lion keeps no step counter")
    net = model()
    opt = info.cls(net.parameters())
    train(opt, net, 3)
    sd = copy.deepcopy(opt.state_dict())
    for state in sd["state"].values():
        n = int(float(state["step"]))
        state["step"] = {
            "float": float(n), "int": n, "0-dim float64": torch.tensor(float(n), dtype=F64),
            "1-element": torch.tensor([float(n)]),
        }[form]
    net2 = copy.deepcopy(net)
    opt2 = info.cls(net2.parameters())
    opt2.load_state_dict(sd)
    train(opt, net, 2)
    train(opt2, net2, 2)
    assert_same(list(net.parameters()), list(net2.parameters()))
    assert_same(opt.state_dict(), opt2.state_dict())


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_state_dict_is_deterministic_and_the_input_is_not_modified(info):
    net = model()
    opt = info.cls(net.parameters())
    train(opt, net, 2)
    sd = opt.state_dict()
    kept = copy.deepcopy(sd)
    net2 = copy.deepcopy(net)
    opt2 = info.cls(net2.parameters())
    opt2.load_state_dict(sd)
    assert_same(sd, kept)
    assert_same(opt2.state_dict(), opt.state_dict())


# --------------------------------------------------------------------------- deepcopy and pickle


def _with_extras(info, net, kwargs):
    """An optimizer with the attributes outside param_groups that a copy must keep."""
    params = list(net.parameters())
    if info.cls is Sophia:
        return Sophia(params, hessian_estimator=bind_estimator(params), **kwargs)
    opt = info.cls(params, **kwargs)
    if info.cls is Adafactor:
        opt.generator = torch.Generator().manual_seed(7)
    return opt


@pytest.mark.parametrize("info", INFOS, ids=IDS)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_continue_bit_exactly(info, how):
    kwargs = {"k": 2} if info.cls is Sophia else {}
    net = model()
    opt = _with_extras(info, net, kwargs)
    train(opt, net, 3)
    if how == "deepcopy":
        net2, opt2 = copy.deepcopy((net, opt))
    else:
        net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    public = {k for k in vars(opt) if not k.startswith("_")}
    assert public == {k for k in vars(opt2) if not k.startswith("_")}
    train(opt, net, 4)
    train(opt2, net2, 4)
    assert_same(list(net.parameters()), list(net2.parameters()))
    assert_same(opt.state_dict(), opt2.state_dict())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_adafactor_copy_keeps_the_stochastic_rounding_stream(how):
    torch.manual_seed(3)
    p = torch.nn.Parameter(torch.randn(8, 6).bfloat16())
    opt = Adafactor([p], stochastic_rounding=True)
    opt.generator = torch.Generator().manual_seed(11)
    grads = [torch.randn(8, 6).bfloat16() for _ in range(6)]
    p.grad = grads[0]
    opt.step()
    p2, opt2 = copy.deepcopy((p, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((p, opt)))
    assert opt2.generator is not opt.generator
    for g in grads[1:]:
        p.grad, p2.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert torch.equal(p.detach(), p2.detach())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_sophia_copy_keeps_its_hessian_estimator(how):
    net = model()
    params = list(net.parameters())
    opt = Sophia(params, k=2, hessian_estimator=bind_estimator(params))
    train(opt, net, 1)
    net2, opt2 = copy.deepcopy((net, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((net, opt)))
    assert opt2.hessian_estimator is not None
    train(opt2, net2, 3)  # crosses a Hessian refresh (step 3 with k=2)
    assert all(torch.equal(opt2.state[p]["hessian"], opt2.state[p]["hessian"]) for p in net2.parameters())
    assert all(bool((opt2.state[p]["hessian"] > 0).all()) for p in net2.parameters())


# --------------------------------------------------------------------------- implementations and options


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_foreach_matches_forloop(info):
    """Bit for bit in float64, with a 0-dim parameter, a step with no gradients and a frozen layer."""
    for inp in info.inputs():
        results = []
        for foreach in (False, True):
            net = model()
            extra = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))
            empty = torch.nn.Parameter(torch.zeros(0, 3, dtype=F64))
            opt = info.cls(list(net.parameters()) + [extra, empty], foreach=foreach, **copy.deepcopy(inp.kwargs))
            for i in range(7):
                opt.zero_grad()
                net[2].requires_grad_(i not in (3, 4))
                if i != 2:
                    (loss_of(net) + extra**2).backward()
                    empty.grad = torch.zeros_like(empty)
                opt.step()
            results.append((list(net.parameters()) + [extra, empty], opt.state_dict()["state"]))
        assert_same(results[0], results[1])


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_maximize_is_minimize_of_the_negated_gradient(info):
    for foreach in (False, True):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(4, 3, dtype=F64))
        q = torch.nn.Parameter(p.detach().clone())
        grads = [torch.randn(4, 3, dtype=F64) for _ in range(4)]
        up = info.cls([p], maximize=True, foreach=foreach)
        down = info.cls([q], foreach=foreach)
        for g in grads:
            p.grad, q.grad = g.clone(), -g
            up.step()
            down.step()
        assert torch.equal(p.detach(), q.detach())
        assert torch.equal(p.grad, grads[-1])  # the gradient itself is not negated in place


@pytest.mark.parametrize("info", INFOS, ids=IDS)
@pytest.mark.parametrize("contiguous", [True, False])
def test_forloop_goes_right_direction(info, contiguous):
    for inp in info.inputs():
        torch.manual_seed(0)
        if contiguous:
            w = torch.nn.Parameter(torch.randn(10, 5))
            b = torch.nn.Parameter(torch.randn(10))
        else:
            w = torch.nn.Parameter(torch.randn(10, 5, 2)[..., 0])
            b = torch.nn.Parameter(torch.randn(10, 2)[..., 0])
        x = torch.randn(5)
        kwargs = copy.deepcopy(inp.kwargs)
        if info.cls is not Adafactor and "lr" not in kwargs:
            kwargs["lr"] = 1e-2
        opt = info.cls([w, b], foreach=False, **kwargs)

        def closure():
            opt.zero_grad()
            loss = (w.mv(x) + b).pow(2).sum()
            loss.backward()
            return loss

        start = closure().item()
        for _ in range(20):
            opt.step(closure)
        end = closure().item()
        assert (end > start) if kwargs.get("maximize") else (end < start), inp.desc


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_param_groups_with_different_options_equal_separate_optimizers(info):
    inputs = info.inputs()
    a, b = inputs[1].kwargs, inputs[2].kwargs
    net = model()
    net_ref = copy.deepcopy(net)
    first, second = list(net[0].parameters()), list(net[2].parameters())
    opt = info.cls([dict(params=first, **copy.deepcopy(a)), dict(params=second, **copy.deepcopy(b))])
    ref_a = info.cls(list(net_ref[0].parameters()), **copy.deepcopy(a))
    ref_b = info.cls(list(net_ref[2].parameters()), **copy.deepcopy(b))
    for _ in range(4):
        opt.zero_grad(), ref_a.zero_grad(), ref_b.zero_grad()
        loss_of(net).backward()
        loss_of(net_ref).backward()
        opt.step(), ref_a.step(), ref_b.step()
    assert_same(list(net.parameters()), list(net_ref.parameters()))


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_parameters_without_grad_and_0_dim_and_zero_size_parameters(info):
    for inp in inputs_with_global_flags(info):
        frozen = torch.randn(2, 3)
        scalar = torch.nn.Parameter(torch.tensor(1.5))
        empty = torch.nn.Parameter(torch.zeros(0))
        empty2 = torch.nn.Parameter(torch.zeros(3, 0))
        opt = info.cls([torch.nn.Parameter(frozen.clone()), scalar, empty, empty2], **inp.kwargs)
        before = frozen.clone()
        for _ in range(3):
            scalar.grad = torch.tensor(0.3)
            empty.grad, empty2.grad = torch.zeros(0), torch.zeros(3, 0)
            opt.step()
        assert torch.equal(opt.param_groups[0]["params"][0].detach(), before)
        assert opt.param_groups[0]["params"][0] not in opt.state  # no grad: no state
        assert torch.isfinite(scalar).all() and scalar.item() != 1.5
        assert empty.shape == (0,) and empty2.shape == (3, 0)
        for state in opt.state.values():
            assert len(state) > 0


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_step_with_a_closure_returns_its_loss_computed_with_grad(info):
    net = model()
    opt = info.cls(net.parameters())
    seen = []

    def closure():
        seen.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = loss_of(net)
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert torch.is_tensor(loss) and seen == [True]
    assert opt.step() is None


# --------------------------------------------------------------------------- schedulers and Tensor lr


SCHEDULERS = {
    "StepLR": lambda o: sched.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: sched.MultiStepLR(o, milestones=[1, 3], gamma=0.5),
    "ExponentialLR": lambda o: sched.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: sched.CosineAnnealingLR(o, T_max=4),
    "CosineAnnealingWarmRestarts": lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=2),
    "LinearLR": lambda o: sched.LinearLR(o, start_factor=0.5, total_iters=3),
    "ConstantLR": lambda o: sched.ConstantLR(o, factor=0.5, total_iters=2),
    "PolynomialLR": lambda o: sched.PolynomialLR(o, total_iters=4, power=2.0),
    "LambdaLR": lambda o: sched.LambdaLR(o, lambda e: 1.0 / (e + 1)),
    "MultiplicativeLR": lambda o: sched.MultiplicativeLR(o, lambda e: 0.9),
    "CyclicLR": lambda o: sched.CyclicLR(o, base_lr=1e-4, max_lr=1e-3, step_size_up=2, cycle_momentum=False),
    "OneCycleLR": lambda o: sched.OneCycleLR(o, max_lr=1e-3, total_steps=10, cycle_momentum=False),
    "SequentialLR": lambda o: sched.SequentialLR(
        o, [sched.ConstantLR(o, factor=0.5, total_iters=2), sched.ExponentialLR(o, gamma=0.9)], milestones=[2]
    ),
    "ChainedScheduler": lambda o: sched.ChainedScheduler(
        [sched.ConstantLR(o, factor=0.5, total_iters=2), sched.ExponentialLR(o, gamma=0.9)]
    ),
    "ReduceLROnPlateau": lambda o: sched.ReduceLROnPlateau(o, patience=0, factor=0.5, threshold=10.0),
}


def _run_with_scheduler(info, make, lr, steps=6):
    net = model()
    opt = info.cls(net.parameters(), lr=lr)
    scheduler = make(opt)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # schedulers' own deprecation notes
        for _ in range(steps):
            loss = closure_for(opt, net)()
            opt.step()
            if isinstance(scheduler, sched.ReduceLROnPlateau):
                scheduler.step(loss.item())
            else:
                scheduler.step()
            lrs.append(float(opt.param_groups[0]["lr"]))
    return net, opt, lrs


@pytest.mark.parametrize("info", INFOS, ids=IDS)
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_lr_scheduler_with_float_and_tensor_lr(info, name):
    make = SCHEDULERS[name]
    net_f, opt_f, lrs_f = _run_with_scheduler(info, make, 1e-3)
    net_t, opt_t, lrs_t = _run_with_scheduler(info, make, torch.tensor(1e-3, dtype=F64))
    assert len(set(lrs_f)) > 1, "the scheduler never changed lr"
    assert torch.is_tensor(opt_t.param_groups[0]["lr"])
    assert lrs_t == pytest.approx(lrs_f, rel=1e-12)
    for a, b in zip(net_f.parameters(), net_t.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_tensor_lr_is_the_float_lr(info):
    for foreach in (False, True):
        runs = []
        for lr in (1e-2, torch.tensor(1e-2, dtype=F64), torch.tensor([1e-2], dtype=F64)):
            net = model()
            opt = info.cls(net.parameters(), lr=lr, foreach=foreach)
            train(opt, net, 3)
            runs.append(list(net.parameters()))
        assert_same(runs[0], runs[1])
        assert_same(runs[0], runs[2])


# --------------------------------------------------------------------------- zero_grad and hooks


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_zero_grad_set_to_none(info):
    net = model()
    opt = info.cls(net.parameters())
    closure_for(opt, net)()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    opt.step()  # no gradients: a no-op
    assert not opt.state


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_step_hooks_fire_in_order_and_can_be_removed(info):
    data = []
    net = model()
    opt = info.cls(net.parameters())
    handles = [
        register_optimizer_step_pre_hook(lambda *a: data.append("global pre")),
        register_optimizer_step_post_hook(lambda *a: data.append("global post")),
        opt.register_step_pre_hook(lambda *a: data.append("pre")),
        opt.register_step_post_hook(lambda *a: data.append("post")),
    ]
    try:
        closure_for(opt, net)()
        opt.step()
        assert data == ["global pre", "pre", "post", "global post"]
    finally:
        for h in handles:
            h.remove()
    opt.step()
    assert len(data) == 4


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_state_dict_hooks(info):
    net = model()
    opt = info.cls(net.parameters())
    train(opt, net, 1)
    opt.register_state_dict_pre_hook(lambda o: o.state.__setitem__("marker", 1))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "post": sd["state"].pop("marker")})
    sd = opt.state_dict()
    assert sd["post"] == 1 and "marker" not in sd["state"]
    del opt.state["marker"]
    seen = []
    opt.register_load_state_dict_pre_hook(lambda o, sd: sd["param_groups"][0].__setitem__("lr", 2e-3))

    def replace(o, sd):  # returns a new dict: the loader must use it
        new = copy.deepcopy(sd)
        new["param_groups"][0]["lr"] = 3e-3
        return new

    opt.register_load_state_dict_pre_hook(replace)
    opt.register_load_state_dict_post_hook(lambda o: seen.append(o.param_groups[0]["lr"]))
    opt.load_state_dict(sd)
    assert seen == [3e-3] and opt.param_groups[0]["lr"] == 3e-3
    train(opt, net, 1)


# --------------------------------------------------------------------------- dtypes and devices


@pytest.mark.parametrize("info", INFOS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_dtype_and_device_are_preserved(info, dtype):
    for foreach in (False, True):
        net = model(dtype)
        opt = info.cls(net.parameters(), lr=1e-3, foreach=foreach)
        train(opt, net, 2, dtype)
        for p in net.parameters():
            assert p.dtype == dtype and p.device.type == "cpu"
            for name, value in opt.state[p].items():
                if torch.is_tensor(value) and value.dim() > 0:
                    assert value.dtype == info.stats_dtype(dtype), (name, value.dtype)
                    assert value.device == p.device
        net2 = copy.deepcopy(net)
        opt2 = info.cls(net2.parameters(), lr=1e-3, foreach=foreach)
        opt2.load_state_dict(opt.state_dict())
        assert_same(opt2.state_dict(), opt.state_dict())
        assert all(torch.isfinite(p).all() for p in net.parameters())


# --------------------------------------------------------------------------- errors


def _two_params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]


BAD_OPTIONS = {
    "Adafactor": [
        ({"lr": -1.0}, ValueError, "lr"), ({"lr": torch.tensor([1e-3, 1e-3])}, ValueError, "Tensor lr must be 1-element"),
        ({"beta2_decay": 0.8}, ValueError, "beta2_decay"), ({"d": 0.0}, ValueError, "d"),
        ({"eps": (-1e-30, 1e-3)}, ValueError, "eps"), ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"foreach": "yes"}, TypeError, "foreach"), ({"lr": "1e-3"}, TypeError, "lr"),
    ],
    "Lion": [
        ({"lr": -1.0}, ValueError, "lr"), ({"lr": torch.tensor([1e-3, 1e-3])}, ValueError, "Tensor lr must be 1-element"),
        ({"betas": (1.0, 0.99)}, ValueError, "beta"), ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"foreach": "yes"}, TypeError, "foreach"), ({"lr": "1e-3"}, TypeError, "lr"),
        ({"betas": (0.9, torch.tensor(0.99))}, ValueError, "betas as Tensors are not supported"),
    ],
    "Sophia": [
        ({"lr": -1.0}, ValueError, "lr"), ({"lr": torch.tensor([1e-3, 1e-3])}, ValueError, "Tensor lr must be 1-element"),
        ({"rho": 0.0}, ValueError, "rho"), ({"eps": 0.0}, ValueError, "eps"), ({"k": 0}, ValueError, "k"),
        ({"betas": (0.9, 1.0)}, ValueError, "beta"), ({"foreach": "yes"}, TypeError, "foreach"),
        ({"betas": (torch.tensor(0.9), 0.99)}, ValueError, "betas as Tensors are not supported"),
    ],
}


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_bad_hyperparameters_are_refused_everywhere_and_change_nothing(info):
    for kwargs, error, match in BAD_OPTIONS[info.name]:
        with pytest.raises(error, match=match):
            info.cls(_two_params(), **kwargs)
        params = _two_params()
        opt = info.cls(params[:1])
        with pytest.raises(error, match=match):
            opt.add_param_group(dict(params=params[1:], **kwargs))
        assert len(opt.param_groups) == 1
        # a scheduler or a user edits a group: step refuses before writing anything
        net = model()
        opt = info.cls(net.parameters())
        train(opt, net, 1)
        closure_for(opt, net)()
        before = snapshot(opt, list(net.parameters()))
        good = dict(opt.param_groups[0])
        opt.param_groups[0].update(kwargs)
        with pytest.raises(error, match=match):
            opt.step()
        opt.param_groups[0].update({k: good[k] for k in kwargs})
        assert_unchanged(opt, list(net.parameters()), before)
        # and so does load_state_dict
        sd = copy.deepcopy(opt.state_dict())
        sd["param_groups"][0].update(copy.deepcopy(kwargs))
        with pytest.raises(error, match=match):
            opt.load_state_dict(sd)
        assert_unchanged(opt, list(net.parameters()), before)


def _stepped(info):
    net = model()
    opt = info.cls(net.parameters())
    train(opt, net, 2)
    closure_for(opt, net)()
    return net, opt


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_sparse_and_complex_gradients_raise_torchs_type_and_change_nothing(info):
    net, opt = _stepped(info)
    params = list(net.parameters())
    before = snapshot(opt, params)
    params[2].grad = params[2].grad.to_sparse()
    with pytest.raises(RuntimeError, match="does not support sparse gradients") as err:
        opt.step()
    assert isinstance(err.value, (SparseGradientError, ValueError))
    assert_unchanged(opt, params, before)

    z = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex64))
    z.grad = torch.randn_like(z)
    real = torch.nn.Parameter(torch.randn(2))
    real.grad = torch.randn(2)
    opt = info.cls([real, z])
    with pytest.raises(RuntimeError, match="does not support complex parameters") as err:
        opt.step()
    assert isinstance(err.value, (ComplexParameterError, TypeError))
    assert not opt.state


# The inputs that torch.optim raises for in every optimizer (torch's
# get_error_inputs_for_all_optims): ours must raise the same type.
def _shared_error_inputs():
    p = torch.nn.Parameter(torch.randn(1, 1))
    q = torch.nn.Parameter(torch.randn(1, 1))
    return [
        ("params not iterable", lambda cls: cls(p), None),
        ("duplicate params across groups", lambda cls: cls([{"params": [p]}, {"params": [p]}]), None),
        ("Tensor lr with 2 elements", lambda cls: cls([p], lr=torch.tensor([1e-3, 1e-3])), None),
        ("names on some params", lambda cls: cls([("w", p), q]), None),
        ("sparse gradient", lambda cls: cls([p]), "sparse"),
        ("wrong group count in a state dict", lambda cls: cls([p]), "groups"),
        ("wrong param count in a state dict", lambda cls: cls([p]), "params"),
    ]


def _provoke(make, cls, what):
    opt = make(cls)
    p = opt.param_groups[0]["params"][0]
    if what == "sparse":
        p.grad = torch.ones_like(p).to_sparse()
        opt.step()
    elif what == "groups":
        sd = opt.state_dict()
        opt.load_state_dict({**sd, "param_groups": sd["param_groups"] * 2})
    elif what == "params":
        sd = copy.deepcopy(opt.state_dict())
        sd["param_groups"][0]["params"].append(99)
        opt.load_state_dict(sd)


def _error_type(fn):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fn()
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc)
    return None


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_error_types_match_torch_input_by_input(info):
    twin = torch.optim.Adafactor if info.cls is Adafactor else torch.optim.Adam
    for desc, make, what in _shared_error_inputs():
        expected = _error_type(lambda: _provoke(make, twin, what))
        got = _error_type(lambda: _provoke(make, info.cls, what))
        assert expected is not None, desc
        assert got is not None and issubclass(got, expected), (desc, got, expected)
    # duplicate parameters inside one group: a warning, as in torch
    p = torch.nn.Parameter(torch.randn(2))
    with pytest.warns(UserWarning, match="duplicate parameters"):
        info.cls([p, p])


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_torchs_own_error_inputs_raise_the_same_types(info):
    """Every error input of torch's OptimizerInfo for the optimizer each one stands in for.

    Adafactor: torch.optim.Adafactor's. Lion and Sophia: torch.optim.Adam's, except
    the Tensor lr with foreach=True that Adam refuses and these two support.
    """
    from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

    twin = "Adafactor" if info.cls is Adafactor else "Adam"
    twin_info = next(o for o in optim_db if o.optim_cls.__name__ == twin)
    checked = 0
    for error_input in twin_info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        inp = error_input.optimizer_error_input
        if torch.is_tensor(inp.kwargs.get("lr")) and inp.kwargs.get("foreach") and inp.kwargs["lr"].numel() == 1:
            continue  # supported here

        def provoke(cls):
            opt = cls(inp.params, **inp.kwargs)
            if error_input.error_on == OptimizerErrorEnum.STEP_ERROR:
                opt.step()

        expected = _error_type(lambda: provoke(twin_info.optim_cls))
        got = _error_type(lambda: provoke(info.cls))
        assert expected is not None and got is not None and issubclass(got, expected), (inp.desc, got, expected)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_mismatched_state_dicts_are_refused_and_change_nothing(info):
    net, opt = _stepped(info)
    params = list(net.parameters())
    before = snapshot(opt, params)
    other = model()
    other[0] = torch.nn.Linear(2, 4).double()
    other[2] = torch.nn.Linear(4, 1).double()
    opt_other = info.cls(other.parameters())
    train(opt_other, other, 1)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict(opt_other.state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="param groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    assert_unchanged(opt, params, before)


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_capturable_and_differentiable_are_refused_clearly(info):
    p = torch.nn.Parameter(torch.randn(2))
    if info.capturable:  # an option: a step with it equals a step without it off a CUDA graph
        q = torch.nn.Parameter(p.detach().clone())
        plain, capt = info.cls([p]), info.cls([q], capturable=True)
        assert capt.param_groups[0]["capturable"] is True and plain.param_groups[0]["capturable"] is False
        for _ in range(2):
            p.grad, q.grad = torch.ones(2), torch.ones(2)
            plain.step()
            capt.step()
        torch.testing.assert_close(q, p, rtol=0, atol=0)
    for flag in ("differentiable",) if info.capturable else ("capturable", "differentiable"):
        with pytest.raises(TypeError, match=flag):
            info.cls([p], **{flag: True})
        opt = info.cls([p])
        p.grad = torch.ones(2)
        opt.param_groups[0][flag] = True
        before = snapshot(opt, [p])
        with pytest.raises(ValueError, match=flag):
            opt.step()
        assert_unchanged(opt, [p], before)
        opt.param_groups[0][flag] = False  # what torch writes into groups: accepted
        opt.step()
