r"""A tiny T5-style encoder-decoder and a text-to-text task built from Python's own source text.

The model follows T5 (Raffel et al. 2020) in miniature: pre-norm blocks with
RMS normalisation (a scale, no bias), no biases in any linear layer, a ReLU
MLP, learned relative-position biases added to the attention logits (one
scalar per head and clipped distance :math:`\mathrm{clip}(j - i, -D, D)`, a
simpler form of T5's log-spaced buckets), and one embedding matrix shared by
the encoder input, the decoder input and the output layer, whose logits are
scaled by :math:`d_{\text{model}}^{-1/2}` as in T5 v1.0:

.. math::

    \mathrm{RMSNorm}(h) = \frac{h}{\sqrt{\mathrm{mean}(h^2) + 10^{-6}}}\odot w, \qquad
    \mathrm{Attn}(q, k)_{ij} = \frac{q_i\cdot k_j}{\sqrt{d_{\text{head}}}} + b_{\mathrm{clip}(j-i)}, \qquad
    \mathrm{logits} = d_{\text{model}}^{-1/2}\, h\,E^\top .

The task (:func:`reversal_task`): the input is a lower-case word of 3 to 8
letters taken from the identifiers and comments of the standard library's
source files (:mod:`optbook.tasks.text_corpus`), the target is the same word
spelled backwards. The words are split into disjoint training and validation
sets, so the validation loss measures the rule, not memorised words.

:func:`train_t5_mini` trains it with the optimizer named ``"adafactor_t5"``
(T5's recipe: :class:`optbook.Adafactor` with its defaults, relative step
:math:`\rho_t = \min(10^{-2}, 1/\sqrt t)`, which *is* T5's inverse square-root
schedule :math:`1/\sqrt{\max(t, 10^4)}`, no warm-up, no momentum, clipping at
:math:`d = 1`), or ``"adamw"`` at a given constant learning rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import optbook
from optbook.progress import progress
from optbook.tasks import text_corpus as tc

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "T5MiniConfig",
    "T5Mini",
    "reversal_task",
    "encode_pairs",
    "T5_OPTIMIZERS",
    "make_optimizer",
    "train_t5_mini",
    "compute_t5_runs",
    "stored_t5_runs",
    "T5_FILE",
]
__helpers__ = ("reversal_task", "encode_pairs", "make_optimizer", "train_t5_mini", "compute_t5_runs", "stored_t5_runs")

PAD, BOS, EOS = 0, 1, 2
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: The two optimizers of the miniature.
T5_OPTIMIZERS = ("adafactor_t5", "adamw")
T5_FILE = "book/data/applications_t5_mini.json"


@dataclass(frozen=True)
class T5MiniConfig:
    """Sizes of the model; ``d_model`` must be divisible by ``n_heads``."""

    vocab_size: int = 3 + len(_LETTERS)
    d_model: int = 32
    n_heads: int = 2
    d_ff: int = 64
    n_layers: int = 1
    max_distance: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}.")


class _RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class _Attention(nn.Module):
    def __init__(self, cfg: T5MiniConfig, relative: bool) -> None:
        super().__init__()
        d = cfg.d_model
        self.h, self.dh, self.max_distance = cfg.n_heads, d // cfg.n_heads, cfg.max_distance
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.rel = nn.Embedding(2 * cfg.max_distance + 1, cfg.n_heads) if relative else None

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        s = kv.shape[1]
        q = self.q(x).view(b, t, self.h, self.dh).transpose(1, 2)
        k = self.k(kv).view(b, s, self.h, self.dh).transpose(1, 2)
        v = self.v(kv).view(b, s, self.h, self.dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.dh)
        if self.rel is not None:
            distance = torch.arange(s)[None, :] - torch.arange(t)[:, None]
            idx = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
            scores = scores + self.rel(idx).permute(2, 0, 1)[None]
        scores = scores.masked_fill(~mask, float("-inf"))
        return self.o((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


class _FF(nn.Module):
    def __init__(self, cfg: T5MiniConfig) -> None:
        super().__init__()
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.wo(F.relu(self.wi(h)))


class _EncoderBlock(nn.Module):
    def __init__(self, cfg: T5MiniConfig) -> None:
        super().__init__()
        self.n1, self.attn, self.n2, self.ff = _RMSNorm(cfg.d_model), _Attention(cfg, True), _RMSNorm(cfg.d_model), _FF(cfg)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = self.n1(h)
        h = h + self.attn(z, z, mask)
        return h + self.ff(self.n2(h))


class _DecoderBlock(nn.Module):
    def __init__(self, cfg: T5MiniConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n1, self.self_attn = _RMSNorm(d), _Attention(cfg, True)
        self.n2, self.cross = _RMSNorm(d), _Attention(cfg, False)
        self.n3, self.ff = _RMSNorm(d), _FF(cfg)

    def forward(self, h, enc, self_mask, cross_mask):
        z = self.n1(h)
        h = h + self.self_attn(z, z, self_mask)
        h = h + self.cross(self.n2(h), enc, cross_mask)
        return h + self.ff(self.n3(h))


class T5Mini(nn.Module):
    """Encoder-decoder: ``loss(src, tgt_in, tgt_out)`` is the mean cross-entropy over non-padding targets."""

    def __init__(self, cfg: T5MiniConfig) -> None:
        super().__init__()
        self.config = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = nn.ModuleList(_EncoderBlock(cfg) for _ in range(cfg.n_layers))
        self.enc_norm = _RMSNorm(cfg.d_model)
        self.decoder = nn.ModuleList(_DecoderBlock(cfg) for _ in range(cfg.n_layers))
        self.dec_norm = _RMSNorm(cfg.d_model)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        src_keep = (src != PAD)[:, None, None, :]
        enc = self.shared(src)
        for block in self.encoder:
            enc = block(enc, src_keep)
        enc = self.enc_norm(enc)
        t = tgt_in.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
        h = self.shared(tgt_in)
        for block in self.decoder:
            h = block(h, enc, causal, src_keep)
        return self.dec_norm(h) @ self.shared.weight.T / math.sqrt(self.config.d_model)

    def loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        logits = self(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=PAD)


@lru_cache(maxsize=2)
def reversal_task(max_chars: int = 400_000, val_every: int = 5) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Distinct lower-case words of 3 to 8 letters from the stdlib corpus, split into (train, validation).

    The words are sorted; every ``val_every``-th goes to validation, the rest to training.
    """
    if val_every < 2:
        raise ValueError(f"val_every must be >= 2 (one word in val_every goes to validation), got {val_every}.")
    corpus = tc.load_stdlib_corpus(max_chars)
    text = corpus.vocab.decode(corpus.train.numpy())
    words = sorted(set(re.findall(r"(?<![A-Za-z0-9_])[a-z]{3,8}(?![A-Za-z0-9_])", text)))
    val = tuple(w for i, w in enumerate(words) if i % val_every == 0)
    train = tuple(w for i, w in enumerate(words) if i % val_every != 0)
    return train, val


def encode_pairs(words: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(src, tgt_in, tgt_out)`` int64 tensors for the reversal of ``words``, padded with ``PAD``.

    ``src`` = letters + EOS; ``tgt_in`` = BOS + reversed letters; ``tgt_out`` = reversed letters + EOS.
    """
    if len(words) == 0:
        raise ValueError("words must hold at least one word.")
    width = max(len(w) for w in words) + 1
    src = torch.full((len(words), width), PAD, dtype=torch.int64)
    tgt_in, tgt_out = src.clone(), src.clone()
    for i, w in enumerate(words):
        if not w or any(c not in _LETTERS for c in w):
            raise ValueError(f"words must be non-empty and lower-case a-z only, got {w!r}.")
        ids = [3 + _LETTERS.index(c) for c in w]
        rev = ids[::-1]
        src[i, :len(w) + 1] = torch.tensor(ids + [EOS])
        tgt_in[i, :len(w) + 1] = torch.tensor([BOS] + rev)
        tgt_out[i, :len(w) + 1] = torch.tensor(rev + [EOS])
    return src, tgt_in, tgt_out


def make_optimizer(name: str, params, lr: float | None = None) -> torch.optim.Optimizer:
    """``"adafactor_t5"`` (T5's recipe, see the module docstring) or ``"adamw"`` at constant ``lr``."""
    if name == "adafactor_t5":
        return optbook.Adafactor(params, foreach=True)
    if name == "adamw":
        if lr is None or not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"adamw needs a learning rate lr > 0, got {lr!r}.")
        return torch.optim.AdamW(params, lr=float(lr), weight_decay=0.01, foreach=True)
    raise ValueError(f"name must be one of {T5_OPTIMIZERS}, got {name!r}.")


def train_t5_mini(
    name: str, seed: int, steps: int, *, lr: float | None = None, batch_size: int = 64, eval_every: int = 50,
    config: T5MiniConfig = T5MiniConfig(), show_progress: bool = True,
) -> dict:
    """Train :class:`T5Mini` (float64, weights and batches from ``seed``) on :func:`reversal_task`.

    Returns ``{"train_loss": [per step], "val_steps": [...], "val_loss": [...]}`` (nats per target token),
    rounded to 10 significant digits. The validation set is every validation word, in one batch.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    train_words, val_words = reversal_task()
    train, val = encode_pairs(train_words), encode_pairs(val_words)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5Mini(config).double()
    opt = make_optimizer(name, model.parameters(), lr)
    out = {"train_loss": [], "val_steps": [], "val_loss": []}

    def evaluate(step: int) -> None:
        with torch.no_grad():
            out["val_steps"].append(step)
            out["val_loss"].append(float(f"{float(model.loss(*val)):.10g}"))

    evaluate(0)
    for step in progress(range(1, steps + 1), desc=f"T5 mini {name} seed {seed}", total=steps) if show_progress \
            else range(1, steps + 1):
        idx = torch.randint(0, len(train_words), (batch_size,), generator=gen)
        batch = tuple(z[idx] for z in train)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(*batch)
        loss.backward()
        opt.step()
        out["train_loss"].append(float(f"{float(loss.detach()):.10g}"))
        if step % eval_every == 0 or step == steps:
            evaluate(step)
    return out


def compute_t5_runs(steps: int, seeds: Sequence[int], lrs: Sequence[float]) -> dict:
    """Adafactor (T5 recipe) and AdamW at every ``lrs`` for every seed; AdamW's lr is chosen by mean final
    validation loss over the seeds. Returns ``{"adafactor_t5": {seed: run}, "adamw": {lr: {seed: run}}, "best_lr"}``."""
    out = {"adafactor_t5": {str(s): train_t5_mini("adafactor_t5", s, steps) for s in seeds}, "adamw": {}}
    for lr in lrs:
        out["adamw"][repr(float(lr))] = {str(s): train_t5_mini("adamw", s, steps, lr=lr) for s in seeds}
    means = {k: float(np.mean([r["val_loss"][-1] for r in v.values()])) for k, v in out["adamw"].items()}
    out["best_lr"] = float(min(means, key=means.get))
    return out


def stored_t5_runs(steps: int = 400, seeds: Sequence[int] = (0, 1, 2), lrs: Sequence[float] = (3e-3, 1e-2, 3e-2),
                   check_steps: int = 30):
    """:func:`compute_t5_runs` through the stored-results helper; live slice: the first ``check_steps`` training
    losses of seed ``seeds[0]`` for Adafactor and for AdamW at ``lrs[0]``, at rtol 1e-6."""
    from optbook.tasks.stored_results import stored_results

    key = {"experiment": "T5 mini, word reversal", "steps": steps, "seeds": list(seeds), "lrs": [float(v) for v in lrs],
           "config": asdict(T5MiniConfig()), "batch_size": 64}
    s0, lr0 = seeds[0], float(lrs[0])
    return stored_results(
        T5_FILE, key,
        compute=lambda: compute_t5_runs(steps, seeds, lrs),
        check=lambda: {"adafactor_t5": train_t5_mini("adafactor_t5", s0, check_steps)["train_loss"],
                       "adamw": train_t5_mini("adamw", s0, check_steps, lr=lr0)["train_loss"]},
        expected=lambda r: {"adafactor_t5": r["adafactor_t5"][str(s0)]["train_loss"][:check_steps],
                            "adamw": r["adamw"][repr(lr0)][str(s0)]["train_loss"][:check_steps]},
        rtol=1e-6,
    )
