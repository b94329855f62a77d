r"""Gradient descent and its stochastic variants, in NumPy.

One iteration of (full-batch) gradient descent is

.. math::

    g_t &= \nabla J(\theta_{t-1}) \\
    \theta_t &= \theta_{t-1} - \eta\, g_t

Stochastic and mini-batch gradient descent keep the second line and replace
the gradient by an average over a random subset :math:`B_t` of the
examples, :math:`g_t = \frac{1}{|B_t|}\sum_{i \in B_t} \nabla J_i(\theta_{t-1})`,
with :math:`|B_t| = 1` for SGD and :math:`|B_t| = N` for batch gradient
descent. In the code the parameters :math:`\theta` are called ``x``.

Weight decay comes in two forms that the book compares:

* an L2 penalty :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` added to the
  loss, which adds :math:`\lambda\theta` to the gradient
  (:func:`l2_regularized_gradient`, the ``weight_decay`` of :func:`sgd_step`
  and of ``torch.optim.SGD``);
* decoupled weight decay, which shrinks the parameters by :math:`\eta\lambda\theta`
  next to the gradient step (:func:`decoupled_weight_decay`, :func:`sgdw_step`).

For plain gradient descent the two give the same iterate,
:math:`\theta - \eta(g + \lambda\theta) = (\theta - \eta\lambda\theta) - \eta g`;
for Adam they do not (see :mod:`optbook.reference.adam`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import (
    as_array,
    check_lr,
    check_nonnegative,
    params_and_grad,
)

__all__ = [
    "SGDState",
    "init_sgd_state",
    "gradient_step",
    "l2_regularized_gradient",
    "decoupled_weight_decay",
    "minibatch_gradient",
    "minibatch_indices",
    "minibatch_grad_fn",
    "independent_batch_grad_fn",
    "sgd_step",
    "sgdw_step",
]

# Public functions that compose formulas or draw random numbers rather than
# compute one book symbol; the notation test exempts them.
__helpers__ = ("init_sgd_state", "minibatch_indices", "minibatch_grad_fn", "independent_batch_grad_fn", "sgd_step", "sgdw_step")


@dataclass(frozen=True)
class SGDState:
    """Gradient descent carries nothing but the number of steps taken, ``t``."""

    t: int = 0


def init_sgd_state(x: np.ndarray | None = None) -> SGDState:
    """The state before the first step (``x`` is accepted for a uniform API and ignored)."""
    return SGDState()


@symbol(r"\theta_t = \theta_{t-1} - \eta g_t", "gradient-descent step")
def gradient_step(x: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    r""":math:`\theta_t = \theta_{t-1} - \eta g_t`: move against the gradient by ``lr`` times its length."""
    x, g = params_and_grad(x, g)
    return x - check_lr(lr) * g


@symbol(r"g_t + \lambda\theta_{t-1}", "gradient of the loss plus the L2 penalty (lambda/2)|theta|^2")
def l2_regularized_gradient(g: np.ndarray, x: np.ndarray, weight_decay: float) -> np.ndarray:
    r""":math:`\nabla\big(J(\theta) + \tfrac{\lambda}{2}\lVert\theta\rVert^2\big) = g + \lambda\theta`."""
    x, g = params_and_grad(x, g)
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    return g + lam * x


@symbol(r"\theta - \eta\lambda\theta", "decoupled weight decay: shrink the parameters by eta*lambda")
def decoupled_weight_decay(x: np.ndarray, lr: float, weight_decay: float) -> np.ndarray:
    r""":math:`\theta - \eta\lambda\theta = (1 - \eta\lambda)\theta`, applied outside the gradient.

    The decay is multiplied by the learning rate :math:`\eta`, as in
    ``torch.optim.AdamW`` and the Lion and Sophia papers.
    """
    x = as_array(x, "x")
    lam = check_nonnegative(weight_decay, "weight_decay", "pass 0 for no weight decay.")
    return x - check_lr(lr) * lam * x


@symbol(
    r"g_t = \frac{1}{|B_t|}\sum_{i \in B_t} \nabla J_i(\theta_{t-1})",
    "mini-batch gradient estimate",
)
def minibatch_gradient(
    example_grads: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    r"""Average of the per-example gradients :math:`\nabla J_i(\theta)` over the mini-batch ``indices``.

    ``example_grads(x, indices)`` returns an array of shape
    ``(len(indices), *x.shape)`` whose row ``r`` is :math:`\nabla J_{i_r}(\theta)`.
    """
    x = as_array(x, "x")
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"indices must be a non-empty 1-D array of example indices, got shape {indices.shape}.")
    rows = as_array(example_grads(x, indices), "example_grads(x, indices)")
    expected = (indices.size, *x.shape)
    if rows.shape != expected:
        raise ValueError(
            f"example_grads(x, indices) returned shape {rows.shape}; expected {expected}, "
            f"one gradient of x's shape per index."
        )
    return rows.mean(axis=0)


def minibatch_indices(
    n_examples: int, batch_size: int, rng: np.random.Generator, *, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """Yield the mini-batches of one epoch: a fresh permutation of ``range(n_examples)`` cut into pieces.

    The last batch is shorter when ``batch_size`` does not divide
    ``n_examples``, unless ``drop_last=True``. Pass a seeded
    ``np.random.default_rng(seed)`` for reproducible epochs.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}.")
    if int(n_examples) != n_examples or n_examples < 1:
        raise ValueError(f"n_examples must be a whole number >= 1, got {n_examples!r}.")
    if int(batch_size) != batch_size or not 1 <= batch_size <= n_examples:
        raise ValueError(
            f"batch_size must be a whole number in [1, n_examples={n_examples}], got {batch_size!r}."
        )
    order = rng.permutation(int(n_examples))
    stop = n_examples - n_examples % batch_size if drop_last else n_examples
    for start in range(0, stop, int(batch_size)):
        yield order[start : start + batch_size]


def minibatch_grad_fn(
    example_grads: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_examples: int,
    batch_size: int,
    rng: np.random.Generator,
    *,
    drop_last: bool = False,
) -> Callable[[np.ndarray], np.ndarray]:
    """A gradient function ``g(x)`` that walks through shuffled mini-batches, epoch after epoch.

    Each call returns :func:`minibatch_gradient` on the next batch of
    :func:`minibatch_indices`, so ``run(sgd_step, x0, minibatch_grad_fn(...), steps, lr=...)``
    traces mini-batch SGD. ``batch_size=n_examples`` gives batch gradient descent.
    """
    # Validate now rather than on the first call inside a run.
    next(minibatch_indices(n_examples, batch_size, np.random.default_rng(0), drop_last=drop_last))

    def epochs() -> Iterator[np.ndarray]:
        while True:
            yield from minibatch_indices(n_examples, batch_size, rng, drop_last=drop_last)

    batches = epochs()

    def grad(x: np.ndarray) -> np.ndarray:
        return minibatch_gradient(example_grads, x, next(batches))

    return grad


def independent_batch_grad_fn(
    example_grads: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_examples: int,
    batch_size: int,
    rng: np.random.Generator,
) -> Callable[[np.ndarray], np.ndarray]:
    """A gradient function ``g(x)`` whose every call uses a batch drawn afresh, independently of the others.

    Each call returns :func:`minibatch_gradient` on the first batch of a fresh
    :func:`minibatch_indices` epoch: a uniformly random subset of ``batch_size``
    examples, drawn independently of all earlier calls (for ``batch_size=1``, sampling
    with replacement). :func:`minibatch_grad_fn` instead walks through the batches of
    shuffled epochs, so that every example is used once per epoch.
    """
    # Validate now rather than on the first call inside a run.
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}.")
    next(minibatch_indices(n_examples, batch_size, np.random.default_rng(0)))

    def grad(x: np.ndarray) -> np.ndarray:
        return minibatch_gradient(example_grads, x, next(minibatch_indices(n_examples, batch_size, rng)))

    return grad


def sgd_step(
    x: np.ndarray, g: np.ndarray, state: SGDState | None = None, *, lr: float, weight_decay: float = 0.0
) -> tuple[np.ndarray, SGDState]:
    r"""One step of gradient descent, :math:`\theta_t = \theta_{t-1} - \eta(g_t + \lambda\theta_{t-1})`.

    ``weight_decay`` is an L2 penalty added to the gradient, as in
    ``torch.optim.SGD``; for this rule it coincides with :func:`sgdw_step`.
    Returns the new parameters and the new state.
    """
    state = SGDState() if state is None else state
    x, g = params_and_grad(x, g)
    if weight_decay:
        g = l2_regularized_gradient(g, x, weight_decay)
    return gradient_step(x, g, lr), SGDState(t=state.t + 1)


def sgdw_step(
    x: np.ndarray, g: np.ndarray, state: SGDState | None = None, *, lr: float, weight_decay: float = 0.0
) -> tuple[np.ndarray, SGDState]:
    r"""Gradient descent with decoupled weight decay, :math:`\theta_t = (\theta_{t-1} - \eta\lambda\theta_{t-1}) - \eta g_t`."""
    state = SGDState() if state is None else state
    x, g = params_and_grad(x, g)
    return gradient_step(decoupled_weight_decay(x, lr, weight_decay), g, lr), SGDState(t=state.t + 1)


sgd_step.init_state = init_sgd_state
sgdw_step.init_state = init_sgd_state
