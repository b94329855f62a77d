"""Checks shared by :class:`optbook.optim.Lion` and :class:`optbook.optim.Sophia`.

The scalar checks are those of the NumPy references (one wording for the
whole book); this module adds what only a torch optimizer meets: parameter
groups, gradient layouts and state loaded from a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optbook.reference import _checks


def check_group(group: dict[str, Any], where: str, scalars: dict[str, str]) -> None:
    """Check the hyperparameters of one param group, re-raising with ``where`` in front.

    ``scalars`` maps an option name to its kind: ``"lr"``, ``"betas"``,
    ``"weight_decay"``, ``"eps"``, ``"rho"``, ``"k"`` or ``"bool"``.
    """
    for name, kind in scalars.items():
        value = group[name]
        try:
            if kind == "lr":
                _checks.check_lr(value, name)
            elif kind == "betas":
                _checks.check_betas(value, name)
            elif kind == "weight_decay":
                _checks.check_nonnegative(value, name, "pass 0 for no weight decay.")
            elif kind == "eps":
                _checks.check_positive(value, name, "it keeps max(rho * h, eps) positive; the default is 1e-15.")
            elif kind == "rho":
                _checks.check_rho(value, name)
            elif kind == "k":
                _checks.check_interval(value, name)
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise TypeError(f"{name} must be True or False, got {value!r}.")
            else:  # pragma: no cover - a typo in this package, not user input
                raise AssertionError(kind)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None


def check_gradient(p: Tensor, where: str, optimizer: str) -> None:
    """Refuse gradients this optimizer is not defined for, before anything is written."""
    grad = p.grad
    if torch.is_complex(p) or torch.is_complex(grad):
        raise TypeError(
            f"{where} is complex ({p.dtype}); {optimizer} is defined for real tensors "
            f"(the sign and the clip of a complex number are not). Optimise torch.view_as_real "
            f"of it as a real parameter instead."
        )
    if not p.is_floating_point():
        raise TypeError(f"{where} has dtype {p.dtype}; {optimizer} needs a floating-point parameter.")
    if grad.is_sparse:
        raise ValueError(
            f"{where} has a sparse gradient; {optimizer} needs dense gradients "
            f"(for an nn.Embedding, construct it with sparse=False)."
        )
    if grad.shape != p.shape:
        raise ValueError(f"{where} has shape {tuple(p.shape)} but its gradient has shape {tuple(grad.shape)}.")
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(
            f"the gradient of {where} (shape {tuple(p.shape)}) contains NaN or inf; nothing was updated. "
            f"Skip this step (torch.amp.GradScaler does) or find the overflow."
        )


def check_state(state: dict[str, Any], p: Tensor, where: str, tensors: tuple[str, ...], has_step: bool) -> None:
    """State loaded from a checkpoint must fit the parameter it is attached to."""
    if not state:
        return
    for name in tensors:
        value = state.get(name)
        if not torch.is_tensor(value) or value.shape != p.shape:
            got = tuple(value.shape) if torch.is_tensor(value) else value
            raise ValueError(
                f"the state of {where} (shape {tuple(p.shape)}) has {name}={got!r}; it needs a tensor of the "
                f"parameter's shape. The loaded state_dict belongs to a different model: load the matching one "
                f"or start from a fresh optimizer."
            )
    if has_step:
        step = state.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"the state of {where} has step={step!r}; it must be an int >= 0.")


def checked_work(
    optimizer: torch.optim.Optimizer,
    closure,
    name: str,
    options: dict[str, str],
    state_tensors: tuple[str, ...],
    has_step: bool,
) -> tuple[Any, list[tuple[Tensor, dict[str, Any]]]]:
    """Validate every group, run the closure, then validate every gradient and state.

    Returns ``(loss, work)`` with ``work`` the ``(param, group)`` pairs to update.
    Everything that can be refused is refused here, before the caller writes
    anything, so a rejected step leaves parameters and state as they were.
    """
    for i, group in enumerate(optimizer.param_groups):
        check_group(group, f"param group {i}", options)
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    work = []
    for i, group in enumerate(optimizer.param_groups):
        for j, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            where = f"parameter {j} of param group {i}"
            check_gradient(p, where, name)
            check_state(optimizer.state.get(p, {}), p, where, state_tensors, has_step=has_step)
            work.append((p, group))
    return loss, work
