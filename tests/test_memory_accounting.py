"""Tests of optbook.analysis.memory against the state torch optimizers really allocate."""

import inspect

import numpy as np
import pytest
import torch

from optbook.analysis import memory as ma


def test_every_public_function_has_a_symbol_or_is_a_helper():
    for name in ma.__all__:
        obj = getattr(ma, name)
        if inspect.isfunction(obj) and name not in ma.__helpers__:
            assert hasattr(obj, "__book_symbol__"), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16, torch.int8])
def test_bytes_per_element_matches_torch(dtype):
    assert ma.bytes_per_element(dtype) == torch.empty(0, dtype=dtype).element_size()


def test_bytes_per_element_names_and_numpy():
    assert ma.bytes_per_element("bfloat16") == 2
    assert ma.bytes_per_element(np.float32) == 4
    assert ma.bytes_per_element(np.dtype("float64")) == 8
    with pytest.raises(ValueError, match="unknown dtype"):
        ma.bytes_per_element("float7")


def test_numel_and_bad_shapes():
    assert ma.numel((3, 4, 5)) == 60
    assert ma.numel(()) == 1
    assert ma.numel((0, 7)) == 0
    with pytest.raises(ValueError, match="non-negative"):
        ma.numel((3, -1))
    with pytest.raises(TypeError, match="tuple"):
        ma.numel(5)


def _torch_state_numbers(opt):
    return sum(v.numel() for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)


@pytest.mark.parametrize(
    "make, copies",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), 0),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 1),
        (lambda p: torch.optim.RMSprop(p), 1),
        (lambda p: torch.optim.Adam(p), 2),
        (lambda p: torch.optim.AdamW(p), 2),
    ],
)
def test_full_state_numbers_matches_what_torch_allocates(make, copies):
    shapes = [(7, 5), (5,), (2, 3, 4)]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    opt = make(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert _torch_state_numbers(opt) == ma.total_numbers(shapes, lambda s: ma.full_state_numbers(s, copies))


def test_full_state_numbers_rejects_bad_copies():
    with pytest.raises(ValueError, match="copies"):
        ma.full_state_numbers((3,), -1)
    with pytest.raises(ValueError, match="copies"):
        ma.full_state_numbers((3,), 1.5)


def test_total_numbers_over_dict_and_list():
    shapes = {"w": (4, 3), "b": (3,)}
    assert ma.total_numbers(shapes) == 15
    assert ma.total_numbers(list(shapes.values()), lambda s: ma.full_state_numbers(s, 2)) == 30


def test_state_fraction():
    assert ma.state_fraction(30, 15) == 2.0
    assert ma.state_fraction(0, 15) == 0.0
    with pytest.raises(ValueError, match="parameter_numbers"):
        ma.state_fraction(1, 0)
    with pytest.raises(ValueError, match="state_numbers"):
        ma.state_fraction(-1, 3)


def test_static_training_bytes_matches_torch_adamw_allocation():
    # weights + grads + AdamW's m and v, in float32, counted from the tensors torch allocates
    params = [torch.zeros(6, 5, requires_grad=True), torch.zeros(5, requires_grad=True)]
    opt = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    allocated = sum(p.numel() * p.element_size() + p.grad.numel() * p.grad.element_size() for p in params)
    allocated += sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if v.dim() > 0)
    assert ma.static_training_bytes(35, ma.full_state_numbers((35,), 2), 4) == allocated
    with pytest.raises(ValueError, match="bytes_per_number"):
        ma.static_training_bytes(1, 1, 0)
    with pytest.raises(ValueError, match="state_numbers"):
        ma.static_training_bytes(1, -1)
