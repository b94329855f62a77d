r"""Lion (Chen et al. 2023) as a ``torch.optim.Optimizer``, in the book's symbols.

:mod:`optbook.reference.lion` is the readable NumPy version, one function
per formula; this module computes the same iteration on torch tensors.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from optbook.optim._compat import fill_missing_options, lr_value, signature_defaults
from optbook.optim._torch_checks import apply_updates, check_group, checked_work, load_state_dict_checked

__all__ = ["Lion"]

_OPTIONS = {"lr": "lr", "betas": "betas", "weight_decay": "weight_decay", "maximize": "bool", "foreach": "foreach"}


class Lion(Optimizer):
    r"""Lion: a sign step on an interpolation of momentum and gradient.

    For each parameter :math:`\theta` with gradient :math:`g_t`:

    .. math::

        \begin{aligned}
        c_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        \theta_t &= \theta_{t-1} - \eta\,(\operatorname{sign}(c_t) + \lambda\theta_{t-1}) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2)\, g_t
        \end{aligned}

    with :math:`m_0 = 0`, :math:`\eta` = ``lr``, :math:`(\beta_1, \beta_2)` =
    ``betas`` and :math:`\lambda` = ``weight_decay`` (decoupled, multiplied by
    :math:`\eta`, as in the paper's Algorithm 2). Every coordinate moves by
    :math:`\pm\eta` (or 0 where :math:`c_t = 0`) plus the decay, so use a
    learning rate 3 to 10 times smaller than AdamW's and a weight decay that
    much larger. It agrees with :func:`optbook.reference.lion.lion_step` and
    with ``lion_pytorch.Lion`` to rounding.

    Args:
        params: parameters, or dicts defining parameter groups.
        lr: :math:`\eta \ge 0`; schedulers may change it between steps.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        weight_decay: :math:`\lambda \ge 0`.
        maximize: ascend instead of descend (uses :math:`-g_t`; ``p.grad`` is not modified).
        foreach: ``True`` updates a param group with ``torch._foreach_*``
            operations, the same operations per tensor (so on a CPU the same
            bits as the for-loop); ``None`` (default) and ``False`` use the for-loop.
            A Tensor ``lr`` (one element) is accepted as in ``torch.optim`` and
            read with ``float`` at each step.

    State per parameter: ``"exp_avg"``, the momentum :math:`m_t`, in the
    parameter's dtype (Lion's only state: half of Adam's). A parameter
    whose ``grad`` is ``None`` is skipped.

    Differences from ``lion_pytorch.Lion``: the same iterates with its
    default ``decoupled_weight_decay=False``; its ``decoupled_weight_decay=True``
    divides :math:`\lambda` by the *initial* learning rate. It accepts
    :math:`\beta = 1`, checks hyperparameters with ``assert``, has no
    ``maximize`` and does not refuse sparse or complex gradients.

    Bad hyperparameters raise ``ValueError`` or ``TypeError`` naming the
    option, in the constructor, in :meth:`add_param_group` and at the start
    of :meth:`step`. A step refuses sparse, complex and non-finite gradients
    and state that does not fit its parameter; every check runs before
    anything is written, so a refused step changes nothing.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "maximize": maximize, "foreach": foreach}
        check_group(defaults, "Lion()", _OPTIONS)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Groups pickled or saved before an option existed get its default, as in torch.optim.
        fill_missing_options(self.param_groups, signature_defaults(Lion))
        fill_missing_options([self.defaults], signature_defaults(Lion))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; everything is checked first, so a bad one raises and changes nothing.

        The load-state-dict pre-hooks run first, as in torch. A corrupted or
        mismatched state dict raises ``ValueError`` (``TypeError`` for an option
        of the wrong type), naming ``state_dict`` and the entry.

        A group saved without an option (an older checkpoint) gets its default.
        """
        load_state_dict_checked(
            self, state_dict, super().load_state_dict, _OPTIONS, signature_defaults(Lion), ("exp_avg",), False
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking the options it overrides."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict with a 'params' entry, got {type(param_group).__name__}.")
        check_group({**self.defaults, **param_group}, f"param group {len(self.param_groups)}", _OPTIONS)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one Lion step on every parameter that has a gradient.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss, work = checked_work(self, closure, "Lion", _OPTIONS, ("exp_avg",), has_step=False)
        apply_updates(self, work)
        return loss

    def _update_foreach(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """:meth:`_update` for a list of tensors, with the same operations through ``torch._foreach_*``."""
        lr, wd = lr_value(group["lr"]), group["weight_decay"]
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        for p in params:
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        ms = [self.state[p]["exp_avg"] for p in params]
        c = torch._foreach_mul(ms, beta1)
        torch._foreach_add_(c, grads, alpha=1.0 - beta1)
        if wd != 0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_sign_(c)
        torch._foreach_add_(params, c, alpha=-lr)
        torch._foreach_mul_(ms, beta2)
        torch._foreach_add_(ms, grads, alpha=1.0 - beta2)

    def _update(self, p: Tensor, group: dict[str, Any]) -> None:
        lr, wd = lr_value(group["lr"]), group["weight_decay"]
        beta1, beta2 = group["betas"]
        g = -p.grad if group["maximize"] else p.grad
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m = state["exp_avg"]
        c = m.mul(beta1).add_(g, alpha=1.0 - beta1)
        if wd != 0:
            p.mul_(1.0 - lr * wd)
        p.add_(c.sign_(), alpha=-lr)
        m.mul_(beta2).add_(g, alpha=1.0 - beta2)
