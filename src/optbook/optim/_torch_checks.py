"""Checks shared by :class:`optbook.optim.Lion` and :class:`optbook.optim.Sophia`.

The scalar checks are those of the NumPy references (one wording for the
whole book); this module adds what only a torch optimizer meets: parameter
groups, gradient layouts and state loaded from a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optbook.optim._compat import (
    ComplexParameterError,
    SparseGradientError,
    check_state_dict_structure,
    check_tensor_lr,
    run_load_pre_hooks,
    step_count,
    without_load_pre_hooks,
)
from optbook.reference import _checks

# Options of torch's Adam family that these optimizers do not implement; a
# param group may carry them as False (torch writes differentiable=False).
_UNSUPPORTED = {
    "capturable": "the step is not CUDA-graph capturable; use the default",
    "differentiable": "differentiating through the step is not supported",
    "fused": "there is no fused kernel; use foreach=True for the batched path",
}


def check_group(group: dict[str, Any], where: str, scalars: dict[str, str]) -> None:
    """Check the hyperparameters of one param group, re-raising with ``where`` in front.

    ``scalars`` maps an option name to its kind: ``"lr"``, ``"betas"``,
    ``"weight_decay"``, ``"eps"``, ``"rho"``, ``"k"``, ``"bool"`` or
    ``"foreach"`` (True, False or None). A Tensor ``lr`` must have one element
    (``ValueError``, as in ``torch.optim``).
    """
    for name, hint in _UNSUPPORTED.items():
        if group.get(name, False) not in (False, None):
            raise ValueError(f"{where}: {name}={group[name]!r} is not supported ({hint}).")
    for name, kind in scalars.items():
        value = group[name]
        try:
            if kind == "lr" and torch.is_tensor(value):
                check_tensor_lr(value, "lr")
                _checks.check_lr(float(value), name)
            elif kind == "lr":
                _checks.check_lr(value, name)
            elif kind == "betas" and isinstance(value, (tuple, list)) and any(torch.is_tensor(b) for b in value):
                # torch.optim raises ValueError for the Tensor betas it does not support
                raise ValueError(f"{name} as Tensors are not supported: pass two floats, e.g. {name}=(0.9, 0.99).")
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
            elif kind == "foreach":
                if value is not None and not isinstance(value, bool):
                    raise TypeError(f"{name} must be True, False or None, got {value!r}.")
            else:  # pragma: no cover - a typo in this package, not user input
                raise AssertionError(kind)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None


def check_gradient(p: Tensor, where: str, optimizer: str) -> None:
    """Refuse gradients this optimizer is not defined for, before anything is written."""
    grad = p.grad
    if torch.is_complex(p) or torch.is_complex(grad):
        raise ComplexParameterError(
            f"{where} is complex ({p.dtype}): {optimizer} does not support complex parameters; it is defined "
            f"for real tensors "
            f"(the sign and the clip of a complex number are not). Optimise torch.view_as_real "
            f"of it as a real parameter instead."
        )
    if not p.is_floating_point():
        raise TypeError(f"{where} has dtype {p.dtype}; {optimizer} needs a floating-point parameter.")
    if grad.is_sparse:
        raise SparseGradientError(
            f"{where} has a sparse gradient: {optimizer} does not support sparse gradients "
            f"(for an nn.Embedding, construct it with sparse=False)."
        )
    if grad.shape != p.shape:
        raise ValueError(f"{where} has shape {tuple(p.shape)} but its gradient has shape {tuple(grad.shape)}.")
    # A DTensor (FSDP2, tensor parallelism) is checked on this rank's shard: no communication in a step.
    local = grad.to_local() if hasattr(grad, "to_local") else grad
    if not bool(torch.isfinite(local).all()):
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
        try:
            step_count(step, f"the state of {where}")
        except ValueError:
            raise ValueError(
                f"the state of {where} has step={step!r}; it must be a whole number >= 0 (a float32 0-d tensor, "
                "or an int)."
            ) from None


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


def check_saved_state(state: Any, p: Tensor, where: str, tensors: tuple[str, ...], has_step: bool) -> None:
    """One parameter's state in a state dict being loaded (``ValueError``), values included.

    The entries must be exactly ``tensors`` (and ``"step"``): real floating-point
    tensors of the parameter's shape with finite values; ``step`` a whole
    number >= 0 (an int, a whole float or a one-element tensor, as older
    checkpoints store it).
    """
    if not isinstance(state, dict):
        raise ValueError(f"{where} is {type(state).__name__}; it must be a dict of state entries.")
    known = set(tensors) | ({"step"} if has_step else set())
    for name in state:
        if name not in known:
            raise ValueError(
                f"{where} has an entry {name!r}, which is not kept here (expected {sorted(known)}); the state "
                "belongs to another optimizer."
            )
    for name in sorted(known - set(state)):
        raise ValueError(
            f"{where} lacks {name!r} (it has {sorted(state)}); the state dict is corrupted or belongs to another "
            "optimizer. Load the matching one or start from a fresh optimizer."
        )
    for name in tensors:
        value = state[name]
        if not torch.is_tensor(value) or not value.is_floating_point() or tuple(value.shape) != tuple(p.shape):
            got = (tuple(value.shape), value.dtype) if torch.is_tensor(value) else value
            raise ValueError(
                f"{where} (shape {tuple(p.shape)}) has {name}={got!r}; it needs a floating-point tensor of the "
                "parameter's shape. The state dict belongs to a different model: load the matching one or start "
                "from a fresh optimizer."
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where} has NaN or inf in {name}; the checkpoint is corrupted. Load an earlier one.")
    if has_step:
        step_count(state["step"], where)


def load_state_dict_checked(
    optimizer: torch.optim.Optimizer,
    state_dict: Any,
    base_load,
    options: dict[str, str],
    defaults: dict[str, Any],
    tensors: tuple[str, ...],
    has_step: bool,
) -> None:
    """``load_state_dict`` that checks everything before anything is written.

    The pre-hooks run first (as in torch); a group lacking an option gets
    ``defaults[option]``; every state entry is checked by :func:`check_saved_state`;
    then ``base_load`` (torch's loader, its pre-hooks suppressed) loads it, and
    ``step`` is stored as a float32 0-d tensor on the CPU.
    """
    state_dict = run_load_pre_hooks(optimizer, state_dict)
    check_state_dict_structure(optimizer, state_dict)
    groups = [{**defaults, **saved} for saved in state_dict["param_groups"]]
    saved_state = state_dict["state"]
    for gi, (group, saved) in enumerate(zip(optimizer.param_groups, groups)):
        check_group(saved, f"state_dict: param group {gi}", options)
        for pi, (p, key) in enumerate(zip(group["params"], saved["params"])):
            if saved_state.get(key):
                check_saved_state(saved_state[key], p, f"state_dict: parameter {pi} of param group {gi}", tensors,
                                  has_step)
    with without_load_pre_hooks(optimizer):
        base_load({**state_dict, "param_groups": groups})
    if has_step:  # the layout of torch.optim: a float32 0-d tensor on the CPU
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state.get(p)
                if state and "step" in state:
                    state["step"] = torch.tensor(float(step_count(state["step"], "state")), dtype=torch.float32)


def apply_updates(optimizer: torch.optim.Optimizer, work: list[tuple[Tensor, dict[str, Any]]]) -> None:
    """Run the step on the checked ``(parameter, group)`` pairs: ``optimizer._update(p, group)`` one tensor at a
    time, or ``optimizer._update_foreach(params, group)`` once for all of a ``foreach`` group's tensors."""
    batched: dict[int, tuple[dict[str, Any], list[Tensor]]] = {}
    for p, group in work:
        if group["foreach"]:
            batched.setdefault(id(group), (group, []))[1].append(p)
        else:
            optimizer._update(p, group)
    for group, params in batched.values():
        optimizer._update_foreach(params, group)
