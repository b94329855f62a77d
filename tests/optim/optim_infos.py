"""The OptimizerInfo-style database that drives ``tests/optim``: optbook's optimizers and curated inputs.

As in ``torch.testing._internal.common_optimizers``, each optimizer has a
function returning a short, curated list of option sets (not the cross
product); the "global" flags (here ``foreach``) are added on top by
:func:`inputs_with_global_flags`, as ``_get_optim_inputs_including_global_cliquey_kwargs``
does. Written for optbook (not copied from torch's test suite).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from optbook import Adafactor, Lion, Sophia


@dataclass
class Input:
    kwargs: dict[str, Any]
    desc: str


@dataclass
class Info:
    cls: type
    inputs: Callable[[], list[Input]]
    # Options an original release would have had; every other key of a param
    # group is "newer" and must be fillable when a state dict lacks it.
    og_options: tuple[str, ...]
    # Per-parameter state entries that are tensors of the parameter's shape
    # (for the corruption tests), and the "second-moment" entries (>= 0).
    full_state: tuple[str, ...]
    second_moment: tuple[str, ...] = ()
    stats_dtype: Callable[[torch.dtype], torch.dtype] = field(default=lambda d: d)
    # Whether ``capturable=True`` is an option (as in torch's capturable optimizers)
    # rather than refused with a clear error.
    capturable: bool = False

    @property
    def name(self) -> str:
        return self.cls.__name__


def _tlr(x: float) -> torch.Tensor:
    # float64 so that float(lr) is exactly x: a Tensor-lr run equals the float-lr run bit for bit.
    return torch.tensor(x, dtype=torch.float64)


def adafactor_inputs() -> list[Input]:
    return [
        Input({}, "default"),
        Input({"weight_decay": 0.1, "lr": 0.01}, "nonzero weight_decay"),
        Input({"weight_decay": 0.1, "maximize": True}, "maximize"),
        Input({"beta2_decay": -1.0, "d": 1.5}, "beta2_decay and d"),
        Input({"lr": _tlr(0.01)}, "Tensor lr"),
        Input({"beta1": 0.9}, "momentum"),
        Input({"relative_step": False, "scale_parameter": False, "lr": 1e-2}, "absolute step"),
        Input({"factor_dims": "two_largest"}, "two largest dims"),
    ]


def lion_inputs() -> list[Input]:
    return [
        Input({}, "default"),
        Input({"lr": 1e-3, "weight_decay": 0.1}, "nonzero weight_decay"),
        Input({"lr": 1e-3, "weight_decay": 0.1, "maximize": True}, "maximize"),
        Input({"lr": 1e-3, "betas": (0.95, 0.98)}, "non-default betas"),
        Input({"lr": _tlr(1e-3)}, "Tensor lr"),
    ]


def sophia_inputs() -> list[Input]:
    return [
        Input({"k": 2}, "default, k=2"),
        Input({"lr": 1e-3, "weight_decay": 0.0}, "no weight_decay"),
        Input({"lr": 1e-3, "weight_decay": 0.1, "maximize": True}, "maximize"),
        Input({"lr": 1e-3, "rho": 0.5, "betas": (0.9, 0.95)}, "rho and betas"),
        Input({"lr": _tlr(1e-3)}, "Tensor lr"),
    ]


def _adafactor_stats_dtype(d: torch.dtype) -> torch.dtype:
    return torch.float32 if d in (torch.float16, torch.bfloat16) else d


INFOS = [
    Info(Adafactor, adafactor_inputs, ("lr", "beta2_decay", "eps", "d", "weight_decay"), ("exp_avg",),
         ("R", "C", "V"), _adafactor_stats_dtype, capturable=True),
    Info(Lion, lion_inputs, ("lr", "betas", "weight_decay"), ("exp_avg",)),
    Info(Sophia, sophia_inputs, ("lr", "betas", "rho", "weight_decay", "eps", "k"), ("exp_avg", "hessian")),
]
IDS = [info.name for info in INFOS]


def inputs_with_global_flags(info: Info) -> list[Input]:
    """The curated inputs, each with ``foreach`` False and True (fresh copies: Tensor lrs are mutable)."""
    out = []
    for inp in info.inputs():
        for foreach in (False, True):
            out.append(Input({**copy.deepcopy(inp.kwargs), "foreach": foreach}, f"{inp.desc}, foreach={foreach}"))
    return out


def fresh_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(kwargs)


def model(dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid()
    ).to(dtype)


def loss_of(net: torch.nn.Module, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
    return net(x).sum()


def closure_for(opt: torch.optim.Optimizer, net: torch.nn.Module, dtype: torch.dtype = torch.float64):
    def closure():
        opt.zero_grad()
        loss = loss_of(net, dtype)
        loss.backward()
        return loss

    return closure


def train(opt: torch.optim.Optimizer, net: torch.nn.Module, steps: int, dtype: torch.dtype = torch.float64) -> None:
    closure = closure_for(opt, net, dtype)
    for _ in range(steps):
        closure()
        opt.step()


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Nested equality, tensors bit for bit (dtype and shape included), NaN equal to NaN."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b), path
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, path
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b) if isinstance(b, dict) else b)
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), (path, a, b)


def snapshot(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> tuple:
    """Everything a refused call must leave as it was."""
    state = {id(p): copy.deepcopy(dict(opt.state[p])) for p in params if p in opt.state}
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return [p.detach().clone() for p in params], state, groups


def assert_unchanged(opt: torch.optim.Optimizer, params: list[torch.Tensor], before: tuple) -> None:
    assert_same(snapshot(opt, params), before)


def sophia_estimator(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """A picklable Hessian estimator (a module-level function, bound with functools.partial)."""
    return [torch.full_like(p, 0.5) for p in params]


def bind_estimator(params: list[torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
    return functools.partial(sophia_estimator, params)
