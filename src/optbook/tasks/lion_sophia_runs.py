r"""The longer experiments of the Lion and Sophia chapter, as functions that return plain numbers.

Each function runs one experiment of ``book/part1/06_lion_sophia.ipynb`` in full and
returns JSON-able results, so that the chapter can store them with
:func:`optbook.tasks.stored_results.stored_results`; a companion function re-runs a
small slice of the same experiment, which the chapter checks live against the file.

* :func:`network_diagonal_estimates`: exact Hessian and Gauss-Newton diagonals of a small
  trained MLP, and the error of the running mean of Hutchinson and GNB estimates against each;
  :func:`network_hutchinson_norms` re-draws the first estimates.
* :func:`tuned_training_losses`: the training-loss curves of an optimizer over a grid of
  learning rates on the digits MLP (``tasks.train_run``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["network_diagonal_estimates", "network_hutchinson_norms", "tuned_training_losses"]
__helpers__ = ("network_diagonal_estimates", "network_hutchinson_norms", "tuned_training_losses")

_ACTIVATIONS = {"ReLU": torch.nn.ReLU, "tanh": torch.nn.Tanh}


def _trained_net(activation: str, data, hidden: int, epochs: int, batch: int):
    """The seeded ``mlp(d, hidden, k)`` with ``activation``, trained by Adam in float64, and its fixed batch."""
    from optbook import tasks

    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
    if int(batch) != batch or not 1 <= batch <= len(data.x_train):
        raise ValueError(f"batch must be a whole number of examples between 1 and {len(data.x_train)}, got {batch!r}.")
    xt, yt, _, _ = data.torch(torch.float64)
    idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))[:batch]
    net = tasks.mlp(data.x_train.shape[1], hidden, data.n_classes, seed=0).double()  # float64 from the start
    net[1] = _ACTIVATIONS[activation]()
    tasks.train_classifier(net, torch.optim.Adam(net.parameters(), lr=1e-3), data, epochs=epochs, batch_size=64, seed=0)
    return net, xt[idx], yt[idx]


def _hutchinson_sample(net, xb, yb, params, gen):
    from optbook.optim.sophia import hutchinson

    est = hutchinson(lambda: torch.nn.functional.cross_entropy(net(xb), yb), params, generator=gen)
    return torch.cat([t.reshape(-1) for t in est]).numpy()


def network_diagonal_estimates(activation: str, data, counts: Sequence[int], *, hidden: int = 16, epochs: int = 3,
                               batch: int = 256, samples: int = 256, first: int = 8) -> dict:
    r"""Hessian-diagonal estimators on a small trained MLP, against its exact diagonals.

    The seeded ``mlp`` with ``hidden`` units and the given ``activation`` (``"ReLU"`` or
    ``"tanh"``) is trained for ``epochs`` epochs by Adam (:math:`\eta = 10^{-3}`, batches of 64)
    in float64. On a fixed batch of ``batch`` training examples the exact diagonals of the
    Hessian :math:`H` and of the Gauss-Newton matrix are computed
    (:func:`optbook.tasks.cross_entropy_hessian_diagonals`), and ``samples`` Hutchinson then
    ``samples`` GNB estimates are drawn from one generator seeded 1. Returns the parameter
    count, :math:`\lVert \mathrm{diag}\,GN - \mathrm{diag}\,H\rVert/\lVert\mathrm{diag}\,H\rVert`, the
    number of negative entries of :math:`\mathrm{diag}\,H`, the relative error of the running
    mean of each estimator against each diagonal at every :math:`S` in ``counts``
    (keys ``"Hutchinson|H"``, ``"Hutchinson|GN"``, ``"GNB|H"``, ``"GNB|GN"``), and the norms of
    the running means of the first ``first`` Hutchinson estimates (the slice
    :func:`network_hutchinson_norms` re-draws).
    """
    from optbook import analysis, tasks
    from optbook.optim.sophia import gauss_newton_bartlett

    net, xb, yb = _trained_net(activation, data, hidden, epochs, batch)
    params = list(net.parameters())
    h_net, gn_net = tasks.cross_entropy_hessian_diagonals(net, xb, yb)  # exact diag H and diag GN on the batch
    gen = torch.Generator().manual_seed(1)
    hut = np.stack([_hutchinson_sample(net, xb, yb, params, gen) for _ in range(samples)])
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).numpy()
    gnb = np.stack([flat(gauss_newton_bartlett(lambda: net(xb), params, generator=gen)) for _ in range(samples)])
    errors = {f"{est}|{target}": analysis.running_mean_errors(s, exact, counts)
              for est, s in (("Hutchinson", hut), ("GNB", gnb)) for target, exact in (("H", h_net), ("GN", gn_net))}
    running = np.cumsum(hut[:first], axis=0) / np.arange(1, first + 1)[:, None]
    return {"parameters": int(h_net.size), "gap": float(analysis.relative_error(gn_net, h_net)),
            "negative": int(np.sum(h_net < 0)), "errors": errors,
            "hutchinson_running_norms": np.linalg.norm(running, axis=1).tolist()}


def network_hutchinson_norms(activation: str, data, *, hidden: int = 16, epochs: int = 3, batch: int = 256,
                             first: int = 8) -> list[float]:
    """The slice of :func:`network_diagonal_estimates` that is cheap to re-run: the same network, retrained,
    and the norms of the running means of its first ``first`` Hutchinson estimates."""
    net, xb, yb = _trained_net(activation, data, hidden, epochs, batch)
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(1)
    hut = np.stack([_hutchinson_sample(net, xb, yb, params, gen) for _ in range(first)])
    running = np.cumsum(hut, axis=0) / np.arange(1, first + 1)[:, None]
    return np.linalg.norm(running, axis=1).tolist()


def tuned_training_losses(name: str, lrs: Sequence[float], data, *, epochs: int = 15, batch_size: int = 64,
                          seed: int = 0) -> list[dict]:
    """For each learning rate of ``lrs``: the per-epoch training losses and the final test loss of
    ``tasks.train_run(name, lr, data, epochs=epochs, batch_size=batch_size, seed=seed, dtype=torch.float64)``."""
    from optbook import tasks

    lrs = list(lrs)  # a progress bar over the grid is an iterator
    if len(lrs) == 0:
        raise ValueError("lrs must hold at least one learning rate.")
    out = []
    for lr in lrs:
        h = tasks.train_run(name, float(lr), data, epochs=epochs, batch_size=batch_size, seed=seed, dtype=torch.float64)
        out.append({"lr": float(lr), "train_loss": list(map(float, h.train_loss)), "test_loss": float(h.test_loss[-1])})
    return out
