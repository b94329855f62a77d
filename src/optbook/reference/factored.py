r"""Factored second moments: why :math:`R_t C_t / 1_n^\top R_t` is the right rank-one estimate.

Adafactor stores, for an :math:`n\times m` weight matrix, only the row sums
:math:`R_t` and column sums :math:`C_t` of a running average of
:math:`G_t^2`, and uses :math:`\hat V_t = R_t C_t / 1_n^\top R_t`
(:func:`optbook.reference.adafactor.factored_second_moment`). Shazeer & Stern
(2018, Sec. 3) justify this choice: it is the rank-one matrix closest to the
full average in the *generalized Kullback-Leibler divergence*, or
I-divergence (Lee & Seung, 2001),

.. math::

    D(V \Vert W) = \sum_{ij} \Bigl( V_{ij}\log\frac{V_{ij}}{W_{ij}} - V_{ij} + W_{ij} \Bigr),

for non-negative :math:`V, W`, with :math:`0\log 0 = 0`. Among all
:math:`W = a b^\top` with :math:`a, b \ge 0`, the minimiser is

.. math::

    W^\star = \frac{V 1_m \, 1_n^\top V}{1_n^\top V 1_m},

which is :math:`R C / 1_n^\top R` with :math:`R = V1_m`, :math:`C = 1_n^\top V`
(:func:`rank_one_idivergence_fit`). Its minimum value is :math:`S\,I(P)`,
the total :math:`S = 1_n^\top V 1_m` times the mutual information of the
joint distribution :math:`P = V/S` (:func:`rank_one_idivergence_minimum`).

The module also gives the competitor, the best rank-one approximation in the
Frobenius norm (:func:`rank_one_frobenius_fit`, from the SVD), the error
measures the book uses to compare them, and :func:`factored_update`, which
computes :math:`U_t = G_t/\sqrt{\hat V_t}` from :math:`R_t` and :math:`C_t`
without ever forming the :math:`n\times m` matrix :math:`\hat V_t`.

Every function accepts a leading batch of matrices (the factored axes are the
last two), as :mod:`optbook.reference.adafactor` does.
"""

from __future__ import annotations

import math

import numpy as np

from optbook.notation import symbol
from optbook.reference import adafactor as af

__all__ = [
    "idivergence",
    "relative_idivergence",
    "frobenius_error",
    "relative_frobenius_error",
    "rank_one_idivergence_fit",
    "rank_one_idivergence_minimum",
    "rank_one_frobenius_fit",
    "factored_second_moment_from_means",
    "factored_update",
    "second_moment_numel",
    "fit_rank_one_numerically",
    "TEST_MATRIX_KINDS",
    "random_test_matrix",
    "factoring_error_report",
]

# Public helpers that run a numerical optimiser, draw test matrices or gather several errors at once,
# rather than compute one book symbol.
__helpers__ = ("fit_rank_one_numerically", "random_test_matrix", "factoring_error_report")


def _nonnegative_matrix(v, name: str = "V") -> np.ndarray:
    v = np.asarray(v, dtype=float)
    if v.ndim < 2:
        raise ValueError(f"{name} must be a matrix (or a batch of matrices), got shape {v.shape}.")
    if np.any(v < 0) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite and non-negative (a second moment is), got min {np.nanmin(v)}.")
    return v


@symbol(r"D(V\Vert W)", "generalized Kullback-Leibler (I-)divergence between non-negative matrices")
def idivergence(v: np.ndarray, w: np.ndarray) -> float:
    r""":math:`D(V\Vert W) = \sum_{ij} V_{ij}\log(V_{ij}/W_{ij}) - V_{ij} + W_{ij}`.

    Summed over all entries (a batch included). Conventions: a term with
    :math:`V_{ij} = 0` is :math:`W_{ij}`; a term with :math:`V_{ij} > 0 = W_{ij}`
    is :math:`+\infty`. :math:`D \ge 0`, with equality only when :math:`V = W`,
    because each term is :math:`W\,\phi(V/W)` with :math:`\phi(x) = x\log x - x + 1 \ge 0`.
    """
    v = np.asarray(v, dtype=float)
    w = np.asarray(w, dtype=float)
    if v.shape != w.shape:
        raise ValueError(f"V and W must have the same shape, got {v.shape} and {w.shape}.")
    if np.any(v < 0) or np.any(w < 0):
        raise ValueError("the I-divergence is defined for non-negative V and W only.")
    pos = v > 0
    if np.any(pos & (w == 0)):
        return math.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(pos, v * (np.log(np.where(pos, v, 1.0)) - np.log(np.where(pos, w, 1.0))), 0.0)
    return float(np.sum(log_term - v + w))


@symbol(r"D(V\Vert W) / 1_n^\top V 1_m", "I-divergence relative to the total mass of V")
def relative_idivergence(v: np.ndarray, w: np.ndarray) -> float:
    r""":math:`D(V\Vert W) / \sum_{ij} V_{ij}`: unchanged when :math:`V` and :math:`W` are scaled together."""
    total = float(np.sum(v))
    if not total > 0:
        raise ValueError("V has zero total mass; the relative I-divergence is undefined.")
    return idivergence(v, w) / total


@symbol(r"\lVert V - W\rVert_F", "Frobenius error of an approximation W of V")
def frobenius_error(v: np.ndarray, w: np.ndarray) -> float:
    r""":math:`\lVert V - W\rVert_F = \sqrt{\sum_{ij}(V_{ij} - W_{ij})^2}` (over a whole batch)."""
    v = np.asarray(v, dtype=float)
    w = np.asarray(w, dtype=float)
    if v.shape != w.shape:
        raise ValueError(f"V and W must have the same shape, got {v.shape} and {w.shape}.")
    return float(np.sqrt(np.sum(np.square(v - w))))


@symbol(r"\lVert V - W\rVert_F / \lVert V\rVert_F", "relative Frobenius error")
def relative_frobenius_error(v: np.ndarray, w: np.ndarray) -> float:
    r""":math:`\lVert V - W\rVert_F / \lVert V\rVert_F`: unchanged when both are scaled together."""
    norm = float(np.sqrt(np.sum(np.square(np.asarray(v, dtype=float)))))
    if not norm > 0:
        raise ValueError("V is zero; the relative Frobenius error is undefined.")
    return frobenius_error(v, w) / norm


@symbol(r"W^\star = V1_m 1_n^\top V / 1_n^\top V 1_m", "rank-one minimiser of the I-divergence")
def rank_one_idivergence_fit(v: np.ndarray) -> np.ndarray:
    r"""The rank-one :math:`W = ab^\top \ge 0` minimising :math:`D(V\Vert W)`.

    :math:`W^\star = R\,C / 1_n^\top R` with row sums :math:`R = V1_m` and
    column sums :math:`C = 1_n^\top V`: the outer product of the marginals
    divided by the total. It keeps the row and column sums of :math:`V`
    exactly. For the proof see the chapter on factored second moments.
    """
    v = _nonnegative_matrix(v)
    r = v.sum(axis=-1)
    c = v.sum(axis=-2)
    total = r.sum(axis=-1)[..., None, None]
    if np.any(total == 0):
        raise ValueError("V has zero total mass; every rank-one W = 0 is then optimal and the formula is 0/0.")
    return r[..., :, None] * c[..., None, :] / total


@symbol(r"\min_{a,b\ge0} D(V\Vert ab^\top) = S\,I(P)", "minimum I-divergence: total times mutual information")
def rank_one_idivergence_minimum(v: np.ndarray) -> float:
    r""":math:`D(V\Vert W^\star) = \sum_{ij}V_{ij}\log V_{ij} - \sum_i R_i\log R_i - \sum_j C_j\log C_j + S\log S`.

    With :math:`P = V/S` this is :math:`S` times the mutual information
    :math:`I(P) = \sum_{ij} P_{ij}\log\frac{P_{ij}}{p_i q_j}` between the row
    and column index drawn from :math:`P` (marginals :math:`p, q`); it is zero
    exactly when :math:`V` is itself rank one. Summed over a batch.
    """
    v = _nonnegative_matrix(v)

    def xlogx(x):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)

    r = v.sum(axis=-1)
    c = v.sum(axis=-2)
    s = r.sum(axis=-1)
    return float(np.sum(xlogx(v)) - np.sum(xlogx(r)) - np.sum(xlogx(c)) + np.sum(xlogx(s)))


@symbol(r"\sigma_1 u_1 v_1^\top", "best rank-one approximation in the Frobenius norm (Eckart-Young)")
def rank_one_frobenius_fit(v: np.ndarray) -> np.ndarray:
    r""":math:`\sigma_1 u_1 v_1^\top` from the singular value decomposition of :math:`V`.

    By the Eckart-Young theorem this minimises :math:`\lVert V - W\rVert_F`
    over all rank-one :math:`W`, with error :math:`\sqrt{\sum_{k\ge2}\sigma_k^2}`.
    For a non-negative :math:`V` whose largest singular value is simple, the
    leading singular vectors are non-negative up to a common sign
    (Perron-Frobenius); their absolute values are taken, so the result is
    non-negative and can be compared in the I-divergence.
    """
    v = np.asarray(v, dtype=float)
    if v.ndim < 2:
        raise ValueError(f"V must be a matrix (or a batch of matrices), got shape {v.shape}.")
    u, s, vt = np.linalg.svd(v, full_matrices=False)
    u1, s1, v1 = u[..., :, 0], s[..., 0], vt[..., 0, :]
    if np.all(v >= 0):
        u1, v1 = np.abs(u1), np.abs(v1)
    return s1[..., None, None] * u1[..., :, None] * v1[..., None, :]


@symbol(r"\hat V_t = \bar R_t \bar C_t / \operatorname{mean}(\bar R_t)", "factored estimate from row and column means")
def factored_second_moment_from_means(r_mean: np.ndarray, c_mean: np.ndarray) -> np.ndarray:
    r""":math:`\hat V_t` from row *means* :math:`\bar R_t = R_t/m` and column means :math:`\bar C_t = C_t/n`.

    Dividing by the *mean* of :math:`\bar R_t` (rather than its sum) gives
    exactly :math:`R_t C_t / 1_n^\top R_t`: the factors :math:`1/m` and
    :math:`1/n` cancel. This is what PyTorch, Hugging Face and optax store.
    """
    r_mean = np.asarray(r_mean, dtype=float)
    c_mean = np.asarray(c_mean, dtype=float)
    mean_r = r_mean.mean(axis=-1)[..., None, None]
    return r_mean[..., :, None] * c_mean[..., None, :] / mean_r


@symbol(r"U_t = G_t \odot (R_t/1_n^\top R_t)^{-1/2} (C_t)^{-1/2}", "factored update without forming V_t")
def factored_update(g: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r""":math:`U_t = G_t/\sqrt{\hat V_t}` computed as a row factor times a column factor.

    Since :math:`\hat V_{ij} = (R_i/1_n^\top R)\,C_j`,

    .. math:: (U_t)_{ij} = G_{ij}\,\bigl(R_i / 1_n^\top R\bigr)^{-1/2}\,C_j^{-1/2}.

    The only :math:`n\times m` array allocated is the result itself (the
    same size as :math:`G_t`); the extra memory is the two factors,
    :math:`n + m` numbers.
    """
    g = np.asarray(g, dtype=float)
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    if r.shape != g.shape[:-1] or c.shape != g.shape[:-2] + g.shape[-1:]:
        raise ValueError(
            f"for G of shape {g.shape} need R of shape {g.shape[:-1]} and C of shape "
            f"{g.shape[:-2] + g.shape[-1:]}, got {r.shape} and {c.shape}."
        )
    row_factor = 1.0 / np.sqrt(r / r.sum(axis=-1, keepdims=True))  # n numbers
    col_factor = 1.0 / np.sqrt(c)  # m numbers
    u = g * row_factor[..., :, None]  # the output: one n-by-m array
    u *= col_factor[..., None, :]  # in place: no second n-by-m array
    return u


@symbol(r"|\hat V|", "number of stored second-moment entries (nm full, n+m factored)")
def second_moment_numel(shape: tuple[int, ...], factored: bool = True) -> int:
    r"""Entries of second-moment state for a parameter of ``shape``.

    A vector, or any tensor when ``factored=False``, stores one entry per
    parameter. A matrix (or a batch of matrices, factored over the last two
    axes) stores :math:`n + m` per matrix when ``factored=True``.
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}.")
    full = math.prod(shape)
    if not factored or len(shape) < 2:
        return full
    *batch, n, m = shape
    return math.prod(batch) * (n + m)


def fit_rank_one_numerically(v: np.ndarray, *, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    r"""Minimise :math:`D(V\Vert ab^\top)` numerically, by L-BFGS over :math:`(\log a, \log b)`.

    An independent check of :func:`rank_one_idivergence_fit` that uses no
    closed form: writing :math:`a = e^x`, :math:`b = e^y` keeps both
    positive, and the objective
    :math:`\sum_{ij} -V_{ij}(x_i + y_j) + e^{x_i + y_j}` (up to a constant)
    is smooth and convex in :math:`(x, y)`. Its gradient
    (:math:`\partial/\partial x_i = \sum_j (W_{ij} - V_{ij})`, and likewise
    for :math:`y_j`) is supplied to ``scipy.optimize.minimize``. Only a
    single matrix with strictly positive row and column sums is supported.
    """
    from scipy.optimize import minimize

    v = _nonnegative_matrix(v)
    if v.ndim != 2:
        raise ValueError(f"fit_rank_one_numerically takes one matrix, got shape {v.shape}.")
    n, m = v.shape
    if np.any(v.sum(axis=1) == 0) or np.any(v.sum(axis=0) == 0):
        raise ValueError("every row and column of V needs positive mass (the optimum has a_i = 0 otherwise).")
    scale = float(v.mean())
    vs = v / scale  # the minimiser is equivariant: fit V/s, then scale back

    def objective(z):
        x, y = z[:n], z[n:]
        w = np.exp(x[:, None] + y[None, :])
        value = float(np.sum(w - vs * (x[:, None] + y[None, :])))
        diff = w - vs
        return value, np.concatenate([diff.sum(axis=1), diff.sum(axis=0)])

    z0 = np.zeros(n + m)  # a = b = 1: deliberately far from the answer
    res = minimize(objective, z0, jac=True, method="L-BFGS-B", options={"ftol": tol, "gtol": tol, "maxiter": max_iter})
    x, y = res.x[:n], res.x[n:]
    return scale * np.exp(x[:, None] + y[None, :])


TEST_MATRIX_KINDS = ("squared Gaussian", "row/column scaled", "heavy-tailed", "rank one")


def random_test_matrix(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random non-negative ``shape`` matrix of one of four kinds, to test rank-one fits on.

    * ``"squared Gaussian"``: entries :math:`z_{ij}^2`, :math:`z_{ij} \\sim N(0, 1)`;
    * ``"row/column scaled"``: :math:`(a_i z_{ij} b_j)^2` with :math:`a_i, b_j \\sim \\mathrm{Gamma}(2)`;
    * ``"heavy-tailed"``: squares of Student-t draws with 2 degrees of freedom;
    * ``"rank one"``: the outer product :math:`a b^\\top` of two Gamma(2) vectors (fitted exactly).

    The draws are taken from ``rng`` in the order listed in each formula.
    """
    if kind not in TEST_MATRIX_KINDS:
        raise ValueError(f"kind must be one of {TEST_MATRIX_KINDS}, got {kind!r}.")
    if len(shape) != 2 or any(int(k) != k or k < 1 for k in shape):
        raise ValueError(f"shape must be two positive whole numbers (rows, columns), got {shape!r}.")
    n, m = shape
    if kind == "squared Gaussian":
        return rng.standard_normal(shape) ** 2
    if kind == "row/column scaled":
        return (rng.gamma(2.0, size=(n, 1)) * rng.standard_normal(shape) * rng.gamma(2.0, size=(1, m))) ** 2
    if kind == "heavy-tailed":
        return rng.standard_t(2.0, size=shape) ** 2
    return np.outer(rng.gamma(2.0, size=n), rng.gamma(2.0, size=m))


def factoring_error_report(g: np.ndarray, v: np.ndarray, r: np.ndarray, c: np.ndarray, eps1: float = 1e-30) -> dict:
    """How far the factored :math:`\\hat V = RC/1^\\top R` is from the full average ``v``, at one step with gradient ``g``.

    With :math:`G^2 = G \\odot G + \\epsilon_1`, the relative I-divergences :math:`D(V\\Vert\\hat V)`,
    :math:`D(G^2\\Vert\\hat V)`, :math:`D(G^2\\Vert V)`; the relative Frobenius errors of
    :math:`\\hat V` and of the best rank-one (SVD) fit against :math:`V`, and of :math:`\\hat V` and
    :math:`V` against :math:`G^2`; the relative Frobenius difference of the updates
    :math:`G/\\sqrt{V}` and :math:`G/\\sqrt{\\hat V}`; and the mass ratio :math:`1^\\top V 1 / 1^\\top G^2 1`.
    """
    g, v = np.asarray(g, dtype=float), _nonnegative_matrix(v)
    if g.shape != v.shape or np.shape(r) != (g.shape[0],) or np.shape(c) != (g.shape[1],):
        raise ValueError(f"g and v must have one shape (n, m), r shape (n,) and c shape (m,); "
                         f"got {g.shape}, {v.shape}, {np.shape(r)}, {np.shape(c)}.")
    g2 = af.regularized_squared_gradient(g, eps1)
    v_hat = af.factored_second_moment(r, c)
    return {
        "D(V || V_hat)": relative_idivergence(v, v_hat),
        "D(G2 || V_hat)": relative_idivergence(g2, v_hat),
        "D(G2 || V)": relative_idivergence(g2, v),
        "F(V, V_hat)": relative_frobenius_error(v, v_hat),
        "F(V, SVD)": relative_frobenius_error(v, rank_one_frobenius_fit(v)),
        "F(G2, V_hat)": relative_frobenius_error(g2, v_hat),
        "F(G2, V)": relative_frobenius_error(g2, v),
        "update error": relative_frobenius_error(af.normalized_update(g, v), factored_update(g, r, c)),
        "mass ratio": v.sum() / g2.sum(),  # total of the average over total of this step's G^2
    }
