r"""A small Vision Transformer on scikit-learn's 8 x 8 handwritten digits.

The model is the ViT of Dosovitskiy et al. (2021) in miniature: the image is cut
into non-overlapping :math:`p \times p` patches (:math:`p = 2`: 16 patches of 4
pixels), each patch is mapped linearly to width :math:`d`, a learned class
token is prepended and learned position embeddings are added, then pre-norm
Transformer blocks (LayerNorm, multi-head self-attention, LayerNorm, GELU MLP)
and a linear head on the final class token:

.. math::

    h_0 = [c;\ P_1 W_e;\ \dots;\ P_n W_e] + E_{\text{pos}}, \qquad
    \text{logits} = W_{\text{head}}\,\mathrm{LN}(h_L)_{0} + b_{\text{head}} .

The inputs are the digits of :func:`optbook.tasks.datasets.digits` (pixels
standardised with the training set's mean and standard deviation, one fixed
75/25 split), reshaped to :math:`8 \times 8`. :func:`train_vit` trains with
``"adafactor"`` (:class:`optbook.Adafactor` with the paper's defaults) or
``"adamw"`` at a constant learning rate, with mini-batches drawn from a seeded
generator, and reports the test accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import optbook
from optbook.progress import progress
from optbook.tasks.datasets import digits

__all__ = [
    "ViTConfig",
    "TinyViT",
    "patchify",
    "VIT_OPTIMIZERS",
    "make_optimizer",
    "train_vit",
    "compute_vit_runs",
    "stored_vit_runs",
    "VIT_FILE",
]
__helpers__ = ("patchify", "make_optimizer", "train_vit", "compute_vit_runs", "stored_vit_runs")

VIT_OPTIMIZERS = ("adafactor", "adamw")
VIT_FILE = "book/data/applications_vit_digits.json"


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of the model; ``patch`` must divide 8 and ``d_model`` be divisible by ``n_heads``."""

    patch: int = 2
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 2
    d_mlp: int = 64
    n_classes: int = 10

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
        if 8 % self.patch:
            raise ValueError(f"patch={self.patch} must divide the image side 8 (use 1, 2, 4 or 8).")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}.")

    @property
    def n_patches(self) -> int:
        return (8 // self.patch) ** 2


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(batch, H, W)`` images to ``(batch, (H/p)(W/p), p*p)`` patches, row by row, each patch flattened row-major."""
    if images.dim() != 3:
        raise ValueError(f"images must have shape (batch, H, W), got {tuple(images.shape)}.")
    b, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"patch={patch} must divide the image sides {h} and {w}.")
    x = images.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch)


class _Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, batch_first=True)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc2 = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.ln1(h)
        h = h + self.attn(z, z, z, need_weights=False)[0]
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class TinyViT(nn.Module):
    """``forward(images)`` with images ``(batch, 8, 8)`` gives class logits ``(batch, n_classes)``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Linear(cfg.patch * cfg.patch, cfg.d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(0.02 * torch.randn(1, cfg.n_patches + 1, cfg.d_model))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.embed(patchify(images, self.config.patch))
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h[:, 0]))


@lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, ...]:
    ds = digits()
    xtr, ytr, xte, yte = ds.torch(torch.float64)
    return xtr.reshape(-1, 8, 8), ytr, xte.reshape(-1, 8, 8), yte


def make_optimizer(name: str, params, lr: float | None = None) -> torch.optim.Optimizer:
    """``"adafactor"`` (the paper's defaults) or ``"adamw"`` at constant ``lr`` (weight decay 0.01)."""
    if name == "adafactor":
        return optbook.Adafactor(params, foreach=True)
    if name == "adamw":
        if lr is None or not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"adamw needs a learning rate lr > 0, got {lr!r}.")
        return torch.optim.AdamW(params, lr=float(lr), weight_decay=0.01, foreach=True)
    raise ValueError(f"name must be one of {VIT_OPTIMIZERS}, got {name!r}.")


def train_vit(
    name: str, seed: int, steps: int, *, lr: float | None = None, batch_size: int = 64,
    config: ViTConfig = ViTConfig(), show_progress: bool = True,
) -> dict:
    """Train :class:`TinyViT` in float64 (weights and batches from ``seed``) for ``steps`` steps.

    Returns ``{"train_loss": [per step], "test_loss": float, "test_accuracy": float}``, rounded to 10 digits.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    xtr, ytr, xte, yte = _data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyViT(config).double()
    opt = make_optimizer(name, model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    steps_iter = range(steps)
    if show_progress:
        steps_iter = progress(steps_iter, desc=f"ViT {name} seed {seed}", total=steps)
    for _ in steps_iter:
        idx = torch.randint(0, len(ytr), (batch_size,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        loss.backward()
        opt.step()
        losses.append(float(f"{float(loss.detach()):.10g}"))
    with torch.no_grad():
        logits = model(xte)
        test_loss = float(F.cross_entropy(logits, yte))
        accuracy = float((logits.argmax(-1) == yte).double().mean())
    return {"train_loss": losses, "test_loss": float(f"{test_loss:.10g}"), "test_accuracy": float(f"{accuracy:.10g}")}


def compute_vit_runs(steps: int, seeds: Sequence[int], lrs: Sequence[float]) -> dict:
    """Adafactor and AdamW at every ``lrs`` for every seed; AdamW's lr is chosen by mean test loss over the seeds.

    Returns ``{"adafactor": {seed: run}, "adamw": {lr: {seed: run}}, "best_lr": float}``.
    """
    out = {"adafactor": {str(s): train_vit("adafactor", s, steps) for s in seeds}, "adamw": {}}
    for lr in lrs:
        out["adamw"][repr(float(lr))] = {str(s): train_vit("adamw", s, steps, lr=lr) for s in seeds}
    means = {k: float(np.mean([r["test_loss"] for r in v.values()])) for k, v in out["adamw"].items()}
    out["best_lr"] = float(min(means, key=means.get))
    return out


def stored_vit_runs(steps: int = 300, seeds: Sequence[int] = (0, 1, 2), lrs: Sequence[float] = (1e-3, 3e-3, 1e-2),
                    check_steps: int = 30):
    """:func:`compute_vit_runs` through the stored-results helper; live slice: the first ``check_steps`` training
    losses of seed ``seeds[0]`` for Adafactor and for AdamW at ``lrs[0]``, at rtol 1e-6."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "ViT on digits", "steps": steps, "seeds": list(seeds), "lrs": [float(v) for v in lrs],
           "config": asdict(ViTConfig()), "batch_size": 64}
    s0, lr0 = seeds[0], float(lrs[0])
    return stored_results(
        VIT_FILE, key,
        compute=lambda: compute_vit_runs(steps, seeds, lrs),
        check=lambda: {"adafactor": train_vit("adafactor", s0, check_steps)["train_loss"],
                       "adamw": train_vit("adamw", s0, check_steps, lr=lr0)["train_loss"]},
        expected=lambda r: {"adafactor": r["adafactor"][str(s0)]["train_loss"][:check_steps],
                            "adamw": r["adamw"][repr(lr0)][str(s0)]["train_loss"][:check_steps]},
        rtol=1e-6,
    )
