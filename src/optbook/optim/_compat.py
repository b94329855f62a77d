"""What optbook's optimizers share to behave like ``torch.optim`` ones in the torch ecosystem.

* :class:`ComplexParameterError` and :class:`SparseGradientError`: the
  exceptions for a complex parameter and a sparse gradient. torch raises
  ``RuntimeError`` ("... does not support complex parameters / sparse
  gradients"); these classes are a ``RuntimeError`` *and* the type optbook
  raised before (``TypeError``, ``ValueError``), so code written against either
  keeps catching them.
* :func:`check_tensor_lr` and :func:`lr_value`: a Tensor ``lr`` is accepted as
  in ``torch.optim`` (one element, real); its value is read with ``float``.
* :func:`signature_defaults` and :func:`fill_missing_options`: a param group
  saved before an option existed gets that option's default, as the
  ``__setstate__`` of every ``torch.optim`` optimizer does.
* :func:`run_load_pre_hooks` and :func:`without_load_pre_hooks`: a subclass that
  validates a state dict in ``load_state_dict`` must see it *after* the
  ``register_load_state_dict_pre_hook`` hooks have run, and the base loader
  must not run them a second time.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import Tensor


class ComplexParameterError(RuntimeError, TypeError):
    """A complex parameter given to an optimizer defined for real tensors only.

    A ``RuntimeError``, as ``torch.optim.Adafactor`` raises for the same input,
    and a ``TypeError``, as optbook raised before.
    """


class SparseGradientError(RuntimeError, ValueError):
    """A sparse gradient given to an optimizer that needs dense ones.

    A ``RuntimeError``, as ``torch.optim.Adam`` and ``torch.optim.Adafactor``
    raise for the same input, and a ``ValueError``, as optbook raised before.
    """


def check_tensor_lr(lr: Tensor, where: str) -> None:
    """A Tensor ``lr`` must hold one real number (``ValueError``/``TypeError`` as in ``torch.optim``)."""
    if lr.numel() != 1:
        raise ValueError(
            f"{where}: Tensor lr must be 1-element, got a tensor of shape {tuple(lr.shape)}; pass a float or a "
            "one-element tensor such as torch.tensor(1e-3) (one learning rate per param group)."
        )
    if torch.is_complex(lr) or lr.dtype == torch.bool:
        raise TypeError(f"{where}: a Tensor lr must be real, got dtype {lr.dtype}; use torch.tensor(1e-3).")


def lr_value(lr: Any) -> Any:
    """The learning rate as a Python float if it is a Tensor (one host read), else unchanged."""
    return float(lr) if torch.is_tensor(lr) else lr


def signature_defaults(cls: type) -> dict[str, Any]:
    """The keyword defaults of ``cls.__init__``: what an option meant before it existed."""
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def fill_missing_options(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    """Give every group each option it lacks, with its default (in place)."""
    for group in groups:
        for name, value in defaults.items():
            group.setdefault(name, value)


def run_load_pre_hooks(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Apply the load-state-dict pre-hooks exactly as ``Optimizer.load_state_dict`` does."""
    state_dict = state_dict.copy()
    for hook in optimizer._optimizer_load_state_dict_pre_hooks.values():
        result = hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


@contextlib.contextmanager
def without_load_pre_hooks(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Run the base ``load_state_dict`` without its pre-hooks (they have already run)."""
    hooks = optimizer._optimizer_load_state_dict_pre_hooks
    optimizer._optimizer_load_state_dict_pre_hooks = OrderedDict()
    try:
        yield
    finally:
        optimizer._optimizer_load_state_dict_pre_hooks = hooks


def check_state_dict_structure(optimizer: torch.optim.Optimizer, state_dict: Any) -> None:
    """The containers of a state dict, and its grouping against ``optimizer``'s (``ValueError``)."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns.")
    if not isinstance(state_dict["state"], dict):
        raise ValueError(
            f"state_dict['state'] must be a dict {{param index: per-parameter state}}, got "
            f"{type(state_dict['state']).__name__}; pass the dict that state_dict() returned."
        )
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), (list, tuple)) for g in groups
    ):
        raise ValueError(
            "state_dict['param_groups'] must be a list of dicts, each with a 'params' list; pass the dict that "
            "state_dict() returned."
        )
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(
            f"state_dict has {len(groups)} param groups but this optimizer has {len(optimizer.param_groups)}; "
            "load a state dict saved from the same model and grouping."
        )
    for gi, (group, saved) in enumerate(zip(optimizer.param_groups, groups)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(
                f"state_dict: param group {gi} has {len(saved['params'])} parameters but this optimizer's has "
                f"{len(group['params'])}; load a state dict saved from the same model."
            )


def step_count(value: Any, where: str) -> float:
    """A saved step counter (int, integral float, or one-element tensor) as a number ``>= 0``.

    Reads a tensor's value (a host read, at load time only). Raises ``ValueError``.
    """
    number: Any = value
    if torch.is_tensor(value):
        if value.numel() != 1 or torch.is_complex(value) or value.dtype == torch.bool:
            raise ValueError(
                f"{where} has step={value!r}; it must be a number >= 0 or a one-element real tensor holding one."
            )
        number = value.item()
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"{where} has step={value!r}; it must be a whole number >= 0 (how many steps were taken).")
    if not (math.isfinite(number) and number >= 0 and float(number).is_integer()):
        raise ValueError(
            f"{where} has step={number!r}; it must be a whole number >= 0 (how many steps were taken). "
            "The state dict is corrupted: load another checkpoint or start from a fresh optimizer."
        )
    return number
