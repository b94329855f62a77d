r"""The longer experiments of the Adam and AdamW chapter, as functions that return plain numbers.

Each function runs one experiment of ``book/part1/05_adam_adamw.ipynb`` in full and returns
JSON-able results, so that the chapter can store them with
:func:`optbook.tasks.stored_results.stored_results` and re-check a slice live.

* :func:`adam_family_losses`: the training loss of Adam, AdaMax and Nadam along full-batch runs;
* :func:`momentum_l2_against_decoupled`: momentum on the L2-penalised gradient against momentum with
  decoupled decay (SGDW), and where each ends relative to two penalised minimisers;
* :func:`adam_l2_against_adamw`: full-batch Adam with an L2 penalty and AdamW on softmax
  regression, for several :math:`\lambda`, against the L-BFGS minimiser of the penalised loss;
* :func:`mlp_weight_decay_grid`: ``torch.optim.Adam(weight_decay=λ)`` against
  ``torch.optim.AdamW(weight_decay=λ)`` on the digits MLP, over a grid of :math:`\lambda`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["adam_family_losses", "momentum_l2_against_decoupled", "adam_l2_against_adamw", "mlp_weight_decay_grid",
           "MLP_DECAY_COLUMNS"]
__helpers__ = ("adam_family_losses", "momentum_l2_against_decoupled", "adam_l2_against_adamw", "mlp_weight_decay_grid")

#: The columns of each row of :func:`mlp_weight_decay_grid`, in the order the chapter prints them.
MLP_DECAY_COLUMNS = ("lambda", "optimizer", "train loss", "test loss", "test accuracy", "||theta||")


def adam_l2_against_adamw(data, lams: Sequence[float], steps: int, lr: float) -> dict:
    r"""Adam + L2 and AdamW for ``steps`` full-batch steps from zero on softmax regression, per :math:`\lambda`.

    For each :math:`\lambda` of ``lams`` (key ``f"{lam:g}"``): Adam with the L2 penalty
    (``reference.adam_step(weight_decay=λ)``), AdamW (``reference.adamw_step(weight_decay=λ)``),
    both at learning rate ``lr``, and the minimiser :math:`\theta^\star_\lambda` of the penalised
    training loss from :func:`optbook.analysis.penalised.l2_penalised_minimiser`. Returns, for each
    optimizer (``"Adam + L2"``, ``"AdamW"``), :math:`\lVert\theta_t\rVert` at every step, and at the end
    the norm, the distance to :math:`\theta^\star_\lambda`, the training and test losses and the
    test accuracy; and :math:`\lVert\theta^\star_\lambda\rVert`.
    """
    from optbook import tasks
    from optbook.analysis.penalised import l2_penalised_minimiser
    from optbook.reference import adam_step, adamw_step, run

    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    problem = tasks.softmax_regression_problem(data)
    loss, grad, w0 = problem.loss, problem.grad, problem.x0
    out = {}
    for lam in lams:
        w_star = l2_penalised_minimiser(loss, grad, w0, lam)
        entry = {"minimiser_norm": float(np.linalg.norm(w_star))}
        for name, step_fn in (("Adam + L2", adam_step), ("AdamW", adamw_step)):
            xs = run(step_fn, w0, grad, int(steps), lr=lr, weight_decay=lam).xs
            w_t = xs[-1]
            entry[name] = {
                "norms": np.linalg.norm(xs.reshape(len(xs), -1), axis=1).tolist(),
                "||theta_T||": float(np.linalg.norm(w_t)),
                "dist to penalised min": float(np.linalg.norm(w_t - w_star)),
                "train loss": float(loss(w_t)),
                "test loss": float(tasks.softmax_cross_entropy(w_t, data.x_test, data.y_test)),
                "test accuracy": float(tasks.accuracy(w_t, data.x_test, data.y_test)),
            }
        out[f"{lam:g}"] = entry
    return out


def mlp_weight_decay_grid(data, lams: Sequence[float], *, epochs: int = 12, batch_size: int = 64, lr: float = 1e-3,
                          seed: int = 0, optimizers: Sequence[str] = ("Adam + L2", "AdamW")) -> list[dict]:
    r"""The digits MLP trained with ``torch.optim.Adam`` and ``torch.optim.AdamW``, ``weight_decay=λ``, per :math:`\lambda`.

    Each run starts from the seeded ``tasks.mlp(d, 64, k, seed=seed)`` in float64 and sees the
    same batches (``tasks.train_classifier``, ``epochs`` epochs of ``batch_size``). Returns one row per
    run with the columns :data:`MLP_DECAY_COLUMNS`: the final training and test loss, the test
    accuracy and the norm of all the weights. ``optimizers`` picks ``"Adam + L2"``, ``"AdamW"`` or both.
    """
    from optbook import tasks

    classes = {"Adam + L2": torch.optim.Adam, "AdamW": torch.optim.AdamW}
    unknown = [name for name in optimizers if name not in classes]
    if unknown:
        raise ValueError(f"optimizers must be among {sorted(classes)}, got {unknown}.")
    rows = []
    for lam in lams:
        for name in optimizers:
            model = tasks.mlp(data.x_train.shape[1], 64, data.n_classes, seed=seed).double()  # float64: the same digits under every CPU kernel
            hist = tasks.train_classifier(model, classes[name](model.parameters(), lr=lr, weight_decay=lam), data,
                                          epochs=epochs, batch_size=batch_size, seed=seed)
            with torch.no_grad():
                norm = float(torch.sqrt(sum((p**2).sum() for p in model.parameters())))
            rows.append(dict(zip(MLP_DECAY_COLUMNS, (float(lam), name, float(hist.train_loss[-1]), float(hist.test_loss[-1]),
                                                     float(hist.test_accuracy[-1]), norm))))
    return rows


def adam_family_losses(data, steps: int, lr: float) -> dict:
    """The training loss at every step of full-batch Adam, AdaMax and Nadam on softmax regression, from zero.

    The NumPy references ``adam_step``, ``adamax_step`` and ``nadam_step`` run ``steps`` steps at
    learning rate ``lr`` with their other defaults; each list holds ``steps + 1`` losses, the
    first at the start.
    """
    from optbook import reference, tasks

    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    problem = tasks.softmax_regression_problem(data)
    rules = {"Adam": reference.adam_step, "AdaMax": reference.adamax_step, "Nadam": reference.nadam_step}
    return {name: reference.run(step_fn, problem.x0, problem.grad, int(steps), loss_fn=problem.loss, lr=lr).losses.tolist()
            for name, step_fn in rules.items()}


def momentum_l2_against_decoupled(data, lam: float, steps: int, lr: float, momentum: float = 0.9) -> dict:
    r"""Full-batch momentum with an L2 penalty against momentum with decoupled weight decay, on softmax regression.

    Both start at zero and run ``steps`` steps at learning rate ``lr`` with momentum :math:`\gamma`:
    ``reference.momentum_step`` on the gradient :math:`g + \lambda\theta` (``l2_regularized_gradient``), and
    ``reference.momentum_decoupled_step(weight_decay=λ)``. Returns the largest difference between the two
    paths in any weight and step, :math:`\lVert\theta_t\rVert` at every step of each, and the distance of each
    last iterate to the minimisers of the training loss plus :math:`\frac{\lambda}{2}\lVert\theta\rVert^2` and plus
    :math:`\frac{(1-\gamma)\lambda}{2}\lVert\theta\rVert^2` (L-BFGS, :func:`optbook.analysis.penalised.l2_penalised_minimiser`).
    """
    from optbook import tasks
    from optbook.analysis.penalised import l2_penalised_minimiser
    from optbook.reference import l2_regularized_gradient, momentum_decoupled_step, momentum_step, run

    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    problem = tasks.softmax_regression_problem(data)
    loss, grad, w0 = problem.loss, problem.grad, problem.x0
    paths = {
        "L2": run(momentum_step, w0, lambda w: l2_regularized_gradient(grad(w), w, lam), int(steps), lr=lr,
                  momentum=momentum).xs,
        "decoupled": run(momentum_decoupled_step, w0, grad, int(steps), lr=lr, momentum=momentum, weight_decay=lam).xs,
    }
    minimisers = {"lambda": l2_penalised_minimiser(loss, grad, w0, lam),
                  "(1 - gamma) lambda": l2_penalised_minimiser(loss, grad, w0, (1 - momentum) * lam)}
    out = {"max |L2 - decoupled|": float(np.abs(paths["L2"] - paths["decoupled"]).max())}
    for name, xs in paths.items():
        out[f"norms {name}"] = np.linalg.norm(xs.reshape(len(xs), -1), axis=1).tolist()
        for penalty, w_star in minimisers.items():
            out[f"{name} to minimiser, penalty {penalty}"] = float(np.linalg.norm(xs[-1] - w_star))
    return out
