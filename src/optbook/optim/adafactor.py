r"""Adafactor (Shazeer & Stern, 2018) as a ``torch.optim.Optimizer``, in the book's symbols.

:mod:`optbook.reference.adafactor` is the readable NumPy version, one
function per formula; this module is the one you train with. It computes the
same iteration on torch tensors without ever forming the :math:`n \times m`
estimate :math:`\hat V_t` of a matrix, keeps only :math:`R_t` and :math:`C_t`
between steps, and never synchronises with the host inside :meth:`Adafactor.step`.
The algorithm, the options and every deliberate difference from
``torch.optim.Adafactor`` are in the docstring of :class:`Adafactor`.

State layout
------------
Per parameter :math:`X` (shape ``s``, dtype ``p.dtype``), with the *statistics
dtype* ``float32`` for bfloat16/float16 parameters and ``p.dtype`` otherwise:

``"step"``
    :math:`t`, the number of steps this parameter has taken: a float32 0-d
    tensor on the parameter's device (the layout of ``torch.optim``'s
    capturable optimizers, and what the fused kernels read).
``"R"``, ``"C"`` (tensors of rank :math:`\ge 2`)
    the paper's row and column *sums*. With the factored dims :math:`(i, j)`,
    :math:`i < j` (the last two by default), ``R`` has shape ``s`` without dim
    :math:`j` and ``C`` shape ``s`` without dim :math:`i`; for the default,
    ``s[:-1]`` and ``s[:-2] + s[-1:]``. Statistics dtype.
``"V"`` (vectors and 0-d tensors)
    the full :math:`\hat V_t`, shape ``s``, statistics dtype.
``"exp_avg"`` (only with ``beta1``)
    the momentum :math:`M_t`, shape ``s``, statistics dtype.
``"nonfinite_skips"``
    an int64 0-d tensor on the parameter's device: how many steps were skipped
    because this parameter's gradient was not finite.

Functional form
---------------
As in ``torch.optim``, the class collects lists and calls one of two functions
with the same signature::

    _single_tensor_adafactor(params, grads, stats_r, stats_c, steps, *,
                             exp_avgs, nonfinite_skips, lr, beta2_decay, eps1, eps2, d,
                             weight_decay, beta1, relative_step, scale_parameter,
                             factor_dims, maximize, stochastic_rounding, generator)
    _foreach_adafactor(...)  # the same

``stats_r[i]`` is ``R`` (or ``V``), ``stats_c[i]`` is ``C`` (or ``None``),
``exp_avgs[i]`` the momentum or ``None``; ``steps[i]`` holds :math:`t - 1` and
is advanced by the call. The first five lists are those of
:func:`optbook.kernels.adafactor_fused.fused_adafactor`, which ``fused=True``
calls with ``decay_exponent = -beta2_decay`` and ``increment_steps=True``.

Both functions run the same tensor program, ``_step_stack``, on a stack
of ``k`` tensors of one shape, dtype and device: the single-tensor path with
``k = 1`` (views, no copies), the batched path with every such group of a
param group at once (stacks of the gradients and statistics: one kernel per
operation for the whole group instead of one per tensor, for copies of the
gradients). Element-wise operations give the same bits on a stack as on one
tensor, and the parameter updates run through ``torch._foreach_*`` per
tensor, so on a CPU the two paths agree bit for bit (tested in float64,
float32 and bfloat16). Three kinds of operation would break that, and are kept
out of stacks: ``pow`` (torch's vectorised and scalar ``pow`` round
differently, so :math:`t^{\tau}` is taken per tensor with
``torch._foreach_pow``), ``lerp`` and ``addcmul`` (fused multiply-adds whose
rounding may depend on an element's position in a vector register; they run
per tensor). Not covered: with several intra-op threads, a reduction over more
than torch's parallel grain (32768 entries) may be split differently for a
stack, and on a GPU the ``torch._foreach_*`` kernels may round differently
from the single-tensor ones; the paths then agree to rounding.

Three passes over :math:`G` (the minimum: :math:`\hat V_t` needs all of
:math:`G_t` before :math:`U_t` exists, and clipping needs all of :math:`U_t`
before :math:`X_t` can be written): row and column sums of :math:`G^2`; the
sum of :math:`U^2`, without forming :math:`U`; the update. On a CPU a factored
tensor is walked in slabs of about 2**17 entries along its first factored
dim, so every temporary stays in cache and nothing of full size is ever
allocated (a fresh full-size allocation costs page faults worth several passes
over memory). The slabs depend on the shape only, so both paths take the same
ones; on a GPU the whole tensor is one slab.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
import weakref
from itertools import compress, repeat
from numbers import Real
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from optbook.optim._compat import (
    ComplexParameterError,
    SparseGradientError,
    check_state_dict_structure,
    check_tensor_lr,
    fill_missing_options,
    lr_value,
    run_load_pre_hooks,
    signature_defaults,
    step_count,
    without_load_pre_hooks,
)

__all__ = ["Adafactor"]

# Parameters stored in these dtypes keep float32 statistics and are updated in
# float32, rounded back once per step: their own precision cannot hold
# G^2 + eps1 (1e-30 underflows in float16) or the slow drift of R and C.
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: ``fused=None`` on dense CPU tensors (float32/bfloat16/float16) runs the numba kernel of
#: :mod:`optbook.kernels.cpu_fused` if True, the eager (for-loop) path if False.
CPU_FUSED_DEFAULT = True
#: What runs a fused step on CPU tensors: ``"numba"`` (:mod:`optbook.kernels.cpu_fused`) or
#: ``"triton-interpreter"`` (the Triton kernels under ``TRITON_INTERPRET=1``, for their tests; the default
#: when that variable is set, as ``tests/conftest.py`` does).
CPU_FUSED_BACKEND = "triton-interpreter" if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False") else "numba"
_CPU_FUSED_WARNED: set[str] = set()
_FACTOR_DIMS = ("last_two", "two_largest")
# eps1 must survive float32 statistics: below the smallest normal float32 a
# zero gradient row would give R_i = 0 and 0 * rsqrt(0) = NaN.
_EPS1_MIN = torch.finfo(torch.float32).tiny

# Option names of other Adafactor implementations (and of this class's first
# draft) that a param group might carry over; torch would silently ignore them.
_FOREIGN_OPTIONS = {
    "decay_exponent": "beta2_decay (negative: decay_exponent=0.8 is beta2_decay=-0.8)",
    "decay_rate": "beta2_decay (decay_rate=-0.8 is beta2_decay=-0.8)",
    "eps1": "eps=(eps1, eps2)",
    "eps2": "eps=(eps1, eps2)",
    "clip_threshold": "d",
    "betas": "beta1 (momentum) and beta2_decay (the second-moment schedule)",
    "warmup_init": "a learning-rate scheduler on lr",
    "differentiable": "nothing: differentiating through the step is not supported",
}
# torch writes these two into param groups and defaults with the value False
# (Optimizer.__setstate__ adds differentiable=False); only True is refused.
_FALSE_IS_FINE = ("differentiable",)


class Adafactor(Optimizer):
    r"""Adafactor: factored second moments, relative step sizes, update clipping.

    A drop-in replacement for ``torch.optim.Adafactor``: the same positional
    arguments and keyword names, so ``torch.optim.Adafactor(params, lr=...,
    weight_decay=..., foreach=..., maximize=...)`` switches by changing the
    import. Its defaults are the paper's algorithm (Algorithms 4 and 5 with the
    hyperparameters of Section 9), which it computes exactly: it agrees with
    :mod:`optbook.reference.adafactor` to rounding.

    **The iteration.** For each parameter :math:`X` with gradient :math:`G_t`
    (:math:`-G_t` with ``maximize``), at that parameter's own step
    :math:`t = 1, 2, \dots`:

    .. math::

        \begin{aligned}
        \rho_t &= \min(\gamma, 1/\sqrt t)
            && \text{(relative\_step; else } \rho_t = \gamma) \\
        \alpha_t &= \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))\,\rho_t
            && \text{(scale\_parameter; else } \alpha_t = \rho_t) \\
        \hat\beta_{2t} &= 1 - t^{\tau} \\
        R_t &= \hat\beta_{2t} R_{t-1} + (1-\hat\beta_{2t})\,(G_t^2 + \epsilon_1 1_n 1_m^\top)\,1_m
            && \text{(rank} \ge 2) \\
        C_t &= \hat\beta_{2t} C_{t-1} + (1-\hat\beta_{2t})\,1_n^\top (G_t^2 + \epsilon_1 1_n 1_m^\top) \\
        \hat V_t &= R_t C_t / (1_n^\top R_t) \\
        \hat V_t &= \hat\beta_{2t} \hat V_{t-1} + (1-\hat\beta_{2t})\,(G_t^2 + \epsilon_1 1_n)
            && \text{(rank} \le 1) \\
        U_t &= G_t / \sqrt{\hat V_t} \\
        \hat U_t &= U_t / \max(1, \mathrm{RMS}(U_t)/d) \\
        M_t &= \beta_1 M_{t-1} + (1-\beta_1)\,\alpha_t \hat U_t
            && (\text{beta1; else } M_t = \alpha_t \hat U_t) \\
        X_t &= (1 - \gamma\lambda)\,X_{t-1} - M_t
        \end{aligned}

    with :math:`\gamma` = ``lr``, :math:`\tau` = ``beta2_decay``,
    :math:`(\epsilon_1, \epsilon_2)` = ``eps``, :math:`\lambda` =
    ``weight_decay``, :math:`\beta_1` = ``beta1`` and
    :math:`R_0 = C_0 = \hat V_0 = M_0 = 0`. Since :math:`\hat\beta_{21} = 0`, the
    first step uses :math:`G_1^2` exactly: the increasing decay is Adafactor's
    bias correction. A tensor of rank :math:`\ge 2` is a batch of
    :math:`n \times m` matrices over its two factored dims (the last two by
    default), the other dims indexing the batch; :math:`\mathrm{RMS}` is taken
    over the whole tensor. The statistics are the paper's *sums*;
    :math:`\sum_j (G_{ij}^2 + \epsilon_1)` is computed as
    :math:`\lVert G_{i\cdot}\rVert^2 + m\epsilon_1`, the same number up to
    rounding, in one read of :math:`G`.

    **Conventions of the options beyond the paper.**

    * *Momentum* (``beta1``): an EMA of the clipped, :math:`\alpha_t`-scaled
      update, as in tensor2tensor (``subtrahend``) and transformers: clipping
      acts on :math:`U_t` before the average, and :math:`\alpha_t` (so the
      :math:`1/\sqrt t` decay and the parameter scale) is inside it. It is not
      Adam's average of raw gradients. ``beta1=None`` or ``0`` keeps no
      momentum and no buffer; otherwise one full-size buffer.
    * *Weight decay* (``weight_decay``): decoupled,
      :math:`X \leftarrow (1-\gamma\lambda) X` with the raw ``lr``, applied
      after :math:`\alpha_t` is measured on :math:`X_{t-1}`; this is
      ``torch.optim.Adafactor``'s (and AdamW's) convention, so the decay follows
      a scheduler on ``lr`` but not :math:`1/\sqrt t` or the parameter scale.
      transformers, timm and pytorch_optimizer decay by :math:`\lambda\alpha_t`,
      optax and big_vision by :math:`\lambda` alone.
    * ``relative_step=False``: :math:`\rho_t = \gamma`, an absolute step size,
      still multiplied by :math:`\max(\epsilon_2, \mathrm{RMS}(X_{t-1}))`
      unless ``scale_parameter=False`` (then :math:`\alpha_t = \gamma`, the
      update of an ordinary learning rate).
    * ``lr`` is read from ``group["lr"]`` at every step, so learning-rate
      schedulers work; with ``relative_step=True`` they move the cap of
      :math:`\rho_t`. It is never written back (fairseq and timm overwrite it).
    * Each parameter has its own :math:`t`, advanced only on steps where its
      ``grad`` is not ``None``, as in torch and transformers
      (pytorch_optimizer counts per group, optax and T2T globally).

    **Non-finite gradients.** Raising on a NaN would need a host
    synchronisation per step, so there is none: a tensor whose gradient has a
    NaN or an infinity, or whose sum of squares overflows the statistics
    dtype, is skipped *on the device*. Its values, :math:`R`, :math:`C`,
    :math:`\hat V` and momentum stay exactly as they were (``torch.where`` on a
    per-tensor finite flag), its :math:`t` still advances, as in the fused
    kernels, and ``state["nonfinite_skips"]`` counts the skip. The other
    tensors step as usual. (``torch.amp.GradScaler`` skips the whole step on
    an overflow instead; that still works.)

    **Precision.** float64, float32, bfloat16 and float16 parameters. For
    bfloat16 and float16 the statistics are kept and computed in float32, and
    the parameter is updated in float32 and rounded once per step: to nearest,
    or for bfloat16 with ``stochastic_rounding=True`` stochastically, as
    tensor2tensor does, so that updates smaller than half an ulp are not lost
    on average. The random bits come from :attr:`generator` if set (a
    ``torch.Generator`` on the parameters' device), else from torch's default
    generator of that device (``torch.manual_seed`` makes runs repeatable);
    the single-tensor and batched paths draw them in different orders.

    Differences from ``torch.optim.Adafactor`` (each tested):

    * :math:`\epsilon_1` is *added* to :math:`G_t^2` before averaging, as in
      the paper and in every other implementation; ``eps=(1e-30, 1e-3)``.
      torch's default ``eps=(None, 1e-3)`` instead clamps :math:`\hat V_t` at
      ``finfo(dtype).eps**2``, which damps small gradients (bfloat16:
      :math:`\sqrt{\hat V}` floored at 0.0078), and with ``eps1=1e-30`` in
      float32 turns a zero row into NaN. ``eps1=None`` is refused here.
    * Statistics of bfloat16/float16 parameters are float32 (torch keeps and
      computes them in the parameter's dtype), and each parameter uses its
      own dtype (torch takes its default :math:`\epsilon_1` from the first
      parameter of a group).
    * ``factor_dims="two_largest"`` factors a tensor of rank :math:`> 2` over
      its two largest dims (ties to the later dim), as optax, mesh-TF and
      big_vision do: a convolution kernel ``(O, I, k, k)`` keeps
      :math:`O + I` numbers per :math:`k \times k` position pair instead of
      :math:`2k` per channel pair. torch always factors the last two.
      Unlike optax there is no minimum size: every tensor of rank :math:`\ge 2`
      is factored, as in torch.
    * ``beta1``, ``relative_step``, ``scale_parameter``,
      ``stochastic_rounding`` and ``factor_dims`` are options torch does not
      have; ``d`` may be any positive number (torch requires ``d >= 1``), and
      ``d=float("inf")`` turns clipping off.
    * A NaN or infinite gradient skips that tensor (see above); torch writes
      NaN into the parameter and its statistics for good.
    * ``beta2_decay`` must lie in :math:`[-1, 0)` (torch accepts any
      :math:`\tau \le 0`).
    * No ``.item()`` in ``step()``; torch's for-loop path syncs three times
      per parameter. ``foreach=None`` means the batched path when every
      parameter of the group is on CUDA, as torch's other optimizers do (torch's
      Adafactor keeps the for-loop there).
    * A Tensor ``lr`` (one element, as torch takes) is read with ``float`` at
      each step: for a CUDA tensor, one host synchronisation per param group.
    * A complex parameter raises ``ComplexParameterError`` (a ``RuntimeError`` and a ``TypeError``),
      a ``RuntimeError`` as torch raises (and a ``TypeError``).

    Args:
        params: parameters, or dicts defining parameter groups.
        lr: :math:`\gamma`. With ``relative_step=True`` the cap of
            :math:`\rho_t` (the paper's :math:`10^{-2}`), otherwise the
            step size itself. Also scales weight decay.
        beta2_decay: :math:`\tau` in :math:`\hat\beta_{2t} = 1 - t^{\tau}`,
            in :math:`[-1, 0)`: :math:`\tau < 0` makes :math:`\hat\beta_{2t}`
            tend to 1; :math:`\tau = 0` would give :math:`\hat\beta_{2t} = 0`
            (no averaging) and :math:`\tau > 0` negative decays, while below
            :math:`-1` the weights :math:`t^{\tau}` of new gradients fall faster
            than :math:`1/t` and the estimate freezes on the first gradients
            (:math:`\tau = -1` is the running mean). The paper uses :math:`-0.8`.
        eps: :math:`(\epsilon_1, \epsilon_2)`: :math:`\epsilon_1 > 0` is added
            to :math:`G_t^2` (at least ``1.2e-38``, the smallest normal
            float32); :math:`\epsilon_2 > 0` floors the parameter scale, so a
            parameter that starts at zero still moves.
        d: clipping threshold on :math:`\mathrm{RMS}(U_t)`, :math:`> 0`;
            ``float("inf")`` turns clipping off.
        weight_decay: :math:`\lambda \ge 0`, decoupled, scaled by ``lr``.
        beta1: momentum coefficient in :math:`[0, 1)`, or ``None`` (the paper's
            recommendation: no momentum, no buffer).
        relative_step: :math:`\rho_t = \min(\gamma, 1/\sqrt t)` if True,
            :math:`\rho_t = \gamma` if False.
        scale_parameter: multiply :math:`\rho_t` by
            :math:`\max(\epsilon_2, \mathrm{RMS}(X_{t-1}))`.
        factor_dims: ``"last_two"`` (torch, transformers, T2T) or
            ``"two_largest"`` (optax, big_vision).
        foreach: use the batched path (``None``: when every parameter of the
            group is on CUDA).
        maximize: ascend (uses :math:`-G_t`; ``p.grad`` is not modified).
        stochastic_rounding: round bfloat16 parameters stochastically.
        fused: run the group through a fused kernel; the device decides which:
            CUDA tensors the Triton kernels of :mod:`optbook.kernels.adafactor_fused`,
            CPU tensors the numba kernel of :mod:`optbook.kernels.cpu_fused` (or
            Triton's interpreter when ``CPU_FUSED_BACKEND`` says so, as it does under
            ``TRITON_INTERPRET=1``). float32/bfloat16/float16; ``"last_two"``;
            stochastic rounding of bfloat16 with the eager path's distribution
            (other random bits). Same iteration, same state, momentum included;
            non-finite gradients are skipped and counted in ``nonfinite_skips``
            as on the eager path. A CPU group the kernel cannot take
            (non-contiguous tensors, ...) falls back to the eager path with one
            warning. ``None`` (default): on CUDA not fused until the kernels are
            measured on a GPU; on dense CPU tensors of those dtypes the numba
            kernel if the module constant ``CPU_FUSED_DEFAULT`` is True (then
            also with ``"two_largest"`` and stochastic rounding, unless
            ``foreach`` is set), else the eager path.
        capturable: allow :meth:`step` to be captured in a CUDA graph, as in
            ``torch.optim``. No path of this class synchronises with the host
            (the step counters are device tensors, non-finite gradients are
            skipped on the device), so the numbers are the same either way;
            with ``False`` a step inside a capture raises, as torch's
            optimizers do. The first fused step, which builds the launch plan
            (and the state), must run before capture; while capturing, the
            parameters, gradients and state must keep their addresses, and
            ``lr`` must be a Python number. The plans live as long as the
            optimizer (one cache per param group, never evicted), so a
            captured graph never points at freed scratch buffers.

    Bad hyperparameters raise a ``ValueError`` or ``TypeError`` naming the
    option, in the constructor, in :meth:`add_param_group`, in
    :meth:`load_state_dict` and again at the start of :meth:`step`
    (schedulers and users edit ``param_groups``). A step also refuses sparse
    or complex gradients, non-floating-point parameters and state of the wrong
    layout; :meth:`load_state_dict` refuses a state dict whose shapes do not
    match the parameters. Every check runs before anything is written, so a
    refused call leaves all parameters and all state as they were. A step
    does not repeat a check that passed at an earlier step when nothing it
    reads has changed (the same option values, the same state tensors with
    the same shapes, dtypes and devices, gradients of the same layout).
    A group on the Triton path (``fused=True`` on CUDA, or under the
    interpreter) goes further: after one full step, a step with the same
    parameters, options and set of gradients present compares only the addresses of the parameters and gradients and the
    parameters' version counters (C-level maps, no Python per tensor); a new
    address re-checks what it affects, 16-byte alignment included. Its state
    is trusted between steps: ``load_state_dict``, ``add_param_group`` and
    unpickling re-check it, but a state tensor replaced by hand is not
    looked at (the plan keeps the old one alive, so no kernel writes freed
    memory). The fused step bumps the version counter of every tensor it
    writes, as torch's in-place ops do, so autograd refuses a tensor saved
    before the step. Under ``torch.compile`` the fused kernels run as the
    custom op ``optbook::fused_adafactor_step`` (no graph break).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float, float] = (1e-30, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        beta1: float | None = None,
        relative_step: bool = True,
        scale_parameter: bool = True,
        factor_dims: str = "last_two",
        foreach: bool | None = None,
        maximize: bool = False,
        stochastic_rounding: bool = False,
        fused: bool | None = None,
        capturable: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "beta1": beta1,
            "relative_step": relative_step,
            "scale_parameter": scale_parameter,
            "factor_dims": factor_dims,
            "foreach": foreach,
            "maximize": maximize,
            "stochastic_rounding": stochastic_rounding,
            "fused": fused,
            "capturable": capturable,
        }
        _check_hyperparameters(defaults, "Adafactor()")
        if isinstance(eps, list):
            defaults["eps"] = tuple(eps)
        #: The ``torch.Generator`` that stochastic rounding draws from (on the
        #: parameters' device); ``None`` uses torch's default generator.
        self.generator: torch.Generator | None = None
        #: One launch-plan cache per param group index (optbook.kernels.adafactor_fused.PlanCache):
        #: never evicted while the optimizer lives, so a captured CUDA graph's buffers stay valid.
        self._fused_plans: dict[int, Any] = {}
        self._forget_checks()
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer pickles defaults, state and param_groups only;
        # without the generator a deep copy would not continue bit-exactly.
        state = super().__getstate__()
        state["generator"] = self.generator
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("generator", None)
        self.__dict__.setdefault("_fused_plans", {})
        # A group pickled or saved before an option existed gets its default,
        # as torch.optim's optimizers do in __setstate__.
        fill_missing_options(self.param_groups, _signature_defaults())
        fill_missing_options([self.defaults], _signature_defaults())
        self._forget_checks()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking the options it overrides."""
        if not isinstance(param_group, dict):
            raise TypeError(
                f"param_group must be a dict with a 'params' entry, got {type(param_group).__name__}."
            )
        where = f"param group {len(self.param_groups)}"
        _check_foreign_options(param_group, where)
        merged = {**self.defaults, **param_group}
        _check_hyperparameters(merged, where)
        if isinstance(param_group.get("eps"), list):
            param_group = {**param_group, "eps": tuple(param_group["eps"])}
        self._forget_checks()
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ state dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by ``state_dict()``, by ``torch.optim.Adafactor`` or by transformers.

        The load-state-dict pre-hooks run first, as in ``torch.optim``. Then
        everything is checked (the containers, the grouping, hyperparameters,
        the shape of every statistic against its parameter, and the values of
        the step counters and statistics), so a state dict from another model,
        or a corrupted one, raises a ``ValueError`` (``TypeError`` for an option
        of the wrong type) naming ``state_dict`` and changes nothing.

        * A param group that lacks an option (saved before the option existed)
          gets the constructor's default for it.
        * ``step`` may be a one-element tensor, an int or a whole float (older
          checkpoints); it is stored as a float32 0-d tensor on the device.
        * A state dict of ``torch.optim.Adafactor`` (``row_var``, ``col_var``,
          ``variance``: means, with a kept dim of size 1) or of
          ``transformers.optimization.Adafactor`` (``exp_avg_sq_row``,
          ``exp_avg_sq_col``, ``exp_avg_sq``, ``exp_avg``; ``decay_rate``,
          ``clip_threshold``, ...) is converted to this layout (row and column
          sums) and its options to this class's; see ``_from_foreign``.

        Statistics keep their saved dtype (torch's loader would cast the
        float32 statistics of a bfloat16 parameter to bfloat16), and the step
        counters move to their parameter's device.
        """
        self._forget_checks()
        state_dict = run_load_pre_hooks(self, state_dict)
        check_state_dict_structure(self, state_dict)
        state_dict = _from_foreign(state_dict)
        defaults = _signature_defaults()
        saved_groups = [{**defaults, **saved} for saved in state_dict["param_groups"]]
        saved_state = state_dict["state"]
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            _check_foreign_options(saved, f"state_dict: param group {gi}")
            _check_hyperparameters(saved, f"state_dict: param group {gi}")
            for pi, (p, key) in enumerate(zip(group["params"], saved["params"])):
                if saved_state.get(key):
                    _check_saved_state(saved_state[key], p, saved, f"state_dict: parameter {pi} of param group {gi}")
        with without_load_pre_hooks(self):
            super().load_state_dict({**state_dict, "param_groups": saved_groups})
        # torch's loader casts every floating-point state tensor to the
        # parameter's dtype and leaves "step" where it was; rebuild each entry
        # from the saved dict so that it is exact, owned and on the device.
        for group, saved in zip(self.param_groups, saved_groups):
            for p, key in zip(group["params"], saved["params"]):
                if not saved_state.get(key):
                    continue
                state = {}
                for name, value in saved_state[key].items():
                    if name == "step" and not torch.is_tensor(value):
                        state[name] = torch.tensor(float(value), dtype=torch.float32, device=p.device)
                    elif name == "nonfinite_skips" and not torch.is_tensor(value):
                        state[name] = torch.tensor(int(value), dtype=torch.int64, device=p.device)
                    elif not torch.is_tensor(value):
                        state[name] = value
                    elif name == "step":
                        state[name] = value.to(device=p.device, dtype=torch.float32, copy=True).reshape(())
                    elif name == "nonfinite_skips":
                        state[name] = value.to(device=p.device, dtype=torch.int64, copy=True).reshape(())
                    else:
                        state[name] = value.to(device=p.device, dtype=_compute_dtype(p.dtype), copy=True)
                state.setdefault("nonfinite_skips", torch.zeros((), dtype=torch.int64, device=p.device))
                self.state[p] = state
        self._forget_checks()

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one Adafactor step on every parameter that has a gradient.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Check everything first: a refused step must leave every parameter
        # and all state untouched, including those before the bad one.
        # What passed these checks at an earlier step and has not changed since
        # is not checked again (see _forget_checks).
        work = []
        for gi, group in enumerate(self.param_groups):
            where = f"param group {gi}"
            _check_foreign_options(group, where)
            if not self._options_unchanged(gi, group):
                _check_hyperparameters(group, where)
                self._remember_options(gi, group)
            # Under torch.compile the step is traced once: no plan caches, the kernels run as a custom op.
            ready = self._fused_ready(gi, group) if group["fused"] and not torch.compiler.is_compiling() else None
            if ready is not None:
                work.append((gi, group, ready[0], ready[1]))
                continue
            params = self._checked_params(gi, group)
            if group["fused"] and params:
                _check_fused_group(params, where)
            if group["capturable"] is False and params and _capturing(params[0]):
                raise RuntimeError(
                    f"{where} has capturable=False, but step() is being captured into a CUDA graph; "
                    "construct the optimizer with capturable=True."
                )
            work.append((gi, group, params, None))
        slow = [(group, params) for _, group, params, plan in work if plan is None]
        if slow:
            # DTensor parameters (FSDP2, tensor parallelism): optbook.distributed, two all-reduces for all of them.
            from optbook.distributed.adafactor import step_dtensors

            rest = iter(step_dtensors(self, slow))
        for gi, group, params, plan in work:
            if plan is not None:
                self._fused_run(group, params, plan)
                continue
            group, params = next(rest)
            if not params:
                continue
            if group["fused"] and not (params[0].device.type == "cpu" and CPU_FUSED_BACKEND == "numba"):
                self._fused_step(gi, group, params)
                continue
            for p in params:
                if not self.state.get(p):
                    self._init_state(p, group)
                elif group["beta1"] and "exp_avg" not in self.state[p]:
                    # beta1 switched on for a parameter with state: start its momentum at 0.
                    self.state[p]["exp_avg"] = torch.zeros_like(p, dtype=_compute_dtype(p.dtype))
            states = [self.state[p] for p in params]
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.is_cuda for p in params)
            eps1, eps2 = group["eps"]
            func = _foreach_adafactor if foreach else _single_tensor_adafactor
            if _cpu_kernel(group, params):
                from optbook.kernels.cpu_fused import fused_adafactor_cpu as func
            func(
                params,
                [p.grad for p in params],
                [s["R"] if "R" in s else s["V"] for s in states],
                [s.get("C") for s in states],
                [s["step"] for s in states],
                exp_avgs=[s.get("exp_avg") for s in states],
                nonfinite_skips=[s["nonfinite_skips"] for s in states],
                lr=float(group["lr"]),
                beta2_decay=float(group["beta2_decay"]),
                eps1=float(eps1),
                eps2=float(eps2),
                d=float(group["d"]),
                weight_decay=float(group["weight_decay"]),
                beta1=float(group["beta1"]) if group["beta1"] else None,
                relative_step=group["relative_step"],
                scale_parameter=group["scale_parameter"],
                factor_dims=group["factor_dims"],
                maximize=group["maximize"],
                stochastic_rounding=group["stochastic_rounding"],
                generator=self.generator,
            )
        return loss

    # ------------------------------------------------------------------ check cache
    #
    # step() checks every option, gradient and state entry before writing
    # anything. Most of that is the same from one step to the next, so what
    # passed is remembered together with everything the check read, and a step
    # skips a check only when all of it is unchanged:
    #
    # * per param group (``_checked_options``): the group dict itself and the
    #   objects held under the options ``_check_hyperparameters`` reads, compared
    #   by identity (only when all are immutable: float, int, bool, None, str or
    #   a tuple of those). ``lr``, which a scheduler changes every step, is
    #   checked on its own: a float or int lr needs only ``0 <= lr < inf`` and
    #   ``lr * weight_decay < 1``; any other lr (a Tensor) runs the full check.
    # * per parameter (``_checked_parameters``): the group's factor_dims, whether
    #   beta1 is set, stochastic_rounding and the generator object; the
    #   parameter's and its gradient's shape, dtype, device and layout; and every
    #   entry of its state, in order: the same object (by weak reference, so
    #   that a replaced tensor is not kept alive) with the same shape, dtype and
    #   device.
    #
    # Anything else runs the full check, which raises exactly as before; a
    # refused step writes nothing. load_state_dict, add_param_group and
    # __setstate__ forget everything.

    def _forget_checks(self) -> None:
        """Drop every remembered check: the next step checks everything again."""
        self._checked_options: dict[int, tuple[Any, ...]] = {}
        self._checked_parameters: dict[Tensor, tuple[Any, ...]] = {}
        # Per param group index, what a fused group's last full check saw (see _fused_ready).
        self._fused_records: dict[int, tuple[Any, ...]] = {}
        for cache in getattr(self, "_fused_plans", {}).values():
            cache.trust_state = False

    def _options_unchanged(self, gi: int, group: dict[str, Any]) -> bool:
        """True if ``_check_hyperparameters(group)`` passed before and would pass now (see above)."""
        entry = self._checked_options.get(gi)
        if entry is None or entry[0] is not group:
            return False
        try:
            values = tuple(map(group.__getitem__, _CHECKED_OPTIONS))
        except KeyError:
            return False
        if not all(map(operator.is_, values, entry[1])):
            return False
        lr, wd = group.get("lr"), group["weight_decay"]
        # The lr checks of _check_hyperparameters, for a Python number (bool is neither float nor int here).
        return type(lr) in (float, int) and math.isfinite(lr) and lr >= 0 and lr * wd < 1

    def _remember_options(self, gi: int, group: dict[str, Any]) -> None:
        """Record that ``group``'s options (lr aside) passed ``_check_hyperparameters``."""
        values = tuple(group[name] for name in _CHECKED_OPTIONS)
        if all(map(_immutable, values)):
            self._checked_options[gi] = (group, values)
        else:
            self._checked_options.pop(gi, None)  # a list eps, a numpy number, ...: checked at every step

    def _checked_params(self, gi: int, group: dict[str, Any]) -> list[Tensor]:
        """The parameters of ``group`` that have a gradient, each checked (``_check_parameter``) or unchanged."""
        context = (group["factor_dims"], bool(group["beta1"]), group["stochastic_rounding"], self.generator)
        checked, states = self._checked_parameters, self.state
        params = []
        for pi, p in enumerate(group["params"]):
            grad = p.grad
            if grad is None:
                continue
            entry = checked.get(p)
            if entry is None or not _unchanged(entry, context, p, grad, states.get(p)):
                self._check_parameter(p, f"parameter {pi} of param group {gi}", group)
                try:
                    checked[p] = _check_record(context, p, states.get(p))
                except TypeError:  # a state tensor that takes no weak reference: checked at every step
                    checked.pop(p, None)
            params.append(p)
        return params

    def _check_parameter(self, p: Tensor, where: str, group: dict[str, Any]) -> None:
        """Host-side checks of one parameter (dtype, layout, shapes; never values)."""
        grad = p.grad
        if torch.is_complex(p) or torch.is_complex(grad):
            raise ComplexParameterError(
                f"{where} is complex ({p.dtype}): Adafactor does not support complex parameters (transformers "
                "would silently square the complex gradient). Optimise torch.view_as_real of it as a real parameter."
            )
        if not p.is_floating_point():
            raise TypeError(f"{where} has dtype {p.dtype}; Adafactor needs a floating-point parameter.")
        if grad.is_sparse or grad.layout != torch.strided:
            raise SparseGradientError(
                f"{where} has a sparse gradient ({grad.layout}): Adafactor does not support sparse gradients "
                "(for an nn.Embedding, construct it with sparse=False)."
            )
        if grad.shape != p.shape or grad.dtype != p.dtype or grad.device != p.device:
            raise ValueError(
                f"{where}: its gradient is {tuple(grad.shape)} {grad.dtype} on {grad.device} but the parameter is "
                f"{tuple(p.shape)} {p.dtype} on {p.device}; they must match."
            )
        if group["stochastic_rounding"] and p.dtype == torch.bfloat16 and not _same_device(self.generator, p):
            raise ValueError(
                f"{where} is on {p.device} but Adafactor.generator (used by stochastic_rounding) is on "
                f"{self.generator.device}; set generator to a torch.Generator on {p.device}, or to None."
            )
        state = self.state.get(p)
        if state:
            _check_state(state, p, group, f"the state of {where}", strict_device=True)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        cd = _compute_dtype(p.dtype)
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        for name, shape in _state_shapes(p.shape, group).items():
            state[name] = torch.zeros(shape, dtype=cd, device=p.device)
        state["nonfinite_skips"] = torch.zeros((), dtype=torch.int64, device=p.device)

    # ------------------------------------------------------------------ fused (Triton) groups
    #
    # A fused group's first step runs every check above, then
    # fused_adafactor_step validates the tensors and builds a launch plan in
    # the group's PlanCache. Then the step records (_fused_records) the group
    # dict, its parameters, which of them had gradients, the options the state
    # layout depends on and the state dict object. A later step whose group,
    # parameters, options, state object and set of gradients present are the
    # same skips the per-parameter checks:
    # PlanCache.prepare compares only the addresses of the parameters and
    # gradients (one tuple each) and run_plan the parameters' versions. The
    # state is the optimizer's own: load_state_dict, add_param_group and
    # unpickling forget the records (_forget_checks); a state tensor replaced
    # by hand is not looked at again (the plan keeps the old one alive, so no
    # kernel ever writes freed memory).

    def _fused_ready(self, gi: int, group: dict[str, Any]) -> tuple[list[Tensor], Any] | None:
        """The parameters and the ready launch plan of a fused group that needs no check, else None."""
        record = self._fused_records.get(gi)
        if record is None:
            return None
        r_group, r_params, r_mask, r_context, r_state, cache, r_plan = record
        if r_group is not group or self.state is not r_state or not cache.trust_state:
            return None
        params = group["params"]
        if len(params) != len(r_params) or not all(map(operator.is_, params, r_params)):
            return None
        if _fused_context(group, self.generator) != r_context:
            return None
        grads = list(map(_GRAD, params))
        if r_mask is not None:
            # Some parameters had no gradient when the record was made (frozen ones, say): the same must hold.
            if tuple(map(operator.is_not, grads, repeat(None))) != r_mask:
                return None
            params, grads = list(compress(params, r_mask)), list(compress(grads, r_mask))
        # A missing gradient (another subset of the group: the full path, another plan) makes prepare say None.
        plan = cache.prepare(params, grads, r_plan)  # r_plan was built for exactly these params
        if plan is None:
            return None
        if not group["capturable"] and _capturing(params[0]):
            raise RuntimeError(
                f"param group {gi} has capturable=False, but step() is being captured into a CUDA graph; "
                "construct the optimizer with capturable=True."
            )
        return params, plan

    def _fused_run(self, group: dict[str, Any], params: list[Tensor], plan: Any) -> None:
        from optbook.kernels.adafactor_fused import run_plan

        eps1, eps2 = group["eps"]
        run_plan(plan, params, generator=self.generator, **_fused_options(group, eps1, eps2))

    def _fused_step(self, gi: int, group: dict[str, Any], params: list[Tensor]) -> None:
        from optbook.kernels.adafactor_fused import PlanCache, fused_adafactor

        created = [p for p in params if not self.state.get(p)]
        for p in created:
            self._init_state(p, group)
        added_momentum = []
        if group["beta1"]:
            for p in params:
                if "exp_avg" not in self.state[p]:
                    # beta1 switched on for a parameter with state: start its momentum at 0.
                    self.state[p]["exp_avg"] = torch.zeros_like(p, dtype=_compute_dtype(p.dtype))
                    added_momentum.append(p)
        states = [self.state[p] for p in params]
        eps1, eps2 = group["eps"]
        if torch.compiler.is_compiling():
            from optbook.kernels.adafactor_fused import fused_adafactor_op

            cols = [s["C"] for s in states if "C" in s]
            c_index, k = [], 0
            for s in states:
                c_index.append(k if "C" in s else -1)
                k += "C" in s
            seed = None
            if group["stochastic_rounding"] and any(p.dtype == torch.bfloat16 for p in params):
                # A custom op's schema holds no Generator: draw the step's seed here.
                seed = torch.randint(0, 1 << 62, (1,), dtype=torch.int64, device=params[0].device,
                                     generator=self.generator)
            fused_adafactor_op(
                params, [p.grad for p in params], [s["R"] if "R" in s else s["V"] for s in states], cols,
                [s["step"] for s in states], [s["exp_avg"] for s in states] if group["beta1"] else [],
                [s["nonfinite_skips"] for s in states], c_index, seed=seed, **_fused_options(group, eps1, eps2),
            )
            return
        cache = self._fused_plans.get(gi)
        if cache is None:
            cache = self._fused_plans[gi] = PlanCache()
        cache.trust_state = False
        try:
            # The kernels check their inputs before launching anything, and
            # with increment_steps=True they store t themselves.
            fused_adafactor(
                params,
                [p.grad for p in params],
                [s["R"] if "R" in s else s["V"] for s in states],
                [s.get("C") for s in states],
                [s["step"] for s in states],
                exp_avgs=[s.get("exp_avg") for s in states],
                nonfinite_skips=[s["nonfinite_skips"] for s in states],
                plans=cache,
                generator=self.generator,
                **_fused_options(group, eps1, eps2),
            )
        except Exception:
            for p in created:
                del self.state[p]
            for p in added_momentum:
                self.state[p].pop("exp_avg", None)
            raise
        mask = tuple(p.grad is not None for p in group["params"])
        if sum(mask) == len(params):
            # Every parameter with a gradient stepped here (none is a DTensor): the next step with
            # gradients on the same parameters may skip the checks.
            cache.trust_state = True
            self._fused_records[gi] = (
                group, tuple(group["params"]), None if all(mask) else mask, _fused_context(group, self.generator),
                self.state, cache, cache.last,
            )


_GRAD = operator.attrgetter("grad")


def _fused_context(group: dict[str, Any], generator: torch.Generator | None) -> tuple[Any, ...]:
    """The options the state layout and the plan depend on (the others are read at every step)."""
    return (group["factor_dims"], bool(group["beta1"]), group["stochastic_rounding"], generator,
            group["capturable"], group["fused"])


def _fused_options(group: dict[str, Any], eps1: float, eps2: float) -> dict[str, Any]:
    """The keyword arguments of the fused kernels for ``group``."""
    return dict(
        lr=float(group["lr"]),
        decay_exponent=-float(group["beta2_decay"]),
        eps1=float(eps1),
        eps2=float(eps2),
        d=float(group["d"]),
        weight_decay=float(group["weight_decay"]),
        relative_step=group["relative_step"],
        scale_parameter=group["scale_parameter"],
        maximize=group["maximize"],
        increment_steps=True,
        beta1=float(group["beta1"]) if group["beta1"] else None,
        stochastic_rounding=group["stochastic_rounding"],
    )


def _capturing(p: Tensor) -> bool:
    """True while ``p``'s CUDA stream is being captured into a graph (never for a CPU tensor)."""
    return p.is_cuda and torch.cuda.is_current_stream_capturing()


# ---------------------------------------------------------------------- functional form


def _update_coefficients(
    clip: Tensor, finite: Tensor, rms_x: Tensor | None, rho: Tensor, *, lr: float, eps2: float, weight_decay: float,
    beta1: float | None, sign: float, scale_parameter: bool, relative_step: bool,
) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor | None]:
    r"""Per-tensor coefficients of the update, shared by the local step and the sharded one.

    The step size is :math:`\alpha_t = \rho_t \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))` with parameter
    scaling, :math:`\rho_t` without, or ``lr`` for an absolute step; ``clip`` is
    :math:`\max(1, \mathrm{RMS}(U_t)/d)`. Returns ``(decay, scale, weight, minus)``: the weight-decay
    factor :math:`1 - \eta\lambda` (``None`` without decay); ``scale`` = :math:`\alpha_t/\text{clip}`
    (times ``-sign`` with momentum, where the sign of the gradient goes into the first moment); and,
    with momentum, the first moment's weights :math:`1-\beta_1` and :math:`-1`. A skipped tensor (a
    non-finite gradient, ``finite`` False) gets decay 1 and zero update.
    """
    if scale_parameter:
        alpha = rms_x.clamp_(min=eps2).mul_(rho)
    elif relative_step:
        alpha = rho
    else:
        alpha = torch.full_like(clip, lr)
    skipped = ~finite
    decay = weight = minus = None
    if weight_decay != 0:
        decay = torch.full_like(clip, 1.0 - lr * weight_decay).masked_fill_(skipped, 1.0)
    if beta1 is None:
        # X <- X - alpha U_hat (+ with maximize: the sign goes into addcmul's value);
        # zero for a skipped tensor.
        scale = (alpha / clip).masked_fill_(skipped, 0.0)
    else:
        # M_t = beta1 M + (1 - beta1) alpha U_hat, U_hat of the signed gradient; X <- X - M_t.
        scale = (alpha / clip).mul_(-sign).masked_fill_(skipped, 0.0)
        weight = torch.full_like(clip, 1.0 - beta1).masked_fill_(skipped, 0.0)
        minus = torch.full_like(clip, -1.0).masked_fill_(skipped, 0.0)
    return decay, scale, weight, minus


def _single_tensor_adafactor(
    params: list[Tensor],
    grads: list[Tensor],
    stats_r: list[Tensor],
    stats_c: list[Tensor | None],
    steps: list[Tensor],
    *,
    exp_avgs: list[Tensor | None],
    nonfinite_skips: list[Tensor],
    lr: float,
    beta2_decay: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    beta1: float | None,
    relative_step: bool,
    scale_parameter: bool,
    factor_dims: str,
    maximize: bool,
    stochastic_rounding: bool,
    generator: torch.Generator | None,
) -> None:
    """One step, one tensor at a time (the arguments are described in the module docstring)."""
    options = dict(
        lr=lr, beta2_decay=beta2_decay, eps1=eps1, eps2=eps2, d=d, weight_decay=weight_decay, beta1=beta1,
        relative_step=relative_step, scale_parameter=scale_parameter, maximize=maximize,
        stochastic_rounding=stochastic_rounding, generator=generator,
    )
    for i, p in enumerate(params):
        pair = _factor_pair(p.shape, factor_dims) if stats_c[i] is not None else None
        _step_stack(
            [p], [grads[i]], [stats_r[i]], [stats_c[i]], [exp_avgs[i]], [steps[i]], [nonfinite_skips[i]], pair,
            **options,
        )


def _foreach_adafactor(
    params: list[Tensor],
    grads: list[Tensor],
    stats_r: list[Tensor],
    stats_c: list[Tensor | None],
    steps: list[Tensor],
    *,
    exp_avgs: list[Tensor | None],
    nonfinite_skips: list[Tensor],
    lr: float,
    beta2_decay: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    beta1: float | None,
    relative_step: bool,
    scale_parameter: bool,
    factor_dims: str,
    maximize: bool,
    stochastic_rounding: bool,
    generator: torch.Generator | None,
) -> None:
    """One step, batched over the tensors of each shape, dtype and device (see the module docstring)."""
    options = dict(
        lr=lr, beta2_decay=beta2_decay, eps1=eps1, eps2=eps2, d=d, weight_decay=weight_decay, beta1=beta1,
        relative_step=relative_step, scale_parameter=scale_parameter, maximize=maximize,
        stochastic_rounding=stochastic_rounding, generator=generator,
    )
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        pair = _factor_pair(p.shape, factor_dims) if stats_c[i] is not None else None
        key = (p.device, p.dtype, tuple(p.shape), pair, beta1 is not None and exp_avgs[i] is not None)
        groups.setdefault(key, []).append(i)
    for (_, _, _, pair, _), idx in groups.items():
        _step_stack(
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [stats_r[i] for i in idx],
            [stats_c[i] for i in idx],
            [exp_avgs[i] for i in idx],
            [steps[i] for i in idx],
            [nonfinite_skips[i] for i in idx],
            pair,
            **options,
        )


def _step_stack(
    params: list[Tensor],
    grads: list[Tensor],
    stats_r: list[Tensor],
    stats_c: list[Tensor | None],
    exp_avgs: list[Tensor | None],
    steps: list[Tensor],
    skips: list[Tensor],
    pair: tuple[int, int] | None,
    *,
    lr: float,
    beta2_decay: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    beta1: float | None,
    relative_step: bool,
    scale_parameter: bool,
    maximize: bool,
    stochastic_rounding: bool,
    generator: torch.Generator | None,
) -> None:
    r"""One step of ``k`` tensors of one shape, dtype and device, as one stack.

    Every per-tensor scalar (:math:`t`, :math:`\rho_t`, :math:`\alpha_t`, the
    clipping divisor, the finite flag) is a length-``k`` tensor on the device;
    nothing is read back to the host.
    """
    k = len(params)
    p0 = params[0]
    shape = tuple(p0.shape)
    cd = _compute_dtype(p0.dtype)
    torch._foreach_add_(steps, 1.0)
    numel = p0.numel()
    if numel == 0:
        return  # nothing to update; the statistics of an empty tensor stay as they are

    # The schedules, in float64 whatever the parameter's dtype (torch computes
    # them as Python floats), then rounded once to the statistics dtype.
    if k == 1:
        t = steps[0].reshape(1).double()
        w = t.pow(beta2_decay)  # a one-element pow takes the scalar path, like each of _foreach_pow's
    else:
        t = torch.stack(steps).double()
        # Per tensor: a vectorised pow rounds differently from the scalar one,
        # and the two paths must agree bit for bit.
        w = torch.stack(torch._foreach_pow(list(t.unbind(0)), beta2_decay))
    beta2hat = torch.rsub(w, 1.0)  # w = 1 - beta2hat_t = t^tau
    # rho_t = min(lr, 1/sqrt(t)): on a CPU torch's rsqrt is a correctly rounded
    # sqrt and division, so this equals torch's Python-float min(lr, 1 / t**0.5)
    # (a GPU's rsqrt may differ from it by an ulp).
    rho: Tensor | float = t.rsqrt_().clamp_(max=lr) if relative_step else lr
    if cd != torch.float64:
        w, beta2hat = w.to(cd), beta2hat.to(cd)
        rho = rho.to(cd) if relative_step else rho
    owned = k > 1  # slabs of a stack of k > 1 tensors are our own copies
    sign = 1.0 if maximize else -1.0

    if pair is not None:
        i, j = pair
        I, J = i + 1, j + 1  # the same dims in a stack
        n, m = shape[i], shape[j]
        chunks = _chunks(shape, i, p0.device)
        # Pass 1 over G: row and column sums of G^2 (+ eps1 below).
        rows, col = [], None
        for r0, rc in chunks:
            sq = _gather(grads, i, r0, rc, cd).square_() if p0.dtype != cd else _gather(grads, i, r0, rc).square()
            rows.append(sq.sum(J))
            part = sq.sum(I)
            col = part if col is None else col.add_(part)
        row = (rows[0] if len(rows) == 1 else torch.cat(rows, I)).add_(m * eps1)
        col = col.add_(n * eps1)
        # NaN or inf anywhere in G, or an overflowing sum of squares, makes the
        # total non-finite: one flag per tensor, decided on the device.
        finite = row.sum(dim=tuple(range(1, row.ndim))) < math.inf  # False for inf and NaN
        view = (k,) + (1,) * (row.ndim - 1)  # a per-tensor vector against R and C
        f_, b_, w_ = finite.view(view), beta2hat.view(view), w.view(view)
        # For one tensor R and C are views of the state, updated in place.
        R, C = _stack(stats_r), _stack(stats_c)
        torch.where(f_, R * b_ + row * w_, R, out=R)
        torch.where(f_, C * b_ + col * w_, C, out=C)
        if k > 1:
            _unstack_into(stats_r, R)
            _unstack_into(stats_c, C)
        # 1/sqrt(V_ij) = sqrt(1^T R) / sqrt(R_i) * 1/sqrt(C_j). Each factor is
        # a normal number (R_i >= m eps1, C_j >= n eps1), never the possibly
        # subnormal R_i / 1^T R.
        rowf = R.rsqrt().mul_(R.sum(dim=I, keepdim=True).sqrt_())
        colf = C.rsqrt().unsqueeze(I)
        # Pass 2 over G: sum(U^2) = sum_i rowf_i^2 ||G_i. / sqrt(C)||^2, without
        # forming U. A skipped tensor may give NaN here; its scale is zeroed below.
        tn2 = [
            torch.linalg.vector_norm(_gather(grads, i, r0, rc, cd) * colf, dim=J).square_() for r0, rc in chunks
        ]
        tn2 = tn2[0] if len(tn2) == 1 else torch.cat(tn2, I)
        usq = tn2.mul_(rowf.square()).sum(dim=tuple(range(1, rowf.ndim)))
    else:
        chunks = None
        G = grads[0].reshape(1, -1) if k == 1 else torch.stack(grads).reshape(k, -1)
        finite = torch.linalg.vector_norm(G, dim=1, dtype=cd) < math.inf
        U = _masked(G, finite, cd, owned)
        V = _stack(stats_r).view(k, -1)
        g2 = U.square().add_(eps1)  # G^2 + eps1
        torch.where(finite[:, None], V * beta2hat[:, None] + g2 * w[:, None], V, out=V)
        if k > 1:
            _unstack_into(stats_r, V.view((k,) + shape))
        U.mul_(V.rsqrt())  # U = G / sqrt(V)
        usq = torch.linalg.vector_norm(U, dim=1).square_()
        U = U.view((k,) + shape)

    clip = usq.div_(numel).sqrt_().div_(d).clamp_(min=1.0)  # max(1, RMS(U)/d)
    rms_x = None
    if scale_parameter:
        norms = torch._foreach_norm(params, 2, dtype=None if p0.dtype == cd else cd)
        norm = norms[0].reshape(1) if k == 1 else torch.stack(norms)
        rms_x = norm.div_(math.sqrt(numel))
    decay, scale, weight, minus = _update_coefficients(
        clip, finite, rms_x, rho, lr=lr, eps2=eps2, weight_decay=weight_decay, beta1=beta1, sign=sign,
        scale_parameter=scale_parameter, relative_step=relative_step,
    )
    skipped = ~finite

    def apply(xs: list[Tensor], update: Tensor, factor: Tensor, moms: list[Tensor] | None) -> None:
        # xs <- decay * xs + update * factor, or through the momentum, in the
        # statistics dtype, then rounded once into a low-precision parameter.
        # (One tensor: the same in-place ops that torch._foreach_* runs per
        # tensor on a CPU, without building lists.)
        work = xs if p0.dtype == cd else [x.to(cd) for x in xs]
        if k == 1:
            x = work[0]
            if decay is not None:
                x.mul_(decay[0])
            if moms is None:
                x.addcmul_(update[0], factor[0], value=sign)
            else:
                moms[0].lerp_(update[0].mul_(factor[0]), weight[0])
                x.addcmul_(moms[0], minus[0])
        else:
            if decay is not None:
                torch._foreach_mul_(work, list(decay.unbind(0)))
            if moms is None:
                torch._foreach_addcmul_(work, list(update.unbind(0)), list(factor.unbind(0)), value=sign)
            else:
                update.mul_(factor)
                torch._foreach_lerp_(moms, list(update.unbind(0)), list(weight.unbind(0)))
                torch._foreach_addcmul_(work, moms, list(minus.unbind(0)))
        if work is not xs:
            if stochastic_rounding and p0.dtype == torch.bfloat16:
                for x, y in zip(xs, work):
                    x.copy_(_stochastic_round_to_bfloat16(y, generator))
            else:
                torch._foreach_copy_(xs, work)

    if chunks is None:
        apply(list(params), U, scale.view((k,) + (1,) * len(shape)), None if beta1 is None else list(exp_avgs))
    else:
        # Pass 3 over G (and X): the update, slab by slab.
        rowscale = rowf.mul_(scale.view(view)).unsqueeze(J)
        for r0, rc in chunks:
            update = _masked(_gather(grads, i, r0, rc), finite, cd, owned)
            update.mul_(rowscale if rc == n else rowscale.narrow(I, r0, rc))
            xs = params if rc == n else [p.narrow(i, r0, rc) for p in params]
            moms = None if beta1 is None else (exp_avgs if rc == n else [mm.narrow(i, r0, rc) for mm in exp_avgs])
            apply(list(xs), update, colf, moms)
    if k == 1:
        skips[0].add_(skipped[0])
    else:
        torch._foreach_add_(skips, list(skipped.unbind(0)))


# CPU steps work through a factored tensor in slabs of about this many
# entries, so that every temporary stays in cache and no full-size tensor is
# ever allocated (a fresh full-size allocation costs as much as several
# passes over memory: page faults). On a GPU the whole tensor is one slab.
_CPU_CHUNK = 1 << 17


def _chunks(shape: tuple[int, ...], i: int, device: torch.device) -> list[tuple[int, int]]:
    """``(start, length)`` slabs along dim ``i``; they depend on the shape only, never on k."""
    n = shape[i]
    if device.type != "cpu" or n == 0:
        return [(0, n)]
    per_row = math.prod(shape) // n
    rows = max(1, _CPU_CHUNK // max(per_row, 1))
    return [(r0, min(rows, n - r0)) for r0 in range(0, n, rows)]


def _gather(tensors: Sequence[Tensor], dim: int, start: int, length: int, dtype: torch.dtype | None = None) -> Tensor:
    """The stack of one slab of every tensor: a view for one tensor, a copy of the slab for several.

    With ``dtype``, the slab converted to it (always a copy).
    """
    if len(tensors) == 1:
        t = tensors[0]
        if length != t.shape[dim]:
            t = t.narrow(dim, start, length)
        t = t.unsqueeze(0)
        return t if dtype is None or t.dtype == dtype else t.to(dtype)
    out = torch.stack([t.narrow(dim, start, length) for t in tensors])
    return out if dtype is None else out.to(dtype)


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(list(tensors))


def _unstack_into(tensors: Sequence[Tensor], stack: Tensor) -> None:
    if len(tensors) == 1:
        tensors[0].copy_(stack[0])
    else:
        torch._foreach_copy_(list(tensors), list(stack.unbind(0)))


def _masked(G: Tensor, finite: Tensor, cd: torch.dtype, owned: bool) -> Tensor:
    """G in the statistics dtype with skipped tensors zeroed; never writes into p.grad."""
    mask = finite.view((-1,) + (1,) * (G.dim() - 1))
    if G.dtype != cd or owned:
        return G.to(cd).masked_fill_(~mask, 0.0)  # a copy (or our own stack)
    return torch.where(mask, G, 0.0)


def _stochastic_round_to_bfloat16(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """float32 -> float32 values exactly representable in bfloat16, rounded stochastically.

    Adding 16 uniform random bits below bfloat16's last mantissa bit and
    truncating rounds up with probability equal to the dropped fraction of an
    ulp, so the rounding is unbiased. Works on the bit pattern (sign and
    magnitude), so negative numbers round away from zero with the same
    probability. A value already in bfloat16 (low bits 0) is returned as is.
    """
    x = x.contiguous()
    noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, device=x.device, generator=generator)
    bits = x.view(torch.int32).add(noise).bitwise_and_(-65536)  # 0xFFFF0000
    return bits.view(torch.float32)


def _same_device(generator: torch.Generator | None, p: Tensor) -> bool:
    """True if ``generator`` (None: torch's default for p's device) can draw random numbers for ``p``."""
    if generator is None:
        return True
    g, d = generator.device, p.device
    return g.type == d.type and (g.index is None or d.index is None or g.index == d.index)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _factor_pair(shape: Sequence[int], factor_dims: str) -> tuple[int, int] | None:
    """The two factored dims ``(i, j)``, ``i < j``, or ``None`` for rank < 2."""
    rank = len(shape)
    if rank < 2:
        return None
    if factor_dims == "last_two":
        return rank - 2, rank - 1
    # Ties go to the later dim, as np.argsort orders them in optax.
    order = sorted(range(rank), key=lambda k: (shape[k], k))
    i, j = sorted(order[-2:])
    return i, j


def _state_shapes(shape: Sequence[int], group: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Expected shape of every statistic of a parameter of ``shape`` under ``group``'s options."""
    shape = tuple(shape)
    pair = _factor_pair(shape, group["factor_dims"])
    if pair is None:
        shapes = {"V": shape}
    else:
        i, j = pair
        shapes = {"R": shape[:j] + shape[j + 1:], "C": shape[:i] + shape[i + 1:]}
    if group["beta1"]:
        shapes["exp_avg"] = shape
    return shapes


def _check_state(state: dict[str, Any], p: Tensor, group: dict[str, Any], where: str, *, strict_device: bool) -> None:
    """The layout of one parameter's state (shapes, dtypes, devices; never values)."""
    expected = _state_shapes(p.shape, group)
    optional = {"exp_avg"}  # created at the next step if beta1 was switched on later
    known = set(expected) | {"step", "nonfinite_skips", "exp_avg"}
    for name in state:
        if name not in known:
            raise ValueError(
                f"{where} has an entry {name!r}, which optbook.Adafactor does not keep (it expects "
                f"{sorted(known)}); the state belongs to another optimizer or to factor_dims other than "
                f"{group['factor_dims']!r}."
            )
    cd = _compute_dtype(p.dtype)
    for name, shape in expected.items():
        value = state.get(name)
        if value is None and name in optional:
            continue
        if not torch.is_tensor(value) or tuple(value.shape) != shape or not value.is_floating_point():
            got = (tuple(value.shape), value.dtype) if torch.is_tensor(value) else value
            raise ValueError(
                f"{where} (shape {tuple(p.shape)}, {p.dtype}) has {name}={got!r} but needs a floating-point tensor "
                f"of shape {shape}; it belongs to a different model or factor_dims. Load the matching state_dict "
                "or start from a fresh optimizer."
            )
        if strict_device and (value.dtype != cd or value.device != p.device):
            raise ValueError(
                f"{where} has {name} as {value.dtype} on {value.device}; it must be {cd} on {p.device} "
                "(use load_state_dict, which converts it)."
            )
    if not strict_device:
        return  # a saved state dict's counters: _check_saved_state reads their values
    for name, dtypes in (("step", (torch.float32,)), ("nonfinite_skips", (torch.int64,))):
        value = state.get(name)
        ok = torch.is_tensor(value) and value.numel() == 1 and (not strict_device or value.dtype in dtypes)
        if ok and strict_device:
            ok = value.device == p.device and value.dim() == 0
        if not ok:
            raise ValueError(
                f"{where} has {name}={value!r}; it must be a one-element tensor"
                + (f" of dtype {dtypes[0]} on {p.device}" if strict_device else "")
                + "."
            )



# The options _check_hyperparameters reads, lr aside (checked on its own at each step).
_CHECKED_OPTIONS = (
    "beta2_decay", "eps", "d", "weight_decay", "beta1", "relative_step", "scale_parameter",
    "maximize", "stochastic_rounding", "foreach", "fused", "factor_dims", "capturable",
)
_IMMUTABLE_TYPES = (float, int, bool, type(None), str)
_STRIDED = torch.strided


def _immutable(value: Any) -> bool:
    """True if ``value`` cannot change while it stays the same object (so identity means equal value)."""
    if type(value) is tuple:
        return all(type(v) in _IMMUTABLE_TYPES for v in value)
    return type(value) in _IMMUTABLE_TYPES


def _check_record(context: tuple[Any, ...], p: Tensor, state: dict[str, Any] | None) -> tuple[Any, ...]:
    """What ``Adafactor._check_parameter`` read about ``p``, its gradient and its state, for ``_unchanged``."""
    entries = []
    for name, value in (state or {}).items():
        if torch.is_tensor(value):
            entries.append((name, weakref.ref(value), (value.shape, value.dtype, value.device)))
        else:
            entries.append((name, None, value))  # compared by identity (only a value the check does not read)
    return (context, p.shape, p.dtype, p.device, tuple(entries))


def _unchanged(
    record: tuple[Any, ...], context: tuple[Any, ...], p: Tensor, grad: Tensor, state: dict[str, Any] | None
) -> bool:
    """True if ``p``, ``grad`` (``p.grad``) and ``state`` look as ``record`` saw them when they passed the checks."""
    # dtypes and layouts are singletons (compared with ``is``); a strided gradient is never sparse.
    rec_context, shape, dtype, device, entries = record
    if not (
        rec_context == context
        and p.dtype is dtype
        and grad.dtype is dtype
        and grad.layout is _STRIDED
        and p.shape == shape
        and grad.shape == shape
        and p.device == device
        and grad.device == device
    ):
        return False
    if not state:
        return not entries
    if len(state) != len(entries):
        return False
    for (name, value), (rec_name, ref, meta) in zip(state.items(), entries):
        if name != rec_name:
            return False
        if ref is None:
            if value is not meta:
                return False
        elif not (ref() is value and value.dtype is meta[1] and value.shape == meta[0] and value.device == meta[2]):
            return False
    return True


def _check_saved_state(state: Any, p: Tensor, group: dict[str, Any], where: str) -> None:
    """One parameter's state in a state dict being loaded: layout, counters and values (``ValueError``).

    Unlike the per-step check this reads values (at load time only): a
    statistic that is not finite, or a second moment below zero, would turn
    the next step's ``rsqrt`` into NaN, so it is refused here, not found later.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{where} is {type(state).__name__}; it must be a dict of state entries.")
    _check_state(state, p, group, where, strict_device=False)
    if "step" not in state:
        raise ValueError(f"{where} has statistics but no 'step'; the state dict is corrupted or not Adafactor's.")
    step_count(state["step"], where)
    if "nonfinite_skips" in state:
        step_count(state["nonfinite_skips"], where + " (nonfinite_skips)")
    for name in ("R", "C", "V", "exp_avg"):
        value = state.get(name)
        if value is None:
            continue
        if not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"{where} has NaN or inf in {name}; the checkpoint is corrupted. Load an earlier one or start "
                "from a fresh optimizer."
            )
        if name != "exp_avg" and bool((value < 0).any()):
            raise ValueError(
                f"{where} has negative entries in {name}, a sum of squared gradients (>= 0); the checkpoint is "
                "corrupted. Load an earlier one or start from a fresh optimizer."
            )


_SIGNATURE_DEFAULTS: dict[str, Any] = {}


def _signature_defaults() -> dict[str, Any]:
    """The constructor's keyword defaults (what a missing option of an older state dict means)."""
    if not _SIGNATURE_DEFAULTS:
        _SIGNATURE_DEFAULTS.update(signature_defaults(Adafactor))
    return _SIGNATURE_DEFAULTS


# The per-parameter state keys of the other implementations' state dicts.
_TORCH_KEYS = {"row_var", "col_var", "variance"}
_TRANSFORMERS_KEYS = {"exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "RMS"}


def _from_foreign(state_dict: dict[str, Any]) -> dict[str, Any]:
    r"""A state dict of ``torch.optim.Adafactor`` or transformers' ``Adafactor`` in this class's layout.

    Returns ``state_dict`` itself when it is already in this layout, else a
    new dict (the argument is never modified). Recognised per param group:
    transformers by its options ``decay_rate`` and ``clip_threshold``, torch by
    ``eps[0] is None`` or by the state keys ``row_var``/``col_var``/``variance``.

    * torch keeps running *means*: ``row_var`` of shape ``s[:-1] + (1,)`` and
      ``col_var`` of shape ``s[:-2] + (1,) + s[-1:]``; here :math:`R` is the
      row sum ``row_var * m`` and :math:`C` the column sum ``col_var * n``
      (``V`` is ``variance`` as is). Its options map one to one, except that its
      default ``eps=(None, 1e-3)`` (a clamp) becomes ``eps=(1e-30, 1e-3)`` (the
      paper's addend); the two agree unless a gradient row is nearly zero.
    * transformers keeps means of :math:`G^2 + \epsilon_1`, ``exp_avg_sq_row``
      of shape ``s[:-1]`` and ``exp_avg_sq_col`` of shape ``s[:-2] + s[-1:]``;
      ``R = exp_avg_sq_row * m``, ``C = exp_avg_sq_col * n``. Its
      ``relative_step=True`` (``lr=None``) is ``lr=1e-2`` here (its fixed cap),
      ``relative_step=False`` keeps its ``lr``; ``decay_rate`` is
      ``beta2_decay``, ``clip_threshold`` is ``d``, ``beta1``,
      ``scale_parameter`` and ``eps`` carry over, and its ``exp_avg`` is the
      same momentum. ``warmup_init=True`` and a nonzero ``weight_decay``
      (transformers decays by :math:`\lambda\alpha_t`, this class by
      :math:`\gamma\lambda`) have no equivalent and raise ``ValueError``.
    """
    saved_state = state_dict["state"]
    groups, states, changed = [], dict(saved_state), False
    for gi, group in enumerate(state_dict["param_groups"]):
        keys = [k for k in group["params"] if isinstance(saved_state.get(k), dict)]
        names = set().union(*(saved_state[k].keys() for k in keys)) if keys else set()
        eps = group.get("eps")
        if "decay_rate" in group and "clip_threshold" in group:
            groups.append(_transformers_group(group, f"state_dict: param group {gi} (transformers Adafactor)"))
            convert = _transformers_state
        elif names & _TORCH_KEYS or (isinstance(eps, (tuple, list)) and len(eps) == 2 and eps[0] is None):
            new = dict(group)
            if isinstance(eps, (tuple, list)) and len(eps) == 2 and eps[0] is None:
                new["eps"] = (1e-30, eps[1])
            groups.append(new)
            convert = _torch_state
        else:
            groups.append(group)
            continue
        changed = True
        for k in keys:
            states[k] = convert(saved_state[k], f"state_dict: state {k!r}")
    return {**state_dict, "state": states, "param_groups": groups} if changed else state_dict


def _transformers_group(group: dict[str, Any], where: str) -> dict[str, Any]:
    if group.get("warmup_init"):
        raise ValueError(
            f"{where} has warmup_init=True (rho_t = min(1e-6 t, 1/sqrt(t))); optbook.Adafactor has no such "
            "option. Use a learning-rate scheduler on lr with relative_step=False, or load with warmup_init=False."
        )
    if group.get("weight_decay", 0.0):
        raise ValueError(
            f"{where} has weight_decay={group['weight_decay']}: transformers decays by weight_decay * alpha_t, "
            "optbook.Adafactor by lr * weight_decay (torch's convention), so the run cannot continue exactly. "
            "Continue it with transformers, or restart the decay with optbook.Adafactor."
        )
    relative = group.get("relative_step", True)
    lr = group.get("lr")
    if relative and lr is not None:
        raise ValueError(f"{where} has relative_step=True and lr={lr}; transformers itself refuses this pair.")
    if not relative and lr is None:
        raise ValueError(f"{where} has relative_step=False and lr=None; it needs an lr.")
    new = {k: v for k, v in group.items() if k not in ("decay_rate", "clip_threshold", "warmup_init")}
    new.update(
        lr=1e-2 if relative else lr,
        beta2_decay=group["decay_rate"],
        d=group["clip_threshold"],
        weight_decay=0.0,
        relative_step=relative,
    )
    return new


def _means_to_sums(state: dict[str, Any], row: str, col: str, full: str, where: str, keepdim: bool) -> dict[str, Any]:
    new = {k: v for k, v in state.items() if k not in (row, col, full, "RMS")}
    if row in state or col in state:
        r, c = state.get(row), state.get(col)
        rank = 2 if keepdim else 1
        if not (torch.is_tensor(r) and torch.is_tensor(c) and r.dim() >= rank and c.dim() >= rank):
            raise ValueError(f"{where} has {row}={r!r} and {col}={c!r}; it needs both, as tensors of rank >= {rank}.")
        wide = torch.promote_types(r.dtype, torch.float32) if r.is_floating_point() else torch.float32
        if keepdim:  # torch: (..., n, 1) and (..., 1, m)
            m, n = c.shape[-1], r.shape[-2]
            new["R"], new["C"] = r.to(wide).squeeze(-1) * m, c.to(wide).squeeze(-2) * n
        else:  # transformers: (..., n) and (..., m)
            m, n = c.shape[-1], r.shape[-1]
            new["R"], new["C"] = r.to(wide) * m, c.to(wide) * n
    if full in state:
        new["V"] = state[full]
    return new


def _torch_state(state: dict[str, Any], where: str) -> dict[str, Any]:
    return _means_to_sums(state, "row_var", "col_var", "variance", where, keepdim=True)


def _transformers_state(state: dict[str, Any], where: str) -> dict[str, Any]:
    return _means_to_sums(state, "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", where, keepdim=False)


def _cpu_kernel(group: dict[str, Any], params: list[Tensor]) -> bool:
    """True if this group steps through :mod:`optbook.kernels.cpu_fused`; where it cannot, warns once and says False."""
    fused = group["fused"]
    if fused is False or params[0].device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        return False  # numba cannot be traced: under torch.compile the eager path runs, and is compiled
    if fused is None and (not CPU_FUSED_DEFAULT or group["foreach"] is not None):
        return False  # not the default, or the group asks for an eager path by name
    if fused is None and any(p.dtype not in _FUSED_DTYPES for p in params):
        return False  # float64: the eager path, which is exact for it
    from optbook.kernels.cpu_fused import unsupported_reason

    why = unsupported_reason(params, [p.grad for p in params], group["factor_dims"])
    if why is not None and why not in _CPU_FUSED_WARNED:
        _CPU_FUSED_WARNED.add(why)
        warnings.warn(f"optbook.Adafactor: the fused CPU step cannot be used ({why}); using the eager path.",
                      RuntimeWarning, stacklevel=3)
    return why is None


def _check_fused_group(params: list[Tensor], where: str) -> None:
    """The fused kernels' requirements, checked before anything in the step is written."""
    for p in params:
        if p.dtype not in _FUSED_DTYPES:
            raise ValueError(
                f"{where} has fused=True, but a parameter has dtype {p.dtype}; the fused kernels take float32, "
                "bfloat16 and float16. Put it in a group with fused=False."
            )
    if all(p.device.type == "cpu" for p in params) and CPU_FUSED_BACKEND == "numba":
        return  # optbook.kernels.cpu_fused, or where it cannot take them the eager path (with a warning)
    try:
        from optbook.kernels.adafactor_fused import INTERPRET
    except ImportError as exc:
        raise ValueError(
            f"{where} has fused=True, but the fused kernels cannot be imported ({exc}); they need triton "
            "(the 'gpu' extra). Use fused=False."
        ) from None
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise ValueError(
            f"{where} has fused=True and parameters on {sorted(map(str, devices))}; the fused step needs one "
            "device per group. Split the group by device or use fused=False."
        )
    device = params[0].device
    if device.type != "cuda" and not INTERPRET:
        raise ValueError(
            f"{where} has fused=True on {device}; the fused kernels run on CUDA tensors (or on CPU "
            "tensors with TRITON_INTERPRET=1 set before triton is imported). Use fused=False here."
        )


def _is_real(value: Any) -> bool:
    if type(value) in (float, int):  # the common case, without the slow ABC check
        return True
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_foreign_options(group: dict[str, Any], where: str) -> None:
    for name, hint in _FOREIGN_OPTIONS.items():
        if name in group and not (name in _FALSE_IS_FINE and group[name] is False):
            raise ValueError(f"{where} sets {name!r}, which optbook.Adafactor does not read; use {hint}.")


def _check_hyperparameters(group: dict[str, Any], where: str) -> None:
    """Raise a ValueError/TypeError naming the first bad option of ``group``."""
    for name in ("lr", "beta2_decay", "d", "weight_decay"):
        value = group[name]
        if name == "lr" and torch.is_tensor(value):
            check_tensor_lr(value, where)  # one element, real: read with float() below and in step()
            continue
        if not _is_real(value):
            raise TypeError(f"{where}: {name} must be a real number, got {value!r} ({type(value).__name__}).")
    eps = group["eps"]
    if not (isinstance(eps, (tuple, list)) and len(eps) == 2):
        raise TypeError(f"{where}: eps must be a pair (eps1, eps2), got {eps!r}; the paper uses (1e-30, 1e-3).")
    for name, value in zip(("eps1", "eps2"), eps):
        if value is None:
            raise ValueError(
                f"{where}: eps[{0 if name == 'eps1' else 1}] ({name}) is None; torch.optim.Adafactor reads None as "
                "'clamp at finfo(dtype).eps', which damps small gradients. Pass eps=(1e-30, 1e-3), the paper's values."
            )
        if not _is_real(value):
            raise TypeError(f"{where}: eps must hold two real numbers, got {name}={value!r}.")
    for name in ("relative_step", "scale_parameter", "maximize", "stochastic_rounding", "capturable"):
        if not isinstance(group[name], bool):
            raise TypeError(f"{where}: {name} must be True or False, got {group[name]!r}.")
    for name in ("foreach", "fused"):
        if group[name] is not None and not isinstance(group[name], bool):
            raise TypeError(f"{where}: {name} must be True, False or None, got {group[name]!r}.")
    if group["factor_dims"] not in _FACTOR_DIMS:
        raise ValueError(
            f"{where}: factor_dims must be 'last_two' (torch, transformers) or 'two_largest' (optax, big_vision), "
            f"got {group['factor_dims']!r}."
        )
    beta1 = group["beta1"]
    if beta1 is not None and not _is_real(beta1):
        raise TypeError(f"{where}: beta1 must be a real number in [0, 1) or None, got {beta1!r}.")
    lr, tau, d, wd = (group[k] for k in ("lr", "beta2_decay", "d", "weight_decay"))
    lr = lr_value(lr)
    eps1, eps2 = eps
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(
            f"{where}: lr must be finite and >= 0, got {lr}; with relative_step=True it caps "
            "rho_t = min(lr, 1/sqrt(t)), and the paper uses 1e-2."
        )
    if not -1 <= tau < 0:
        hint = f" (a positive decay exponent c is beta2_decay=-c, here {-tau})" if 0 < tau <= 1 else ""
        raise ValueError(
            f"{where}: beta2_decay must lie in [-1, 0) so that beta2hat_t = 1 - t^beta2_decay tends to 1 without "
            f"freezing on the first gradients, got {tau}{hint}; the paper uses -0.8."
        )
    if not (math.isfinite(eps1) and eps1 >= _EPS1_MIN):
        raise ValueError(
            f"{where}: eps[0] (eps1) must be finite and >= {_EPS1_MIN:.3g} (the smallest normal float32), got {eps1}; "
            "it is added to G^2 so that a zero gradient never divides 0 by 0. The paper uses 1e-30."
        )
    if not (math.isfinite(eps2) and eps2 > 0):
        raise ValueError(
            f"{where}: eps[1] (eps2) must be finite and > 0, got {eps2}; without it a parameter that starts at "
            "zero never moves. The paper uses 1e-3."
        )
    if not d > 0:
        raise ValueError(
            f"{where}: d (clipping threshold) must be > 0, got {d}; the paper uses 1, and d=float('inf') "
            "turns clipping off."
        )
    if not (math.isfinite(wd) and wd >= 0):
        raise ValueError(f"{where}: weight_decay must be finite and >= 0, got {wd}; 0 turns it off.")
    if not lr * wd < 1:
        raise ValueError(
            f"{where}: lr * weight_decay must be < 1, got {lr} * {wd} = {lr * wd}; the decay factor "
            "1 - lr * weight_decay would zero or flip every parameter."
        )
    if beta1 is not None and not (math.isfinite(beta1) and 0 <= beta1 < 1):
        raise ValueError(f"{where}: beta1 must lie in [0, 1) or be None (no momentum), got {beta1}.")
    if group["fused"]:
        unsupported = [
            name
            for name, bad in (
                ("foreach=True", group["foreach"] is True),
                ("factor_dims='two_largest'", group["factor_dims"] != "last_two"),
            )
            if bad
        ]
        if unsupported:
            raise ValueError(
                f"{where}: fused=True does not support {', '.join(unsupported)}; the fused kernels compute the "
                "paper's iteration (with optional momentum) and factor the last two dims. "
                "Use fused=None for these options."
            )
