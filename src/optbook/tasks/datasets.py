r"""Real learning tasks on data that ships with a package: no downloads at run time.

The digits data set (1,797 8x8 images of handwritten digits) ships inside
scikit-learn (Pedregosa et al., 2011); the diabetes regression data set
does too. Both are small enough for every chapter to train on in seconds on a
CPU, and real enough that gradients have the structure of a real problem.

Two model families are provided: multinomial logistic regression with an
exact NumPy loss and gradient (for the NumPy references), and a small torch
multilayer perceptron with a generic training loop (for the torch optimizers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from optbook.notation import symbol

__all__ = [
    "Dataset",
    "digits",
    "diabetes",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "accuracy",
    "mlp",
    "TrainingHistory",
    "evaluate",
    "train_classifier",
]

__helpers__ = ("digits", "diabetes", "accuracy", "mlp", "train_classifier", "evaluate")


@dataclass(frozen=True)
class Dataset:
    """Standardised features and labels, split once with a fixed seed."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None

    def torch(self, dtype=torch.float32):
        """The four arrays as torch tensors (labels as int64 for classification)."""
        label_dtype = torch.int64 if self.n_classes else dtype
        return (
            torch.as_tensor(self.x_train, dtype=dtype),
            torch.as_tensor(self.y_train, dtype=label_dtype),
            torch.as_tensor(self.x_test, dtype=dtype),
            torch.as_tensor(self.y_test, dtype=label_dtype),
        )


def _split_standardise(x, y, test_fraction, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels (always blank) stay at zero
    return (x[train] - mean) / std, y[train], (x[test] - mean) / std, y[test]


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, labels)`` of ``sklearn.datasets.load_digits()``, read from the file scikit-learn ships.

    Importing scikit-learn takes seconds (it pulls in much of SciPy); its digits
    loader only reads ``sklearn/datasets/data/digits.csv.gz`` with ``np.loadtxt``,
    which this does directly, giving the same arrays. Falls back to the loader if
    the file is not where it is expected.
    """
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            with gzip.open(path, mode="rt", encoding="utf-8") as f:
                table = np.loadtxt(f, delimiter=",")
            return table[:, :-1], table[:, -1].astype(int, copy=False)
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data, data.target


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled handwritten digits: 64 features, 10 classes."""
    pixels, labels = _bundled_digits()
    xtr, ytr, xte, yte = _split_standardise(pixels.astype(float), labels, test_fraction, seed)
    return Dataset("digits", xtr, ytr, xte, yte, n_classes=10)


def _bundled_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """``(features, target)`` of ``sklearn.datasets.load_diabetes()``, computed from the files scikit-learn ships.

    As for :func:`_bundled_digits`, this avoids importing scikit-learn. Its loader reads
    ``diabetes_data_raw.csv.gz`` and ``diabetes_target.csv.gz`` with ``np.loadtxt``, then
    applies ``sklearn.preprocessing.scale`` and divides by the square root of the number of
    rows; the same operations, in the same order, give the same arrays (a test compares them
    with the loader's). Falls back to the loader if the files are not where they are expected.
    """
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        paths = [Path(root, "datasets", "data", name) for name in ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz")]
        if all(path.is_file() for path in paths):
            tables = []
            for path in paths:
                with gzip.open(path, mode="rt", encoding="utf-8") as f:
                    tables.append(np.loadtxt(f))
            data, target = tables
            # sklearn.preprocessing.scale(data, copy=False), step by step
            mean, std = np.nanmean(data, axis=0), np.nanstd(data, axis=0)
            data -= mean
            mean_1 = np.nanmean(data, axis=0)
            if not np.allclose(mean_1, 0):
                data -= mean_1
            std[std < 10 * np.finfo(std.dtype).eps] = 1.0
            data /= std
            mean_2 = np.nanmean(data, axis=0)
            if not np.allclose(mean_2, 0):
                data -= mean_2
            data /= data.shape[0] ** 0.5
            return data, target
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return bunch.data, bunch.target


def diabetes(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled diabetes regression data: 10 features, a standardised target."""
    features, target = _bundled_diabetes()
    xtr, ytr, xte, yte = _split_standardise(features.astype(float), target.astype(float), test_fraction, seed)
    mu, sd = ytr.mean(), ytr.std()
    return Dataset("diabetes", xtr, (ytr - mu) / sd, xte, (yte - mu) / sd)


# --- multinomial logistic regression in NumPy ---------------------------------------------


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@symbol(r"\ell(W) = -\tfrac1N\sum_i \log \operatorname{softmax}(x_i^\top W)_{y_i}", "multinomial logistic loss")
def softmax_cross_entropy(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float = 0.0) -> float:
    r"""Mean cross-entropy of a linear softmax classifier, plus :math:`\tfrac{\lambda}{2}\lVert W\rVert^2`.

    ``w`` has shape ``(d + 1, k)``: the last row is the bias.
    """
    logits = x @ w[:-1] + w[-1]
    nll = -_log_softmax(logits)[np.arange(len(y)), y].mean()
    return float(nll + 0.5 * l2 * np.sum(w[:-1] ** 2))


@symbol(r"\nabla \ell(W) = \tfrac1N X^\top(\operatorname{softmax}(XW) - Y)", "gradient of the multinomial logistic loss")
def softmax_cross_entropy_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float = 0.0) -> np.ndarray:
    r"""Exact gradient of :func:`softmax_cross_entropy` with respect to ``w``."""
    logits = x @ w[:-1] + w[-1]
    p = np.exp(_log_softmax(logits))
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    grad = np.empty_like(w, dtype=float)
    grad[:-1] = x.T @ p + l2 * w[:-1]
    grad[-1] = p.sum(axis=0)
    return grad


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct arg-max predictions of a linear softmax classifier."""
    return float(np.mean(np.argmax(x @ w[:-1] + w[-1], axis=1) == y))


# --- a small torch network and its training loop --------------------------------------------


def mlp(n_in: int, n_hidden: int, n_out: int, *, depth: int = 1, seed: int = 0) -> torch.nn.Module:
    """A ReLU multilayer perceptron with ``depth`` hidden layers, initialised from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [torch.nn.Linear(width, n_hidden), torch.nn.ReLU()]
        width = n_hidden
    layers.append(torch.nn.Linear(width, n_out))
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            # Re-draw from our own generator so the initialisation does not depend on global state.
            bound = 1.0 / np.sqrt(p.shape[-1]) if p.ndim == 2 else 1.0 / np.sqrt(n_hidden)
            p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
    return model


@dataclass
class TrainingHistory:
    """Per-epoch train loss, test loss and test accuracy (accuracy is NaN for regression)."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on ``(x, y)``; accuracy is NaN unless labels are integers."""
    with torch.no_grad():
        out = model(x)
        loss = float(loss_fn(out, y))
        acc = float((out.argmax(dim=1) == y).float().mean()) if y.dtype == torch.int64 else float("nan")
    return loss, acc


def train_classifier(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    loss_fn: Callable | None = None,
    on_step: Callable[[int], None] | None = None,
    progress_desc: str | None = None,
) -> TrainingHistory:
    """Mini-batch training with a seeded shuffle; records losses per step and per epoch.

    ``on_step(step)`` is called after every optimizer step (for schedulers or
    probes such as recording gradients).
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}.")
    loss_fn = loss_fn or (torch.nn.functional.cross_entropy if data.n_classes else torch.nn.functional.mse_loss)
    dtype = next(model.parameters()).dtype
    xtr, ytr, xte, yte = data.torch(dtype)
    if not data.n_classes:
        ytr, yte = ytr.reshape(-1, 1), yte.reshape(-1, 1)
    gen = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    epoch_iter = range(epochs)
    if progress_desc:
        from optbook.progress import progress

        epoch_iter = progress(epoch_iter, desc=progress_desc)
    step = 0
    for _ in epoch_iter:
        order = torch.randperm(len(xtr), generator=gen)
        for start in range(0, len(xtr), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            optimizer.step()
            step += 1
            history.step_loss.append(float(loss.detach()))
            if on_step is not None:
                on_step(step)
        train_loss, _ = evaluate(model, xtr, ytr, loss_fn)
        test_loss, test_acc = evaluate(model, xte, yte, loss_fn)
        history.train_loss.append(train_loss)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_acc)
    return history
