r"""Drive a torch optimizer with any schedule of :mod:`optbook.schedules`."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["lambda_lr"]
__helpers__ = ("lambda_lr",)


def lambda_lr(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    r"""A ``torch.optim.lr_scheduler.LambdaLR`` that makes every group's rate :math:`\eta_t` = ``schedule(t)``.

    ``LambdaLR`` multiplies each group's initial ``lr`` by a factor; the factor used here is
    ``schedule(t) / lr`` of that group, so the optimizer's ``lr`` only has to be positive (its
    value is overridden). :math:`t` is ``LambdaLR``'s ``last_epoch``: 0 before the first call of
    ``scheduler.step()``, the convention of :mod:`optbook.schedules`. Call ``scheduler.step()``
    after each ``optimizer.step()``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.")
    if not callable(schedule):
        raise TypeError(f"schedule must be a function of the step t, got {type(schedule).__name__}; "
                        f"pass e.g. functools.partial(optbook.schedules.cosine_lr, lr0=1e-3, total=1000).")
    bases = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    for base in bases:
        if isinstance(base, torch.Tensor) or not base > 0:
            raise ValueError(f"every param group needs a positive float lr to scale, got {base!r}; "
                             f"construct the optimizer with e.g. lr=1.0 (the schedule sets the actual rate).")
    factors = [(lambda t, b=b: schedule(t) / b) for b in bases]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
