r"""Sophia (Liu et al. 2023) as a ``torch.optim.Optimizer``, with both Hessian-diagonal estimators.

:mod:`optbook.reference.sophia` is the readable NumPy version, one function
per formula; this module computes the same iteration on torch tensors and
provides the two estimators of :math:`\operatorname{diag}\nabla^2 L` on
torch models:

* :func:`hutchinson` -- :math:`u \odot (\nabla^2 L\,u)` by two backward
  passes (a Hessian-vector product), for any loss;
* :func:`gauss_newton_bartlett` -- :math:`B\,\hat g \odot \hat g` with
  :math:`\hat g` the gradient of the cross-entropy on labels sampled from
  the model's own softmax, for classifiers and language models.

Both return one tensor per parameter, in the order of the ``params`` they
were given. Pass them to :meth:`Sophia.update_hessian`, or let the optimizer
call an estimator itself every :math:`k` steps (``hessian_estimator=``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer

from optbook.notation import symbol
from optbook.optim._compat import fill_missing_options, lr_value, signature_defaults
from optbook.optim._torch_checks import apply_updates, check_group, check_state, checked_work, load_state_dict_checked
from optbook.reference import _checks

__all__ = ["Sophia", "hutchinson", "gauss_newton_bartlett"]

_OPTIONS = {
    "lr": "lr",
    "betas": "betas",
    "rho": "rho",
    "weight_decay": "weight_decay",
    "eps": "eps",
    "k": "k",
    "maximize": "bool",
    "foreach": "foreach",
}
_DISTRIBUTIONS = ("rademacher", "gaussian")

HessianEstimates = Sequence[Tensor | None] | Mapping[Tensor, Tensor | None]


class Sophia(Optimizer):
    r"""Sophia: a clipped, diagonal-Hessian pre-conditioned momentum step.

    For each parameter :math:`\theta` with gradient :math:`g_t`, at its step
    :math:`t = 1, 2, \dots`:

    .. math::

        \begin{aligned}
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        h_t &= \beta_2 h_{t-k} + (1-\beta_2)\, \hat h_t
              \quad\text{if } (t-1) \bmod k = 0, \text{ else } h_t = h_{t-1} \\
        \theta &\leftarrow \theta - \eta\lambda\theta \\
        \theta &\leftarrow \theta - \eta\,\mathrm{clip}\big(m_t / \max(\zeta\, h_t, \epsilon),\ 1\big)
        \end{aligned}

    with :math:`m_0 = h_{1-k} = 0`, :math:`\mathrm{clip}(z, 1) = \max(\min(z, 1), -1)`,
    :math:`\eta` = ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``,
    :math:`\zeta` = ``rho`` (the paper's :math:`\gamma`) and :math:`\lambda` =
    ``weight_decay``. :math:`\hat h_t` estimates :math:`\operatorname{diag}\nabla^2 L(\theta_t)`.
    No coordinate moves by more than :math:`\eta` (plus the decay). This is
    Algorithm 3 of the paper; it agrees with
    :func:`optbook.reference.sophia.sophia_step` to rounding.

    **Where** :math:`\hat h_t` **comes from.** Two ways, which can be mixed:

    1. *Automatic*: pass ``hessian_estimator``, a function of no arguments
       returning one estimate per parameter (a list in the order of
       ``param_groups``, or a dict ``{param: estimate}``). :meth:`step` calls
       it, after the closure and before any update, whenever some parameter
       is at a step with :math:`(t-1) \bmod k = 0`, and refreshes those
       parameters only. For example, with a classifier ``model`` and a batch ``xb``::

           params = list(model.parameters())
           opt = Sophia(params, lr=1e-3, rho=0.04, k=10,
                        hessian_estimator=lambda: gauss_newton_bartlett(model(xb), params))

       (re-bind ``xb`` each step, or read the batch from an outer variable).
    2. *Manual*: call :meth:`update_hessian` with the estimates yourself, for
       example ``if opt.hessian_due(): opt.update_hessian(hutchinson(loss, params))``
       before ``opt.step()``. It always refreshes every parameter it is given,
       whatever the step.

    Without either, :math:`h = 0`, the denominator is :math:`\epsilon` and
    every step is a sign step :math:`\pm\eta`.

    Args:
        params: parameters, or dicts defining parameter groups.
        lr: :math:`\eta \ge 0`; schedulers may change it between steps.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        rho: :math:`\zeta \in (0, 1]`, the scale on :math:`h` (paper: :math:`\gamma`).
        weight_decay: :math:`\lambda \ge 0`, decoupled and multiplied by ``lr``.
        eps: :math:`\epsilon > 0`, the floor of :math:`\zeta h`.
        k: re-estimate the Hessian every ``k`` steps of a parameter (an int >= 1).
        hessian_estimator: optional function of no arguments, see above.
        maximize: ascend instead of descend: uses :math:`-g_t`
            (``p.grad`` is not modified). Hessian estimates are used as
            given, so supply the curvature of the loss that is minimised.
        foreach: ``True`` updates a param group with ``torch._foreach_*``
            operations, the same operations per tensor (so on a CPU the same
            bits as the for-loop); ``None`` (default) and ``False`` use the for-loop.

    A Tensor ``lr`` (one element) is accepted as in ``torch.optim`` and read
    with ``float`` at each step. ``copy.deepcopy`` and pickling keep
    ``hessian_estimator`` (pickling needs it to be picklable: a module-level
    function or a ``functools.partial`` of one, not a lambda).

    Defaults are those of the official ``SophiaG``. State per parameter:
    ``"step"`` (its own :math:`t`, a float32 0-d tensor on the CPU, as in
    ``torch.optim``), ``"exp_avg"`` (:math:`m_t`) and
    ``"hessian"`` (:math:`h_t`), both in the parameter's dtype. A parameter
    whose ``grad`` is ``None`` is skipped and its :math:`t` does not advance.

    Differences from the official ``sophia_opt.SophiaG`` (each one is tested
    in ``tests/test_optim_lion_sophia.py``):

    * ``SophiaG.update_hessian()`` averages ``p.grad * p.grad`` -- it expects
      you to have back-propagated the loss on sampled labels -- and ``step``
      then divides by ``rho * bs * h``. Its ``h`` is therefore
      :math:`\hat g\odot\hat g` without the factor :math:`B`, and ``bs`` must
      be the number of rows :math:`B` the sampled loss averaged over for its
      ``rho`` to be this ``rho``; with its default ``bs=5120`` it is
      ``rho * 5120 / B``. Here the estimate carries its :math:`B` (as in the
      paper) and there is no ``bs``.
    * ``SophiaG`` divides by :math:`\zeta b h + 10^{-15}` instead of
      :math:`\max(\zeta h, \epsilon)` and clamps the ratio only from above.
      Both agree when :math:`\zeta h \gg 10^{-15}`, but for a *negative*
      :math:`h` (possible with Hutchinson's estimator) ``SophiaG`` moves the
      parameter *along* the momentum, uphill, while the paper's rule takes a
      sign step downhill.
    * ``pytorch_optimizer.SophiaH`` uses the first version's threshold form
      :math:`\eta\,\mathrm{clip}(m/\max(h,\epsilon), p)`; it equals this rule
      with ``rho`` = :math:`p`, ``lr`` = :math:`\eta p` and ``eps`` = :math:`\epsilon p`.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 1e-1,
        *,
        eps: float = 1e-15,
        k: int = 10,
        hessian_estimator: Callable[[], HessianEstimates] | None = None,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "rho": rho,
            "weight_decay": weight_decay,
            "eps": eps,
            "k": k,
            "maximize": maximize,
            "foreach": foreach,
        }
        check_group(defaults, "Sophia()", _OPTIONS)
        if hessian_estimator is not None and not callable(hessian_estimator):
            raise TypeError(
                f"hessian_estimator must be a function of no arguments returning one estimate per parameter, "
                f"got {type(hessian_estimator).__name__}."
            )
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)
        # Not a param-group option: a function does not belong in state_dict().
        self.hessian_estimator = hessian_estimator

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer pickles defaults, state and param_groups only.
        state = super().__getstate__()
        state["hessian_estimator"] = self.hessian_estimator
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("hessian_estimator", None)
        defaults = {k: v for k, v in signature_defaults(Sophia).items() if k != "hessian_estimator"}
        fill_missing_options(self.param_groups, defaults)
        fill_missing_options([self.defaults], defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; everything is checked first, so a bad one raises and changes nothing.

        The load-state-dict pre-hooks run first, as in torch. A corrupted or
        mismatched state dict raises ``ValueError`` (``TypeError`` for an option
        of the wrong type), naming ``state_dict`` and the entry.

        A group saved without an option (an older checkpoint) gets its default;
        ``step`` may be saved as an int, a whole float or a one-element tensor.
        """
        defaults = {k: v for k, v in signature_defaults(Sophia).items() if k != "hessian_estimator"}
        load_state_dict_checked(
            self, state_dict, super().load_state_dict, _OPTIONS, defaults, ("exp_avg", "hessian"), True
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking the options it overrides."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict with a 'params' entry, got {type(param_group).__name__}.")
        check_group({**self.defaults, **param_group}, f"param group {len(self.param_groups)}", _OPTIONS)
        super().add_param_group(param_group)

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def hessian_due(self) -> bool:
        r"""Whether the next :meth:`step` is a Hessian step, :math:`(t-1) \bmod k = 0`, for some parameter.

        Parameters that have neither state nor a gradient are not counted; before
        the first step the answer is ``True``.
        """
        due = [
            _step_of(self.state.get(p, {})) % group["k"] == 0
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None or self.state.get(p)
        ]
        return any(due) if due else True

    @torch.no_grad()
    def update_hessian(self, estimates: HessianEstimates | None = None) -> None:
        r"""Refresh :math:`h \leftarrow \beta_2 h + (1-\beta_2)\hat h` for every parameter given an estimate.

        ``estimates`` is a list with one tensor (or ``None`` to skip) per
        parameter, in the order of ``param_groups``, or a dict
        ``{param: estimate}``; without it, ``hessian_estimator()`` is called.
        Each estimate must have its parameter's shape. All are checked
        before any state is written.
        """
        if estimates is None:
            if self.hessian_estimator is None:
                raise ValueError(
                    "update_hessian() needs estimates: pass a list with one tensor per parameter "
                    "(e.g. hutchinson(loss, params)) or construct Sophia(..., hessian_estimator=...)."
                )
            with torch.enable_grad():
                estimates = self.hessian_estimator()
        self._refresh(self._match(estimates))

    def _refresh(self, checked: list[tuple[Tensor, dict[str, Any], Tensor]]) -> None:
        for p, group, h_hat in checked:
            state = self.state[p]
            self._init_state(p, state)
            beta2 = group["betas"][1]
            state["hessian"].mul_(beta2).add_(h_hat.to(p.dtype), alpha=1.0 - beta2)

    def _match(self, estimates: HessianEstimates) -> list[tuple[Tensor, dict[str, Any], Tensor]]:
        """Pair estimates with parameters (and their groups) and check them, writing nothing."""
        params = self._params()
        group_of = {id(p): group for group in self.param_groups for p in group["params"]}
        if isinstance(estimates, Mapping):
            pairs = list(estimates.items())
            if any(id(p) not in group_of for p, _ in pairs):
                raise ValueError("an estimate was given for a tensor that is not a parameter of this optimizer.")
        else:
            estimates = list(estimates)
            if len(estimates) != len(params):
                raise ValueError(
                    f"got {len(estimates)} Hessian estimates for {len(params)} parameters; pass one per "
                    f"parameter in the order of param_groups (None to skip one), or a dict {{param: estimate}}."
                )
            pairs = list(zip(params, estimates))
        checked = []
        for i, (p, h_hat) in enumerate(pairs):
            if h_hat is None:
                continue
            if not torch.is_tensor(h_hat):
                raise TypeError(f"Hessian estimate {i} must be a tensor or None, got {type(h_hat).__name__}.")
            if h_hat.shape != p.shape:
                raise ValueError(
                    f"Hessian estimate {i} has shape {tuple(h_hat.shape)} but its parameter has shape "
                    f"{tuple(p.shape)}; they must match (the diagonal has one entry per parameter)."
                )
            if torch.is_complex(h_hat) or not h_hat.is_floating_point():
                raise TypeError(f"Hessian estimate {i} has dtype {h_hat.dtype}; it must be real floating point.")
            if not bool(torch.isfinite(h_hat.to_local() if hasattr(h_hat, "to_local") else h_hat).all()):
                raise ValueError(f"Hessian estimate {i} contains NaN or inf; nothing was updated.")
            check_state(self.state.get(p, {}), p, f"the parameter of estimate {i}", ("exp_avg", "hessian"), True)
            checked.append((p, group_of[id(p)], h_hat.detach()))
        return checked

    @staticmethod
    def _init_state(p: Tensor, state: dict[str, Any]) -> None:
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one Sophia step on every parameter that has a gradient.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss, work = checked_work(self, closure, "Sophia", _OPTIONS, ("exp_avg", "hessian"), has_step=True)
        due = [p for p, group in work if _step_of(self.state.get(p, {})) % group["k"] == 0]
        refresh = []
        if due and self.hessian_estimator is not None:
            with torch.enable_grad():
                estimates = self.hessian_estimator()
            due_ids = {id(p) for p in due}
            refresh = [item for item in self._match(estimates) if id(item[0]) in due_ids]
        # Everything is checked; from here on the step writes.
        self._refresh(refresh)
        apply_updates(self, work)
        return loss

    def _update_foreach(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """:meth:`_update` for a list of tensors, with the same operations through ``torch._foreach_*``."""
        lr, wd = lr_value(group["lr"]), group["weight_decay"]
        beta1 = group["betas"][0]
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        for p in params:
            self._init_state(p, self.state[p])
        ms = [self.state[p]["exp_avg"] for p in params]
        hs = [self.state[p]["hessian"] for p in params]
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, grads, alpha=1.0 - beta1)
        den = torch._foreach_mul(hs, group["rho"])
        torch._foreach_clamp_min_(den, group["eps"])
        ratio = torch._foreach_div(ms, den)
        if wd != 0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_clamp_min_(ratio, -1.0)
        torch._foreach_clamp_max_(ratio, 1.0)
        torch._foreach_add_(params, ratio, alpha=-lr)
        for p in params:
            self.state[p]["step"] += 1

    def _update(self, p: Tensor, group: dict[str, Any]) -> None:
        lr, wd = lr_value(group["lr"]), group["weight_decay"]
        beta1 = group["betas"][0]
        g = -p.grad if group["maximize"] else p.grad
        state = self.state[p]
        self._init_state(p, state)
        m, h = state["exp_avg"], state["hessian"]
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        ratio = m / (h * group["rho"]).clamp_(min=group["eps"])
        if wd != 0:
            p.mul_(1.0 - lr * wd)
        p.add_(ratio.clamp_(-1.0, 1.0), alpha=-lr)
        state["step"] += 1


def _step_of(state: dict[str, Any]) -> int:
    """A parameter's step count as an int (0 without state); ``step`` is a CPU tensor or, set by hand, an int."""
    step = state.get("step", 0)
    return int(step.item()) if torch.is_tensor(step) else int(step)


def _sharded(params: Sequence[Tensor]) -> bool:
    """True if any parameter is a DTensor (FSDP2, tensor parallelism)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return False
    return any(isinstance(p, DTensor) for p in params)


def _as_params(params: Iterable[Tensor]) -> list[Tensor]:
    params = list(params)
    if not params:
        raise ValueError("params is empty; pass the parameters whose Hessian diagonal you want.")
    for i, p in enumerate(params):
        if not torch.is_tensor(p) or not p.requires_grad:
            raise ValueError(f"params[{i}] must be a tensor with requires_grad=True.")
    return params


def _probe(p: Tensor, distribution: str, generator: torch.Generator | None) -> Tensor:
    if distribution == "rademacher":
        u = torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype, device=p.device)
        return u.mul_(2.0).sub_(1.0)
    return torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device)


@symbol(r"\hat h = u \odot (\nabla^2 L\, u)", "Hutchinson estimate of the Hessian diagonal by autograd")
def hutchinson(
    loss: Tensor | Callable[[], Tensor],
    params: Iterable[Tensor],
    *,
    distribution: str = "rademacher",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    r"""Hutchinson's estimate :math:`\frac1S\sum_s u_s \odot (\nabla^2 L\,u_s)` of :math:`\operatorname{diag}\nabla^2 L`.

    ``loss`` is a scalar tensor still attached to its graph, or a function
    of no arguments that computes one. The gradient is taken with
    ``create_graph=True`` and differentiated again along each probe
    :math:`u` (Rademacher :math:`\pm1` by default, as in optax; the paper
    draws :math:`u \sim \mathcal N(0, I)`), which costs about two backward
    passes per sample. Returns one tensor per parameter; ``p.grad`` is not
    touched. Unbiased: the mean over probes is the exact diagonal.
    """
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}.")
    samples = _checks.check_interval(samples, "samples")
    params = _as_params(params)
    if _sharded(params):
        # FSDP2 gathers the shards outside autograd and reduces gradients in hooks, so autograd.grad
        # back to the sharded leaves finds no path: every estimate would silently be zero.
        raise ValueError(
            "params are DTensors (FSDP2 or tensor parallelism): hutchinson differentiates twice through "
            "the parameters, which sharded parameters do not support. Use gauss_newton_bartlett(logits, "
            "params, batch_rows=...) instead, which needs one ordinary backward pass."
        )
    with torch.enable_grad():
        loss = loss() if callable(loss) else loss
        if not torch.is_tensor(loss) or loss.numel() != 1 or not loss.requires_grad:
            raise ValueError(
                "loss must be a scalar tensor attached to the parameters' graph (or a function returning one)."
            )
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        # A parameter the loss ignores, or enters linearly, has a zero Hessian row.
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        totals = [torch.zeros_like(p) for p in params]
        for s in range(samples):
            probes = [_probe(p, distribution, generator) for p in params]
            if not live:
                continue
            hvps = torch.autograd.grad(
                [grads[i] for i in live],
                [params[i] for i in live],
                grad_outputs=[probes[i] for i in live],
                retain_graph=s < samples - 1,
                allow_unused=True,
            )
            for i, hu in zip(live, hvps):
                if hu is not None:
                    totals[i].add_(probes[i] * hu.detach())
    return [t.div_(samples) for t in totals]


@symbol(r"\hat h = B\, \hat g \odot \hat g", "Gauss-Newton-Bartlett estimate of the Hessian diagonal by autograd")
def gauss_newton_bartlett(
    logits: Tensor | Callable[[], Tensor],
    params: Iterable[Tensor],
    *,
    generator: torch.Generator | None = None,
    labels: Tensor | None = None,
    batch_rows: int | None = None,
) -> list[Tensor]:
    r"""Gauss-Newton-Bartlett estimate :math:`B\,\hat g \odot \hat g` for a softmax cross-entropy model.

    ``logits`` are the model's outputs on a batch, shape ``(..., C)`` and
    still attached to the graph (or a function of no arguments returning
    them). Labels :math:`\hat y_b \sim \mathrm{softmax}(\text{logits}_b)` are
    drawn from the model itself, :math:`\hat g` is the gradient of the *mean*
    cross-entropy on them and :math:`B` is the number of rows averaged (for
    ``(batch, tokens, C)`` logits, batch times tokens). One backward pass.
    ``labels`` replaces the draw, to compute exact expectations by
    enumeration. Returns one tensor per parameter; ``p.grad`` is not touched.

    Its expectation over :math:`\hat y` is the diagonal of the Gauss-Newton
    matrix of the mean loss, which equals the Hessian when the logits are
    linear in the parameters.

    Sharded parameters (DTensors under FSDP2 or tensor parallelism): the
    gradient is taken by an ordinary ``backward()`` on the sampled loss, so
    that FSDP's hooks reduce it into the shards (each ``p.grad`` is saved
    before and put back after); the estimate is a DTensor placed like its
    parameter. FSDP averages the gradient over the data-parallel ranks, so
    :math:`B` is then the number of rows over all of them: pass
    ``batch_rows`` (the rows of ``logits`` times the number of data-parallel
    ranks when each rank has its own batch). Every rank must draw the same
    labels for the rows it shares with others, so seed ``generator`` alike on
    ranks that see the same batch (tensor-parallel ranks).
    """
    params = _as_params(params)
    sharded = _sharded(params)
    if batch_rows is not None:
        batch_rows = _checks.check_interval(batch_rows, "batch_rows")
    elif sharded:
        raise ValueError(
            "params are DTensors (FSDP2 or tensor parallelism), where the gradient is averaged over the "
            "data-parallel ranks: pass batch_rows=, the number of rows over all of them (the rows of logits "
            "times the number of data-parallel ranks when each rank has its own batch)."
        )
    with torch.enable_grad():
        logits = logits() if callable(logits) else logits
        if not torch.is_tensor(logits) or logits.dim() < 2 or not logits.requires_grad:
            raise ValueError("logits must be a tensor of shape (..., C) attached to the parameters' graph.")
        flat = logits.reshape(-1, logits.shape[-1])
        rows = flat.shape[0]
        if labels is None:
            with torch.no_grad():
                probs = torch.softmax(flat.detach(), dim=-1)
                y = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            y = labels.reshape(-1)
            if y.numel() != rows or y.dtype != torch.long:
                raise ValueError(
                    f"labels must be a long tensor with one class index per row of logits ({rows}), "
                    f"got {y.numel()} of dtype {y.dtype}."
                )
        sampled_loss = F.cross_entropy(flat, y)
        if sharded:
            grads = _grads_by_backward(sampled_loss, params)
        else:
            grads = torch.autograd.grad(sampled_loss, params, allow_unused=True)
    b = rows if batch_rows is None else batch_rows
    return [torch.zeros_like(p) if g is None else b * g * g for p, g in zip(params, grads)]


def _grads_by_backward(loss: Tensor, params: list[Tensor]) -> list[Tensor | None]:
    """The gradient of ``loss`` as ``backward()`` leaves it in ``p.grad`` (through FSDP's reduce-scatter),
    with every parameter's own ``.grad`` put back afterwards, also if the backward pass fails."""
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        loss.backward()
        return [None if p.grad is None else p.grad.detach() for p in params]
    finally:
        for p, g in zip(params, saved):
            p.grad = g
