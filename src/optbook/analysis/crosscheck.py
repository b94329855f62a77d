r"""Run the installed Adafactor implementations side by side on the same numbers.

Every function here drives one real, installed upstream optimizer (nothing is
re-typed from upstream code) or optbook's own, on the same starting
parameters and the same sequence of gradients, and returns the whole
trajectory in float64. Because the gradients are given rather than computed
from the parameters, two runs differ only through their update rules, and a
difference can be attributed to one convention at a time.

The ``RECIPES`` configure each implementation so that it computes the paper's
algorithm with its recommended hyperparameters (Shazeer & Stern 2018, Alg. 4
and 5; :math:`\rho_t=\min(10^{-2},t^{-1/2})`, :math:`\hat\beta_{2t}=1-t^{-0.8}`,
:math:`\epsilon_1=10^{-30}`, :math:`\epsilon_2=10^{-3}`, :math:`d=1`, no
momentum, no weight decay), as far as its options allow:

* ``torch.optim.Adafactor``: its defaults. Its :math:`\epsilon_1` is a clamp,
  not an addend; the two agree for gradients of ordinary size.
* ``transformers.optimization.Adafactor``: its defaults (``lr=None`` means
  the relative step).
* ``pytorch_optimizer.AdaFactor``: momentum off (``betas[0]=None``), the
  :math:`\hat\beta_{2t}` cap ``betas[1]`` pushed to just below 1 so that it never
  binds, and the per-parameter (non-foreach) path.
* ``optax.adafactor``: :math:`\rho_t` passed as a schedule of the 0-based
  step count, factoring for every matrix (``min_dim_size_to_factor=1``; the
  default 128 leaves small matrices unfactored), in float64 inside
  ``jax.enable_x64(True)``. optax factors the *two largest* dims, so for tensors of
  rank > 2 it matches :func:`run_reference` with ``factor_dims="two_largest"``.

A gradient entry ``None`` means "this parameter has no gradient at this step",
which is how the step-counter conventions are compared.

The module also holds :data:`CONVENTIONS`, the comparison table of the public
implementations (facts from reading their code; only the installed ones are
executed by the book).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optbook.notation import symbol
from optbook.reference import adafactor as af

__all__ = [
    "Run",
    "Convention",
    "CONVENTIONS",
    "RECIPES",
    "conventions_table",
    "random_problem",
    "run_reference",
    "run_torch_optimizer",
    "run_torch",
    "run_transformers",
    "run_pytorch_optimizer",
    "run_optax",
    "run_optbook",
    "float32_decay",
    "max_relative_difference",
    "displacement_rms",
    "factored_dims",
    "optax_state_numbers",
    "PARITY_BEHAVIOURS",
    "behaviour_parity_table",
    "migration_difference",
]
__helpers__ = (
    "conventions_table",
    "random_problem",
    "run_reference",
    "run_torch_optimizer",
    "run_torch",
    "run_transformers",
    "run_pytorch_optimizer",
    "run_optax",
    "run_optbook",
    "displacement_rms",
    "factored_dims",
    "optax_state_numbers",
    "behaviour_parity_table",
    "migration_difference",
)

Params = Sequence[np.ndarray]
Grads = Sequence[Sequence[np.ndarray | None]]


@dataclass
class Run:
    """One implementation's trajectory.

    ``params[i]`` has shape ``(steps + 1, *shape_i)``: ``params[i][0]`` is the
    start and ``params[i][k]`` the value after step ``k``, in float64 (complex128
    for complex parameters) whatever dtype the implementation worked in.
    ``optimizer`` is the torch optimizer (or the final optax state) for
    inspecting state afterwards.
    """

    name: str
    params: list[np.ndarray]
    optimizer: Any = None
    extra: dict = field(default_factory=dict)

    def final(self) -> list[np.ndarray]:
        """The parameters after the last step."""
        return [p[-1] for p in self.params]


# --- the problems ----------------------------------------------------------------------------


def random_problem(
    shapes: Sequence[tuple[int, ...]], steps: int, *, seed: int = 0, grad_rms: float = 1.0, param_rms: float = 1.0
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Gaussian starting parameters and ``steps`` Gaussian gradients for each shape.

    Returns ``(params0, grads)`` with ``grads[k][i]`` the gradient of tensor ``i``
    at step ``k + 1``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    rng = np.random.default_rng(seed)
    params0 = [param_rms * rng.standard_normal(s) for s in shapes]
    grads = [[grad_rms * rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return params0, grads


# --- which dims are factored -----------------------------------------------------------------


def factored_dims(shape: Sequence[int], rule: str | None = "last_two", min_size: int = 0) -> tuple[int, int] | None:
    """The two dims whose second moment is factored, or ``None`` for a full second moment.

    ``rule`` is ``"last_two"`` (torch, transformers, fairseq, Keras, T2T,
    pytorch_optimizer, the book's reference), ``"two_largest"`` (optax, flax,
    mesh-TF, big_vision, timm's ``AdafactorBigVision``; ties go to the later
    dim, as ``np.argsort`` orders them) or ``None`` (never factor). A tensor of
    rank < 2 is never factored, and neither is one whose smaller factored dim
    is below ``min_size``.
    """
    shape = tuple(int(s) for s in shape)
    if rule is None or len(shape) < 2:
        return None
    if rule == "last_two":
        dims = (len(shape) - 2, len(shape) - 1)
    elif rule == "two_largest":
        order = np.argsort(shape, kind="stable")
        dims = tuple(sorted((int(order[-2]), int(order[-1]))))
    else:
        raise ValueError(f"rule must be 'last_two', 'two_largest' or None, got {rule!r}.")
    if min(shape[dims[0]], shape[dims[1]]) < min_size:
        return None
    return dims  # type: ignore[return-value]


# --- the book's NumPy reference --------------------------------------------------------------


@dataclass
class _RefState:
    t: int = 0
    v: np.ndarray | None = None
    r: np.ndarray | None = None
    c: np.ndarray | None = None


def _reference_step(x, g, state, hp, dims, beta2hat_fn):
    """One reference iteration, factoring ``dims`` (moved to the end) or none."""
    t = state.t + 1
    rho = af.relative_step_size(t, hp.rho_cap)
    alpha = af.step_size(x, rho, hp.eps2)
    beta2hat = beta2hat_fn(t)
    if dims is None:
        v = af.second_moment_vector(state.v, g, beta2hat, hp.eps1)
        u = af.normalized_update(g, v)
        state.v = v
    else:
        # RMS and clipping are over the whole tensor, so permuting axes changes nothing else.
        gp = np.moveaxis(g, dims, (-2, -1))
        r = af.row_statistic(state.r, gp, beta2hat, hp.eps1)
        c = af.column_statistic(state.c, gp, beta2hat, hp.eps1)
        u = np.moveaxis(af.normalized_update(gp, af.factored_second_moment(r, c)), (-2, -1), dims)
        state.r, state.c = r, c
    state.t = t
    return af.parameter_update(x, alpha, af.clipped_update(u, hp.d))


def run_reference(
    params0: Params,
    grads: Grads,
    *,
    hp: af.AdafactorHyperparameters | None = None,
    factor_dims: str | None = "last_two",
    beta2hat: Callable[[int], float] | None = None,
) -> Run:
    """The paper's algorithm, composed from :mod:`optbook.reference.adafactor`, in float64.

    ``factor_dims`` is a :func:`factored_dims` rule. ``beta2hat(t)`` replaces
    the schedule :math:`\\hat\\beta_{2t} = 1 - t^{-0.8}` when given (used to show
    what a differently rounded schedule does). Each tensor keeps its own step
    counter, which does not advance on a step where its gradient is ``None``.
    """
    hp = hp or af.AdafactorHyperparameters()
    beta2hat = beta2hat or (lambda t: af.second_moment_decay(t, hp.decay_exponent))
    xs = [np.array(p, dtype=float, copy=True) for p in params0]
    states = [_RefState() for _ in xs]
    dims = [factored_dims(x.shape, factor_dims) for x in xs]
    traj = [[x.copy()] for x in xs]
    for step_grads in grads:
        _check_step(step_grads, xs)
        for i, g in enumerate(step_grads):
            if g is not None:
                xs[i] = _reference_step(xs[i], np.asarray(g, dtype=float), states[i], hp, dims[i], beta2hat)
            traj[i].append(xs[i].copy())
    return Run("optbook reference", [np.stack(t) for t in traj], extra={"states": states})


def _check_step(step_grads, params) -> None:
    if len(step_grads) != len(params):
        raise ValueError(f"each step needs one gradient per parameter ({len(params)}), got {len(step_grads)}.")
    for g, p in zip(step_grads, params):
        if g is not None and np.shape(g) != np.shape(p):
            raise ValueError(f"a gradient has shape {np.shape(g)} but its parameter has shape {np.shape(p)}.")


# --- torch optimizers ------------------------------------------------------------------------


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.to(torch.complex128) if t.is_complex() else t.to(torch.float64)).numpy().copy()


def run_torch_optimizer(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    params0: Params,
    grads: Grads,
    *,
    dtype: torch.dtype = torch.float64,
    name: str = "",
) -> Run:
    """Run any ``torch.optim.Optimizer`` built by ``make_optimizer(params)`` on the given gradients.

    Parameters and gradients are cast to ``dtype`` (float64 by default) before
    the run; the trajectory is returned in float64.
    """
    ps = [torch.tensor(np.asarray(p), dtype=dtype).requires_grad_() for p in params0]
    opt = make_optimizer(ps)
    traj = [[_to_numpy(p)] for p in ps]
    for step_grads in grads:
        _check_step(step_grads, ps)
        for p, g in zip(ps, step_grads):
            p.grad = None if g is None else torch.tensor(np.asarray(g), dtype=dtype)
        opt.step()
        for i, p in enumerate(ps):
            traj[i].append(_to_numpy(p))
    return Run(name or type(opt).__module__ + "." + type(opt).__name__, [np.stack(t) for t in traj], opt)


RECIPES: dict[str, dict] = {
    "torch": dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0),
    "transformers": dict(
        lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None, weight_decay=0.0,
        scale_parameter=True, relative_step=True, warmup_init=False,
    ),
    "pytorch_optimizer": dict(
        betas=(None, 1.0 - 1e-15), decay_rate=-0.8, clip_threshold=1.0, eps1=1e-30, eps2=1e-3,
        relative_step=True, scale_parameter=True, weight_decay=0.0, foreach=False,
    ),
    "optax": dict(
        min_dim_size_to_factor=1, decay_rate=0.8, decay_offset=0, multiply_by_parameter_scale=True,
        clipping_threshold=1.0, momentum=None, eps=1e-30, factored=True,
    ),
}
"""Keyword arguments that make each implementation compute the paper's algorithm (see the module docstring).

optax's ``learning_rate`` is added by :func:`run_optax` because it is a function."""


def run_torch(params0: Params, grads: Grads, *, dtype: torch.dtype = torch.float64, **overrides) -> Run:
    """``torch.optim.Adafactor`` with ``RECIPES["torch"]`` updated by ``overrides``."""
    kwargs = {**RECIPES["torch"], **overrides}
    return run_torch_optimizer(lambda ps: torch.optim.Adafactor(ps, **kwargs), params0, grads, dtype=dtype,
                               name="torch.optim.Adafactor")


def run_transformers(params0: Params, grads: Grads, *, dtype: torch.dtype = torch.float64, **overrides) -> Run:
    """``transformers.optimization.Adafactor`` with ``RECIPES["transformers"]`` updated by ``overrides``."""
    from transformers.optimization import Adafactor as HFAdafactor

    kwargs = {**RECIPES["transformers"], **overrides}
    return run_torch_optimizer(lambda ps: HFAdafactor(ps, **kwargs), params0, grads, dtype=dtype,
                               name="transformers Adafactor")


def run_pytorch_optimizer(params0: Params, grads: Grads, *, dtype: torch.dtype = torch.float64, **overrides) -> Run:
    """``pytorch_optimizer.AdaFactor`` with ``RECIPES["pytorch_optimizer"]`` updated by ``overrides``.

    Pass ``recipe=False`` to start from the package's own defaults instead.
    """
    from pytorch_optimizer import AdaFactor

    base = RECIPES["pytorch_optimizer"] if overrides.pop("recipe", True) else {}
    kwargs = {**base, **overrides}
    return run_torch_optimizer(lambda ps: AdaFactor(ps, **kwargs), params0, grads, dtype=dtype,
                               name="pytorch_optimizer AdaFactor")


def run_optbook(
    params0: Params, grads: Grads, *, dtype: torch.dtype = torch.float64, seed: int | None = None, **kwargs
) -> Run:
    """``optbook.Adafactor(**kwargs)`` (its own defaults are the paper's algorithm).

    ``seed`` gives the optimizer its own ``torch.Generator`` for stochastic
    rounding, so that the run does not depend on (or disturb) torch's global
    random state.
    """
    from optbook.optim import Adafactor

    def make(ps):
        opt = Adafactor(ps, **kwargs)
        if seed is not None:
            opt.generator = torch.Generator().manual_seed(seed)
        return opt

    return run_torch_optimizer(make, params0, grads, dtype=dtype, name="optbook.Adafactor")


# --- optax -----------------------------------------------------------------------------------


def _jax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    return jax


def run_optax(params0: Params, grads: Grads, *, x64: bool = True, rho_cap: float = 1e-2, **overrides) -> Run:
    """``optax.adafactor`` on CPU JAX with ``RECIPES["optax"]`` updated by ``overrides``.

    Unless ``learning_rate`` is overridden it is the relative step
    :math:`\\rho_t = \\min(\\text{rho\\_cap}, 1/\\sqrt{t})` as a schedule of optax's
    0-based count (hence ``count + 1``). With ``x64`` the run happens inside
    ``jax.enable_x64(True)``, so JAX computes in float64 without switching the
    whole process to it. Gradients must all be present: optax has one global
    step count.
    """
    jax = _jax()
    import jax.numpy as jnp
    import optax

    kwargs = {**RECIPES["optax"], **overrides}
    kwargs.setdefault("learning_rate", lambda count: jnp.minimum(rho_cap, (count + 1.0) ** -0.5))
    tx = optax.adafactor(**kwargs)
    with jax.enable_x64(x64):
        params = tuple(jnp.asarray(p) for p in params0)
        state = tx.init(params)
        update = jax.jit(tx.update)  # one compilation instead of one per primitive: seconds saved per call
        traj = [[np.array(p, dtype=np.result_type(p.dtype, np.float64))] for p in params]
        for step_grads in grads:
            _check_step(step_grads, params)
            if any(g is None for g in step_grads):
                raise ValueError("optax has one global step count: every parameter needs a gradient at every step.")
            updates, state = update(tuple(jnp.asarray(g, dtype=p.dtype) for g, p in zip(step_grads, params)),
                                    state, params)
            params = optax.apply_updates(params, updates)
            for i, p in enumerate(params):
                traj[i].append(np.array(p, dtype=np.result_type(p.dtype, np.float64)))
    return Run("optax.adafactor", [np.stack(t) for t in traj], state)


@symbol(r"\mathrm{fl}_{32}(\hat\beta_{2t})", "second-moment decay evaluated in float32")
def float32_decay(t: int, exponent: float = 0.8) -> float:
    r""":math:`\hat\beta_{2t} = 1 - t^{-c}` computed by the reference formula with float32 operands.

    This is the value an implementation gets when it evaluates the schedule in
    float32 even though its statistics are float64 (optax does, with
    ``jax_enable_x64``). Passing it as ``beta2hat`` to :func:`run_reference`
    isolates that one rounding.
    """
    return float(af.second_moment_decay(np.float32(t), np.float32(exponent)))


# --- measurements ----------------------------------------------------------------------------


@symbol(r"\max|X^{(a)} - X^{(b)}| / \max|X^{(b)}|", "relative difference of two trajectories")
def max_relative_difference(a: Run | Sequence[np.ndarray], b: Run | Sequence[np.ndarray]) -> float:
    r"""Largest absolute difference over all tensors and steps, divided by the largest :math:`|X^{(b)}|`.

    NaN anywhere gives NaN, so a run that breaks down is never reported as close.
    """
    pa = a.params if isinstance(a, Run) else list(a)
    pb = b.params if isinstance(b, Run) else list(b)
    if len(pa) != len(pb) or any(x.shape != y.shape for x, y in zip(pa, pb)):
        raise ValueError("the two runs must have the same tensors, steps and shapes.")
    diff = max((float(np.max(np.abs(x - y))) if x.size else 0.0) for x, y in zip(pa, pb))
    scale = max((float(np.max(np.abs(y))) if y.size else 0.0) for y in pb)
    if np.isnan(diff) or any(np.isnan(x).any() for x in pa):
        return float("nan")
    return diff / scale if scale > 0 else diff


def displacement_rms(run: Run, i: int = 0, step: int = -1) -> float:
    """RMS of how far tensor ``i`` has moved from its start by ``step`` (NaN if it became NaN)."""
    p = run.params[i]
    return af.rms(p[step] - p[0])


def optax_state_numbers(state) -> int:
    """Number of elements in an optax state's arrays, not counting scalars and the size-1 placeholders.

    The counterpart, for optax, of :func:`optbook.analysis.memory.optimizer_state_numbers`.

    optax keeps a ``(1,)``-shaped dummy for the statistics a tensor does not use
    (``v`` for a factored tensor, ``v_row``/``v_col`` for an unfactored one).
    """
    jax = _jax()
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(state) if getattr(leaf, "ndim", 0) > 0
               and leaf.size > 1)


# --- the table of conventions ----------------------------------------------------------------


@dataclass(frozen=True)
class Convention:
    """How one public implementation computes Adafactor (facts from reading its code)."""

    implementation: str
    executed_here: str
    eps1: str
    factored_dims: str
    min_size: str
    lr: str
    weight_decay: str
    step_counter: str
    state_dtype: str
    momentum_default: str


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "paper (Shazeer & Stern 2018)", "optbook.reference", "added to G² before averaging", "2-D only",
        "none", "ρ_t = min(1e-2, t^-½) × max(ε2, RMS(X))", "none", "t per parameter", "—", "none",
    ),
    Convention(
        "torch.optim.Adafactor", "yes", "not added: clamp of mean(R) and of V̂ (√V̂ ≥ ε1); default finfo(dtype).eps",
        "last two", "none", "lr is the cap of ρ_t; RMS scaling always on", "p ← (1 − lr·λ) p before the update",
        "per parameter", "parameter dtype", "none (no option)",
    ),
    Convention(
        "transformers Adafactor", "yes", "added to G²", "last two", "none",
        "relative (lr=None) or external lr; RMS scaling also scales an external lr", "p ← p − λ·α_t·p",
        "per parameter", "float32 for 16-bit params; round to nearest on copy-back", "none (beta1 option)",
    ),
    Convention(
        "fairseq Adafactor", "no (not installed)", "added to G²", "last two", "none",
        "as transformers; writes group['lr'] (compounds with an external lr)", "p ← p − λ·α_t·p",
        "per parameter", "float32 for 16-bit params", "none (beta1 option)",
    ),
    Convention(
        "timm Adafactor", "no (needs torchvision, no CPU build)", "added to G²",
        "dims (0,1) for rank > 2 if both > 16, else last two", "> 16 (strict)",
        "relative if lr is falsy; RMS scaling only then", "p ← p − λ·α_t·p", "per parameter",
        "float32 for 16-bit params", "none (betas option)",
    ),
    Convention(
        "timm AdafactorBigVision", "no (needs torchvision)", "added to G²", "two largest", "≥ 16",
        "external lr = 1.0, no ρ_t, no RMS scaling", "p ← (1 − lr·λ) p", "per parameter", "gradient dtype",
        "0.9, kept in bf16",
    ),
    Convention(
        "optax.adafactor", "yes (CPU JAX)", "added to |G|²", "two largest", "≥ 128",
        "learning_rate=None means no lr; ρ_t must be a schedule", "p ← p − λ p − update (not lr-scaled)",
        "one global count", "parameter dtype", "none (momentum option)",
    ),
    Convention(
        "big_vision scale_by_adafactor", "no (JAX project, not packaged)", "added to G²", "two largest", "≥ 32",
        "external schedule, no RMS scaling; β̂2t capped at 0.999", "λ·schedule·p, not × base lr", "global",
        "parameter dtype", "0.9, kept in bf16",
    ),
    Convention(
        "tensor2tensor (original)", "no (TF 1, archived)", "added to G²", "last two (2018: 2-D only)", "none",
        "min(1e-2, (step+1)^-½) × RMS scale (× 0.05 without it)", "none", "global step",
        "float32 slots; bf16 params stochastically rounded", "0 (beta1 option)",
    ),
    Convention(
        "Keras 3 Adafactor", "no (not installed)", "added to G²", "last two (keeps a full v anyway)", "none",
        "ρ_t = min(lr, t^-½) with lr = 1e-3; RMS scaling always on", "p ← (1 − λ·lr) p before the update",
        "global iterations", "variable dtype", "none",
    ),
    Convention(
        "pytorch_optimizer AdaFactor 4.1", "yes", "added to G²", "last two", "none",
        "relative by default (then lr is ignored); RMS scaling also on external lr",
        "p ← (1 − λ·α_t) p (weight_decouple)", "per param group", "gradient dtype; momentum bf16",
        "0.9 (betas=(0.9, 0.999))",
    ),
)
"""The rows of the chapter's comparison table, read from the code of each project as read for
the book's notes on Adafactor implementations (torch 2.13, transformers, fairseq, timm 1.0,
optax, big_vision, tensor2tensor, Keras 3, pytorch_optimizer)."""


def conventions_table():
    """:data:`CONVENTIONS` as a pandas DataFrame, one row per implementation."""
    import pandas as pd

    from dataclasses import asdict

    return pd.DataFrame([asdict(c) for c in CONVENTIONS]).set_index("implementation")


# --- which torch-ecosystem behaviours each implementation has ------------------------------


class _NoOption(Exception):
    """The implementation has no such option (its constructor refuses the keyword)."""


def _parity_implementations() -> dict[str, Callable[..., torch.optim.Optimizer]]:
    """Constructors ``make(params, **options)``, each with its own defaults (transformers: ``lr=None``)."""
    from pytorch_optimizer import AdaFactor
    from transformers.optimization import Adafactor as HFAdafactor

    from optbook.optim import Adafactor

    def transformers(params, **kw):
        if "lr" in kw:  # an external learning rate needs relative_step=False
            kw = {"relative_step": False, **kw}
        return HFAdafactor(params, **{"lr": None, **kw})

    return {
        "torch.optim.Adafactor": lambda params, **kw: torch.optim.Adafactor(params, **kw),
        "transformers Adafactor": transformers,
        "pytorch_optimizer AdaFactor": lambda params, **kw: AdaFactor(params, **kw),
        "optbook.Adafactor": lambda params, **kw: Adafactor(params, **kw),
    }


def _build(make, params, **kw):
    try:
        return make(params, **kw)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise _NoOption(str(exc)) from None
        raise


def _parity_params(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in ((6, 4), (5,))]


def _parity_grads(steps, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=dtype) for s in ((6, 4), (5,))] for _ in range(steps)]


def _parity_run(opt, params, grads, sign=1.0):
    for step in grads:
        for p, gr in zip(params, step):
            p.grad = sign * gr
        opt.step()


def _same(a, b) -> bool:
    return all(torch.equal(x.detach(), y.detach()) for x, y in zip(a, b))


def _close(a, b, rel=1e-6) -> bool:
    return all(
        bool(((x.detach() - y.detach()).abs() <= rel * x.detach().abs().max() + 1e-30).all()) for x, y in zip(a, b)
    )


def _b_state_dict_weights_only(make):
    import io

    ps = _parity_params()
    opt = _build(make, ps)
    grads = _parity_grads(6)
    _parity_run(opt, ps, grads[:3])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = _build(make, qs)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    _parity_run(opt, ps, grads[3:])
    _parity_run(opt2, qs, grads[3:])
    return _same(ps, qs)


def _b_older_state_dict(make):
    ps = _parity_params()
    opt = _build(make, ps)
    _parity_run(opt, ps, _parity_grads(2))
    sd = opt.state_dict()
    for group in sd["param_groups"]:
        for flag in ("foreach", "maximize", "differentiable", "capturable", "fused"):
            group.pop(flag, None)
    opt.load_state_dict(sd)
    _parity_run(opt, ps, _parity_grads(1, seed=2))
    return all(bool(torch.isfinite(p).all()) for p in ps)


def _b_copy(how):
    def behaviour(make):
        import copy
        import pickle

        ps = _parity_params()
        opt = _build(make, ps)
        grads = _parity_grads(5)
        _parity_run(opt, ps, grads[:2])
        qs, opt2 = copy.deepcopy((ps, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((ps, opt)))
        _parity_run(opt, ps, grads[2:])
        _parity_run(opt2, qs, grads[2:])
        return _same(ps, qs)

    return behaviour


def _b_foreach(make):
    runs = []
    for foreach in (False, True):
        ps = _parity_params(torch.float64)
        opt = _build(make, ps, foreach=foreach)
        _parity_run(opt, ps, _parity_grads(4, torch.float64))
        runs.append(ps)
    return _same(*runs)


def _b_maximize(make):
    ps, qs = _parity_params(torch.float64), _parity_params(torch.float64)
    up, down = _build(make, ps, maximize=True), _build(make, qs)
    grads = _parity_grads(4, torch.float64)
    _parity_run(up, ps, grads)
    _parity_run(down, qs, grads, sign=-1.0)
    return _same(ps, qs)


def _b_tensor_lr(make):
    runs = []
    for lr in (5e-3, torch.tensor(5e-3, dtype=torch.float64)):
        ps = _parity_params()
        opt = _build(make, ps, lr=lr)
        _parity_run(opt, ps, _parity_grads(3))
        runs.append(ps)
    return _close(*runs)


def _b_scheduler(make):
    """A StepLR halving lr changes the next update (lr is read at each step)."""
    runs = []
    for gamma in (1.0, 0.5):
        ps = _parity_params()
        opt = _build(make, ps)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=gamma)
        for step in _parity_grads(3):
            for p, gr in zip(ps, step):
                p.grad = gr
            opt.step()
            scheduler.step()
        runs.append(ps)
    return not _close(*runs, rel=1e-9)


def _b_refuses(kind):
    def behaviour(make):
        if kind == "complex":
            p = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.complex64))
            p.grad = torch.randn_like(p)
        else:
            p = torch.nn.Parameter(torch.randn(4))
            p.grad = torch.randn(4).to_sparse()
        opt = _build(make, [p])
        try:
            opt.step()
        except RuntimeError:
            return True
        except Exception:  # noqa: BLE001 - another type: code written against torch misses it
            return False
        return False

    return behaviour


def _b_nonfinite(make):
    ps = _parity_params()
    opt = _build(make, ps)
    grads = _parity_grads(2)
    grads[1][0][2, 1] = float("nan")
    _parity_run(opt, ps, grads)
    return all(bool(torch.isfinite(p).all()) for p in ps)


def _b_odd_shapes(make):
    ps = [torch.nn.Parameter(torch.tensor(1.5)), torch.nn.Parameter(torch.zeros(0, 3)),
          torch.nn.Parameter(torch.ones(3, 2))]
    frozen = torch.nn.Parameter(torch.ones(2, 2))
    opt = _build(make, ps + [frozen])
    for _ in range(2):
        ps[0].grad, ps[1].grad, ps[2].grad = torch.tensor(0.3), torch.zeros(0, 3), torch.full((3, 2), 0.5)
        opt.step()
    return bool(torch.isfinite(ps[0])) and ps[0].item() != 1.5 and frozen not in opt.state


def _b_from_torch(make):
    import copy

    ps = _parity_params()
    original = torch.optim.Adafactor(ps)
    grads = _parity_grads(15)
    _parity_run(original, ps, grads[:5])
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt = _build(make, qs)
    opt.load_state_dict(copy.deepcopy(original.state_dict()))
    _parity_run(original, ps, grads[5:])
    _parity_run(opt, qs, grads[5:])
    return _close(ps, qs)


def _b_load_copies(make):
    """Loading ``other.state_dict()`` (no deepcopy) must not tie the two optimizers' state together."""
    ps = _parity_params()
    opt = _build(make, ps)
    grads = _parity_grads(6)
    _parity_run(opt, ps, grads[:3])
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = _build(make, qs)
    opt2.load_state_dict(opt.state_dict())
    _parity_run(opt, ps, grads[3:])
    _parity_run(opt2, qs, grads[3:])
    return _same(ps, qs)


PARITY_BEHAVIOURS: dict[str, Callable] = {
    "state_dict round trip (torch.save, weights_only=True), bit-exact": _b_state_dict_weights_only,
    "loads a state dict without foreach, maximize, differentiable, capturable, fused": _b_older_state_dict,
    "copy.deepcopy continues bit-exactly": _b_copy("deepcopy"),
    "pickle continues bit-exactly": _b_copy("pickle"),
    "foreach=True equals the for-loop bit for bit": _b_foreach,
    "maximize=True equals minimising -G": _b_maximize,
    "Tensor lr (equals the float lr)": _b_tensor_lr,
    "an lr scheduler changes the step": _b_scheduler,
    "complex parameter raises RuntimeError (torch's type)": _b_refuses("complex"),
    "sparse gradient raises RuntimeError (torch's type)": _b_refuses("sparse"),
    "a NaN gradient leaves the parameters finite": _b_nonfinite,
    "0-dim, zero-size and grad-less parameters": _b_odd_shapes,
    "load_state_dict(other.state_dict()) does not share state": _b_load_copies,
    "continues from torch.optim.Adafactor's state dict (1e-6)": _b_from_torch,
}
"""The behaviours of :func:`behaviour_parity_table`, each a function of an implementation's constructor."""


def behaviour_parity_table(details: bool = False):
    """Run every behaviour of :data:`PARITY_BEHAVIOURS` on each installed Adafactor; a DataFrame of cells.

    Rows are behaviours, columns implementations (torch, transformers,
    pytorch_optimizer, optbook; each with its own defaults, transformers with
    ``lr=None``, or ``relative_step=False`` when an ``lr`` is passed). A cell is
    ``"yes"`` (the behaviour holds), ``"no"`` (it does not, or the option does
    not exist) or ``"error"`` (an exception where it should work). With
    ``details=True`` a ``"no"``/``"error"`` cell carries the exception too.
    Deterministic (fixed seeds, CPU, float32/float64) and a few seconds long.
    """
    import warnings

    import pandas as pd

    table: dict[str, dict[str, str]] = {}
    for impl, make in _parity_implementations().items():
        column = {}
        for name, behaviour in PARITY_BEHAVIOURS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    column[name] = "yes" if behaviour(make) else "no"
                except _NoOption as exc:
                    column[name] = f"no ({exc})" if details else "no"
                except Exception as exc:  # noqa: BLE001 - the cell records it
                    column[name] = f"error ({type(exc).__name__}: {exc})" if details else "error"
        table[impl] = column
    return pd.DataFrame(table)


def migration_difference(source: str, *, before: int = 5, after: int = 10, **options) -> float:
    """Continue a float32 run of ``source`` with ``optbook.Adafactor`` loaded from its state dict.

    ``source`` is ``"torch"`` (``torch.optim.Adafactor(params, **options)``) or
    ``"transformers"`` (``transformers.optimization.Adafactor(params, lr=None,
    **options)``). The source runs ``before`` steps; a fresh
    ``optbook.Adafactor(params)`` (its options come from the state dict) loads
    ``source.state_dict()``; both run ``after`` more steps on the same
    gradients. Returns the largest ``max|x - y| / max|x|`` over the parameters
    (a matrix, a 3-D tensor and a vector).
    """
    from transformers.optimization import Adafactor as HFAdafactor

    from optbook.optim import Adafactor

    makers = {
        "torch": lambda ps: torch.optim.Adafactor(ps, **options),
        "transformers": lambda ps: HFAdafactor(ps, **{"lr": None, **options}),
    }
    if source not in makers:
        raise ValueError(f"source must be 'torch' or 'transformers', got {source!r}.")
    g = torch.Generator().manual_seed(0)
    shapes = ((6, 4), (2, 3, 5), (5,))
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(before + after)]
    original = makers[source](ps)
    _parity_run(original, ps, grads[:before])
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ours = Adafactor(qs)
    ours.load_state_dict(original.state_dict())
    _parity_run(original, ps, grads[before:])
    _parity_run(ours, qs, grads[before:])
    return max(float((p.detach() - q.detach()).abs().max() / p.detach().abs().max()) for p, q in zip(ps, qs))
