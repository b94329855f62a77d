r"""A small causal character-level Transformer and the loop that trains it.

This is the model of the chapter's ablation, sized to train in seconds on one
CPU thread. It is a standard pre-LayerNorm decoder-only Transformer
(Vaswani et al., 2017; the GPT-2 layout of Radford et al., 2019):

.. math::

    h_0 &= E[x] + P \\
    h_{l} &= h'_{l} + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(h'_{l}) + b_1) + b_2,
    \qquad h'_{l} = h_{l-1} + \mathrm{Attn}(\mathrm{LN}(h_{l-1})) \\
    \mathrm{logits} &= W_{\mathrm{out}}\,\mathrm{LN}(h_L) + b_{\mathrm{out}}

with causal multi-head attention. There is no dropout and no weight tying, so
every parameter matrix is a separate tensor that an optimizer sees as is. The
parameter shapes, which decide what Adafactor factors, are listed by
:func:`parameter_shapes`.

Initialisation is PyTorch's default for each layer (``nn.Linear``: uniform
with bound :math:`1/\sqrt{\text{fan\_in}}`; ``nn.Embedding``: standard normal),
drawn under a private seed so that building a model neither depends on nor
changes the global random state. The scale matters for Adafactor, whose
relative step is proportional to :math:`\mathrm{RMS}(X)`; :func:`parameter_rms`
reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from optbook.progress import progress

__all__ = [
    "CharLMConfig",
    "CharTransformer",
    "TrainingRun",
    "build_model",
    "parameter_count",
    "parameter_shapes",
    "parameter_rms",
    "evaluate",
    "train",
    "train_from_scratch",
    "window_mean",
    "flatten_parameters",
]
# These build, run and measure a model; none computes a book symbol.
__helpers__ = (
    "build_model", "parameter_count", "parameter_shapes", "parameter_rms", "evaluate", "train", "train_from_scratch",
    "window_mean",
    "flatten_parameters",
)


@dataclass(frozen=True)
class CharLMConfig:
    """Sizes of the model. ``d_model`` must be divisible by ``n_heads``."""

    vocab_size: int
    context: int = 64
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; pick n_heads dividing d_model."
            )


class _CausalSelfAttention(nn.Module):
    def __init__(self, cfg: CharLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        mask = torch.ones(cfg.context, cfg.context, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(h).split(d, dim=-1)
        # (b, t, d) -> (b, heads, t, d / heads)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.n_heads)
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    def __init__(self, cfg: CharLMConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class CharTransformer(nn.Module):
    """Decoder-only Transformer over characters: ``forward(x)`` gives next-character logits.

    ``x`` has shape ``(batch, t)`` with ``t <= config.context``; the logits have
    shape ``(batch, t, vocab_size)``.
    """

    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.config.context:
            raise ValueError(f"input length {t} exceeds the model's context {self.config.context}.")
        h = self.tok_emb(x) + self.pos_emb.weight[:t]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean next-character cross-entropy in nats."""
        logits = self(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def build_model(config: CharLMConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> CharTransformer:
    """A :class:`CharTransformer` initialised from ``seed`` alone.

    The global torch random state is saved and restored around the
    construction, so the result does not depend on what ran before, and the
    caller's own random stream is not consumed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharTransformer(config)
    return model.to(dtype)


def parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())


def parameter_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in registration order."""
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def parameter_rms(model: nn.Module) -> dict[str, float]:
    r"""Name -> :math:`\mathrm{RMS}(X)` of every parameter (what scales Adafactor's relative step)."""
    with torch.no_grad():
        return {name: float(p.double().pow(2).mean().sqrt()) for name, p in model.named_parameters()}


@torch.no_grad()
def evaluate(model: CharTransformer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean cross-entropy (nats per character) over ``batches`` (equal-size batches weigh equally)."""
    was_training = model.training
    model.eval()
    losses = [float(model.loss(x, y)) for x, y in batches]
    model.train(was_training)
    if not losses:
        raise ValueError("batches is empty; pass at least one (x, y) batch to evaluate on.")
    return sum(losses) / len(losses)


@dataclass
class TrainingRun:
    """What one training run records.

    ``train_loss[k]`` is the loss of the batch used at step ``k + 1`` (before
    that step's update); ``val_loss[j]`` is the validation loss after
    ``val_steps[j]`` updates (``val_steps[0] = 0`` is the initial model).
    """

    name: str
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    nonfinite_step: int | None = None

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1]


def train(
    model: CharTransformer,
    optimizer: torch.optim.Optimizer,
    train_batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    val_batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    eval_every: int,
    name: str = "",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_step: Callable[[int], None] | None = None,
    show_progress: bool = True,
) -> TrainingRun:
    """Train for ``steps`` optimizer steps, evaluating every ``eval_every`` steps and at the end.

    ``train_batches`` yields ``(x, y)`` pairs (for example
    :func:`optbook.tasks.text_corpus.batches`); ``val_batches`` is a fixed list, so
    every run is evaluated on the same characters. If the training loss becomes
    non-finite the run stops there and records the step in ``nonfinite_step``.
    The progress bar (:func:`optbook.progress.progress`) prints the same text on
    every run.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be >= 1, got steps={steps}, eval_every={eval_every}.")
    run = TrainingRun(name=name)
    run.val_steps.append(0)
    run.val_loss.append(evaluate(model, val_batches))
    model.train()
    step_iter: Iterable[int] = range(1, steps + 1)
    if show_progress:
        step_iter = progress(step_iter, desc=name or "training", total=steps)
    for step in step_iter:
        x, y = next(train_batches)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        value = float(loss.detach())
        run.train_loss.append(value)
        if not math.isfinite(value):
            run.nonfinite_step = step
            break
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if on_step is not None:
            on_step(step)
        if step % eval_every == 0 or step == steps:
            run.val_steps.append(step)
            run.val_loss.append(evaluate(model, val_batches))
    return run


def train_from_scratch(
    config: CharLMConfig,
    make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    train_batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    val_batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    eval_every: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    flat: bool = False,
    name: str = "",
) -> tuple[TrainingRun, torch.optim.Optimizer]:
    """Build the model from ``seed`` (stored flat if ``flat``), make its optimizer, and :func:`train` it.

    Returns the run and the optimizer, whose state the chapter measures.
    """
    model = build_model(config, seed=seed, dtype=dtype)
    if flat:
        flatten_parameters(model)
    optimizer = make_optimizer(model.parameters())
    run = train(model, optimizer, train_batches, val_batches, steps=steps, eval_every=eval_every, name=name)
    return run, optimizer


def window_mean(values: list[float], width: int) -> tuple[list[int], list[float]]:
    """Means of consecutive, non-overlapping windows of ``width`` values (a trailing partial window is dropped).

    Returns ``(steps, means)`` where ``steps[j]`` is the 1-based index of the
    last value in window ``j``, so that per-step training losses can be drawn
    against the step at which each window ends.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}.")
    n = len(values) // width
    means = [sum(values[j * width:(j + 1) * width]) / width for j in range(n)]
    return [(j + 1) * width for j in range(n)], means


class _Unflatten(nn.Module):
    """Parametrization: the stored parameter is 1-D, the module sees it in ``shape``."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.view(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(-1)


def flatten_parameters(model: nn.Module) -> nn.Module:
    r"""Store every parameter of rank >= 2 as a 1-D tensor that the module views in its shape.

    The model computes exactly the same function with exactly the same values,
    but an optimizer now sees only vectors. For Adafactor that turns off
    factoring: a vector keeps the full second moment :math:`\hat V_t`, while
    :math:`\mathrm{RMS}(X)` and update clipping, which are taken over the
    whole tensor, do not change. This gives the paper's *unfactored* variant
    from an optimizer that always factors matrices. Uses
    :mod:`torch.nn.utils.parametrize`; returns ``model``, modified in place.
    """
    from torch.nn.utils import parametrize

    targets = [
        (module, name, param.shape)
        for module in model.modules()
        for name, param in list(module.named_parameters(recurse=False))
        if param.dim() >= 2
    ]
    for module, name, shape in targets:
        parametrize.register_parametrization(module, name, _Unflatten(shape))
    return model
