r"""Gradient centralization (Yong et al. 2020): remove the mean of each output unit's gradient.

For a weight tensor whose first axis indexes output units (a linear layer's
``(out, in)`` matrix, a convolution's ``(out, in, kh, kw)`` kernel), each slice
:math:`W_{i,\cdot}` gets its gradient's mean subtracted:

.. math::

    \Phi_{GC}(g)_{i,\cdot} = g_{i,\cdot} - \frac{1}{n_i}\sum_{j} g_{i,j}, \qquad
    n_i = \text{number of entries of the slice}.

Tensors with one axis (biases) are left alone. The projection
:math:`P = I - \tfrac1n \mathbf 1\mathbf 1^\top` acts on each slice, so
:math:`\Phi_{GC}` is linear, idempotent, and removes only the component along
:math:`\mathbf 1`: :math:`\lVert \Phi_{GC}(g)\rVert \le \lVert g \rVert`. It is
pytorch-optimizer's ``centralize_gradient`` (with ``gc_conv_only=False``).
"""

from __future__ import annotations

import numpy as np

from optbook.notation import symbol
from optbook.reference._checks import as_array, check_lr, params_and_grad

__all__ = ["centralize_gradient", "gc_step"]
__helpers__ = ("gc_step",)


@symbol(r"\Phi_{GC}(g)_{i,\cdot} = g_{i,\cdot} - \operatorname{mean}_j g_{i,j}", "gradient centralization: zero-mean gradient per output unit")
def centralize_gradient(g: np.ndarray) -> np.ndarray:
    r""":math:`g` minus its mean over every axis but the first; ``g`` itself if ``g.ndim <= 1``."""
    g = as_array(g, "g")
    if g.ndim <= 1:
        return g.copy()
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def gc_step(x: np.ndarray, g: np.ndarray, state=None, *, inner, **hyperparameters):
    r"""One step of the rule ``inner`` (any ``<rule>_step``) on the centralized gradient :math:`\Phi_{GC}(g_t)`.

    ``gc_step(x, g, state, inner=adam_step, lr=1e-3)`` is Adam with gradient centralization.
    """
    x, g = params_and_grad(x, g)
    if not callable(inner):
        raise TypeError(f"inner must be a step function such as optbook.reference.adam_step, got {inner!r}.")
    return inner(x, centralize_gradient(g), state, **hyperparameters)
