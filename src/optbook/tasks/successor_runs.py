r"""Run the successors of Adafactor: NumPy references against pytorch-optimizer, and on the character LM.

Two kinds of run live here.

* **Cross-checks.** :func:`run_reference` and :func:`run_upstream` drive a NumPy
  reference of :mod:`optbook.reference` and an installed torch optimizer on the
  same starting parameters and the same *given* gradients (so that the two
  runs differ only through their update rules), in float64, and return every
  iterate; :func:`max_relative_difference` compares them. :data:`CROSSCHECKS`
  pairs each reference with its upstream class and the options under which the
  two compute the same algorithm.
* **Training runs.** :func:`train_charlm` trains the book's character
  Transformer (:mod:`optbook.tasks.charlm`) with any optimizer of
  :data:`OPTIMIZERS` and records the training and validation losses;
  :func:`seed_runs` does that for several methods and seeds and returns plain
  numbers for :func:`optbook.tasks.stored_results.stored_results`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "random_problem",
    "run_reference",
    "run_upstream",
    "max_relative_difference",
    "crosscheck",
    "CROSSCHECKS",
    "muon_upstream_float64",
    "OPTIMIZERS",
    "make_optimizer",
    "charlm_setup",
    "train_charlm",
    "seed_runs",
    "step_time_ratios",
    "torch_state_bytes",
]
__helpers__ = tuple(n for n in __all__ if n not in ("CROSSCHECKS", "OPTIMIZERS"))


# ----------------------------------------------------------------------------------------------- cross-checks

def random_problem(shapes: Sequence[Sequence[int]], steps: int, seed: int = 0, grad_scale: float = 1.0):
    """Standard-normal starting parameters and ``steps`` lists of gradients (scaled by ``grad_scale``), float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    gen = np.random.default_rng(seed)
    params0 = [gen.standard_normal(tuple(s)) for s in shapes]
    grads = [[grad_scale * gen.standard_normal(tuple(s)) for s in shapes] for _ in range(steps)]
    return params0, grads


def run_reference(step: Callable, params0, grads, **hyper) -> list[list[np.ndarray]]:
    """Iterates ``[X_1, .., X_T]`` of every parameter under the NumPy rule ``step(x, g, state, **hyper)``."""
    xs = [np.array(p, dtype=float) for p in params0]
    states = [None] * len(xs)
    out = []
    for gs in grads:
        for i, g in enumerate(gs):
            xs[i], states[i] = step(xs[i], g, states[i], **hyper)
        out.append([x.copy() for x in xs])
    return out


def run_upstream(make: Callable, params0, grads, *, dtype=torch.float64, module: bool = False):
    """Iterates of a torch optimizer ``make(params)`` fed the given gradients; returns ``(iterates, optimizer)``.

    With ``module=True``, ``params0`` is a dict name -> array and ``make`` receives an ``nn.Module``
    whose ``named_parameters()`` carry those names (Adam-mini picks its blocks by name).
    """
    if module:
        holder = torch.nn.Module()
        params = []
        for name, p in params0.items():
            *path, leaf = name.split(".")
            mod = holder
            for part in path:
                if not hasattr(mod, part):
                    mod.add_module(part, torch.nn.Module())
                mod = getattr(mod, part)
            param = torch.nn.Parameter(torch.tensor(p, dtype=dtype))
            mod.register_parameter(leaf, param)
            params.append(param)
        opt = make(holder)
    else:
        params = [torch.nn.Parameter(torch.tensor(p, dtype=dtype)) for p in params0]
        opt = make(params)
    out = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        out.append([p.detach().to(torch.float64).numpy().copy() for p in params])
    return out, opt


def max_relative_difference(a, b) -> float:
    r""":math:`\max_{t,i} \lVert X^a_{t,i} - X^b_{t,i}\rVert_\infty / \lVert X^b_{t,i}\rVert_\infty` over two runs."""
    worst = 0.0
    for xa, xb in zip(a, b):
        for u, v in zip(xa, xb):
            scale = max(float(np.max(np.abs(v))), 1e-300)
            worst = max(worst, float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) / scale)
    return worst


@contextlib.contextmanager
def muon_upstream_float64():
    """Inside this block ``pytorch_optimizer.Muon`` runs its Newton-Schulz iteration in float64, not bfloat16."""
    from pytorch_optimizer.optimizer.muon import base
    from pytorch_optimizer.optimizer.utils import matrix

    original = base.zero_power_via_newton_schulz_5
    base.zero_power_via_newton_schulz_5 = functools.partial(matrix.zero_power_via_newton_schulz_5, dtype=torch.float64)
    try:
        yield
    finally:
        base.zero_power_via_newton_schulz_5 = original


def _po():
    import pytorch_optimizer as po

    return po


def _adam_mini_names(d: int, heads: int) -> dict:
    return {"embed.weight": (11, d), "layers.q_proj.weight": (d, d), "layers.fc.weight": (2 * d, d), "norm.weight": (d,)}


#: name -> (reference step, upstream factory, hyperparameters shared by both, note). The references take
#: ``**ref_extra`` on top. Shapes are chosen by :func:`crosscheck`.
CROSSCHECKS: dict[str, dict] = {}


def _register():
    from optbook.reference import adam_mini, came, galore, muon, schedule_free, shampoo, sm3

    po = _po()
    CROSSCHECKS.update({
        "SM3": dict(ref=sm3.sm3_step, ref_kw=dict(lr=0.1, beta=0.0, momentum=0.0),
                    up=lambda p: po.SM3(p, lr=0.1, beta=0.0, momentum=0.0, foreach=False)),
        "SM3, beta 0.9, momentum 0.5": dict(ref=sm3.sm3_step, ref_kw=dict(lr=0.1, beta=0.9, momentum=0.5),
                                           up=lambda p: po.SM3(p, lr=0.1, beta=0.9, momentum=0.5, foreach=False)),
        "CAME": dict(ref=came.came_step, ref_kw=dict(lr=1e-2, weight_decay=0.1),
                     up=lambda p: po.CAME(p, lr=1e-2, weight_decay=0.1, foreach=False)),
        "Adam-mini": dict(ref=adam_mini.adam_mini_step, ref_kw=dict(lr=1e-2), module=True,
                          up=lambda m: po.AdamMini(m, lr=1e-2, weight_decay=0.0, num_embeds=16, num_heads=4)),
        "GaLore": dict(ref=galore.galore_step, ref_kw=dict(lr=1e-2, rank=3, update_proj_gap=4, scale=0.25,
                                                           weight_decay=0.1),
                       up=lambda p: po.GaLore([{"params": p, "rank": 3, "update_proj_gap": 4, "scale": 0.25,
                                                "projection_type": "std"}], lr=1e-2, weight_decay=0.1,
                                              foreach=False)),
        "Shampoo": dict(ref=shampoo.shampoo_step, ref_kw=dict(lr=1e-2),
                        up=lambda p: po.Shampoo(p, lr=1e-2)),
        "SOAP": dict(ref=shampoo.soap_step, ref_kw=dict(lr=3e-3, precondition_frequency=10, weight_decay=0.01),
                     up=lambda p: po.SOAP(p, lr=3e-3, precondition_frequency=10, weight_decay=0.01)),
        "Muon": dict(ref=muon.muon_step, ref_kw=dict(lr=2e-2, weight_decay=0.1),
                     up=lambda p: po.Muon([{"params": p, "use_muon": True}], lr=2e-2, weight_decay=0.1,
                                          foreach=False)),
        "schedule-free AdamW": dict(ref=schedule_free.schedule_free_adamw_step,
                                    ref_kw=dict(lr=2.5e-3, weight_decay=0.1, warmup_steps=3, eps_inside=1e-15),
                                    up=lambda p: po.ScheduleFreeAdamW(p, lr=2.5e-3, weight_decay=0.1, warmup_steps=3,
                                                                      foreach=False)),
    })


def crosscheck(name: str, *, steps: int = 8, seed: int = 0, shapes=None, **ref_overrides):
    """Run reference ``name`` of :data:`CROSSCHECKS` and its upstream twin; ``(max relative difference, ref, up)``.

    Default shapes: a wide and a tall matrix and a vector (matrices only for
    GaLore, Muon and Shampoo, whose upstream classes are meant for matrices;
    named tensors for Adam-mini).
    """
    if not CROSSCHECKS:
        _register()
    if name not in CROSSCHECKS:
        raise ValueError(f"name must be one of {sorted(CROSSCHECKS)}, got {name!r}.")
    spec = CROSSCHECKS[name]
    if shapes is None:
        matrices_only = name in ("GaLore", "Muon", "Shampoo")
        shapes = [(12, 7), (6, 10)] + ([] if matrices_only else [(9,)])
    if spec.get("module"):
        named = _adam_mini_names(16, 4)
        p0, grads = random_problem(list(named.values()), steps, seed)
        ref = run_reference_named(spec["ref"], dict(zip(named, p0)), grads, heads=4, **{**spec["ref_kw"], **ref_overrides})
        up, _ = run_upstream(spec["up"], dict(zip(named, p0)), grads, module=True)
    else:
        p0, grads = random_problem(shapes, steps, seed)
        ref = run_reference(spec["ref"], p0, grads, **{**spec["ref_kw"], **ref_overrides})
        up, _ = run_upstream(spec["up"], p0, grads)
    return max_relative_difference(up, ref), ref, up


def run_reference_named(step, params0: Mapping[str, np.ndarray], grads, *, heads: int, **hyper):
    """:func:`run_reference` for a rule whose blocks depend on the tensor's name (Adam-mini)."""
    from optbook.reference.adam_mini import blocks_for

    names = list(params0)
    xs = [np.array(params0[n], dtype=float) for n in names]
    states = [None] * len(xs)
    out = []
    for gs in grads:
        for i, g in enumerate(gs):
            xs[i], states[i] = step(xs[i], g, states[i], blocks=blocks_for(names[i], xs[i].shape, heads), **hyper)
        out.append([x.copy() for x in xs])
    return out


__all__.append("run_reference_named")


@contextlib.contextmanager
def galore_upstream_float64():
    """Inside this block ``pytorch_optimizer.GaLore`` takes the SVD of a float64 gradient in float64
    (it casts to float32 otherwise); nothing else of the class changes."""
    from pytorch_optimizer.optimizer.utils.galore import GaLoreProjector

    def svd64(self, weights, projection_type, from_random_matrix=False):
        u, _, vh = torch.linalg.svd(weights, full_matrices=False)
        r = self.rank
        return {"right": vh[:r].clone(), "left": u[:, :r].clone()}.get(projection_type, (u[:, :r].clone(), vh[:r].clone()))

    original = GaLoreProjector.get_orthogonal_matrix
    GaLoreProjector.get_orthogonal_matrix = svd64
    try:
        yield
    finally:
        GaLoreProjector.get_orthogonal_matrix = original


__all__.append("galore_upstream_float64")


# ------------------------------------------------------------------------------------------------ training runs

_EMBEDDING_NAMES = ("tok_emb", "pos_emb", "head.")


def _muon_groups(model, lr, adamw_lr):
    hidden = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith(_EMBEDDING_NAMES)]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith(_EMBEDDING_NAMES))]
    return [{"params": hidden, "use_muon": True, "lr": lr}, {"params": rest, "use_muon": False, "lr": adamw_lr}]


def _galore_groups(model, rank):
    mats = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    return [{"params": mats, "rank": rank, "update_proj_gap": 50, "scale": 0.25, "projection_type": "std"},
            {"params": rest}]


class NumpyStepOptimizer(torch.optim.Optimizer):
    """A torch optimizer that applies a NumPy reference rule ``step(x, g, state, **hyper) -> (x, state)``
    to every parameter, on float64 copies of the parameter and its gradient (for small models only).

    The rule's state object lives in ``optimizer.state[p]["reference"]``; its NumPy arrays other than
    codebooks are also exposed there as tensors sharing their memory (``"arrays"``-prefixed keys), so that
    :func:`optbook.analysis.memory.optimizer_state_bytes` counts the bytes the rule keeps. Parameters
    without a gradient are skipped. A rule that raises leaves the parameter and its state as they were.
    """

    def __init__(self, params, step: Callable, **hyper):
        if not callable(step):
            raise TypeError(f"step must be a callable step(x, g, state, **hyper), got {type(step).__name__}.")
        super().__init__(params, {})
        self._step_rule, self._hyper = step, dict(hyper)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                x = p.detach().cpu().numpy().astype(np.float64)
                g = p.grad.detach().cpu().numpy().astype(np.float64)
                st = self.state[p]
                x_new, ref = self._step_rule(x, g, st.get("reference"), **self._hyper)
                p.copy_(torch.from_numpy(np.asarray(x_new, dtype=np.float64)).to(p.dtype))
                st.clear()
                st["reference"] = ref
                for i, arr in enumerate(_state_arrays(ref)):
                    st[f"arrays{i}"] = torch.from_numpy(arr)
        return loss


def _state_arrays(obj, depth: int = 0):
    """The NumPy arrays inside a reference state (dataclass fields, tuples, lists), codebooks left out."""
    import dataclasses

    if isinstance(obj, np.ndarray):
        yield obj
    elif depth > 4 or obj is None:
        return
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name != "codebook":
                yield from _state_arrays(getattr(obj, f.name), depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _state_arrays(v, depth + 1)


def _adam8bit(params, **hyper):
    from optbook.reference.blockwise_quantised import adam8bit_step

    return NumpyStepOptimizer(params, adam8bit_step, **hyper)


__all__.append("NumpyStepOptimizer")

#: For each method name, a factory of the model's optimizer for the character-LM runs, with one untuned learning rate per method.
#: "8-bit AdamW" is the NumPy reference ``blockwise_quantised.adam8bit_step`` with torch AdamW's lr, betas, eps and
#: weight decay (0.01), so that it differs from the "AdamW" entry only by its 8-bit states.
OPTIMIZERS: dict[str, Callable] = {
    "AdamW": lambda m: torch.optim.AdamW(m.parameters(), lr=3e-3),
    "Adafactor": lambda m: __import__("optbook").Adafactor(m.parameters()),
    "SM3": lambda m: _po().SM3(m.parameters(), lr=3e-2, foreach=False),
    "CAME": lambda m: _po().CAME(m.parameters(), lr=3e-3, foreach=False),
    "Adam-mini": lambda m: _po().AdamMini(m, lr=3e-3, weight_decay=0.0, num_embeds=m.config.d_model,
                                          num_heads=m.config.n_heads),
    "GaLore": lambda m: _po().GaLore(_galore_groups(m, 8), lr=3e-3, foreach=False),
    "8-bit AdamW": lambda m: _adam8bit(m.parameters(), lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
    "Shampoo": lambda m: _po().Shampoo(m.parameters(), lr=3e-3),
    "SOAP": lambda m: _po().SOAP(m.parameters(), lr=3e-3),
    "Muon": lambda m: _po().Muon(_muon_groups(m, 2e-2, 3e-3), foreach=False),
    "schedule-free AdamW": lambda m: _po().ScheduleFreeAdamW(m.parameters(), lr=3e-3, warmup_steps=10, foreach=False),
}


def make_optimizer(name: str, model):
    """The optimizer ``name`` of :data:`OPTIMIZERS` for ``model``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}.")
    return OPTIMIZERS[name](model)


def charlm_setup(chars: int = 300_000, *, context: int = 32, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int = 128, val_batches: int = 4, batch: int = 8):
    """Corpus, model configuration and fixed validation batches of the runs (a smaller sibling of the practice chapter's).

    ``chars`` caps the corpus: :func:`optbook.tasks.text_corpus.load_stdlib_corpus` takes whole standard-library files
    until the next one would overshoot the cap, so the corpus can be much shorter than ``chars``. The validation set is
    ``val_batches`` fixed batches of ``batch`` sequences of ``context`` characters; the training batch is
    :func:`train_charlm`'s ``batch``.
    """
    from optbook.tasks import charlm
    from optbook.tasks import text_corpus as tc

    corpus = tc.load_stdlib_corpus(chars, val_fraction=0.1)
    config = charlm.CharLMConfig(vocab_size=len(corpus.vocab), context=context, d_model=d_model, n_heads=n_heads,
                                 n_layers=n_layers, d_ff=d_ff)
    return corpus, config, tc.fixed_batches(corpus.val, val_batches, batch, context, seed=1)


def train_charlm(name: str, setup, *, steps: int, seed: int = 0, batch: int = 8, dtype=torch.float64) -> dict:
    """Train the character LM with optimizer ``name`` from ``seed``; training losses, final validation loss, state bytes.

    Schedule-free AdamW is evaluated at its average :math:`x_t` (``optimizer.eval()``).
    """
    from optbook.analysis.memory import optimizer_state_bytes
    from optbook.tasks import charlm
    from optbook.tasks import text_corpus as tc

    corpus, config, val = setup
    model = charlm.build_model(config, seed=seed, dtype=dtype)
    model.config = config
    opt = make_optimizer(name, model)
    batches = tc.batches(corpus.train, batch, config.context, seed=seed)
    losses = []
    torch.manual_seed(seed)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()
    final = charlm.evaluate(model, val)
    return {"train_loss": losses, "val_loss": final, "state_bytes": optimizer_state_bytes(opt)}


def seed_runs(names: Sequence[str], setup, *, steps: int, seeds: Sequence[int]) -> dict:
    """:func:`train_charlm` for every method and seed: ``{name: {"train_loss": [[..] per seed], "val_loss": [..],
    "state_bytes": int}}``."""
    from optbook.progress import progress

    out = {}
    for name in progress(list(names), desc="methods"):
        runs = [train_charlm(name, setup, steps=steps, seed=s) for s in seeds]
        out[name] = {"train_loss": [r["train_loss"] for r in runs], "val_loss": [r["val_loss"] for r in runs],
                     "state_bytes": runs[0]["state_bytes"]}
    return out


def step_time_ratios(names: Sequence[str], setup, *, baseline: str = "AdamW", repeats: int = 20, seed: int = 0):
    """Median over rounds of (step time / the baseline's step time in the same round), interleaved, one model each."""
    import statistics

    from optbook.bench.timing import interleaved_step_times
    from optbook.tasks import charlm

    corpus, config, val = setup
    x, y = val[0]
    optimizers = {}
    for name in names:
        model = charlm.build_model(config, seed=seed, dtype=torch.float32)
        model.config = config
        model.loss(x, y).backward()
        optimizers[name] = make_optimizer(name, model)
    samples = interleaved_step_times(optimizers, warmup=3, repeats=repeats)
    base = samples[baseline]
    return {n: statistics.median(a / b for a, b in zip(t, base)) for n, t in samples.items()}


def _tensors(obj, depth=0):
    if torch.is_tensor(obj):
        yield obj
    elif depth > 4:
        return
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for v in vars(obj).values():
            yield from _tensors(v, depth + 1)


def torch_state_bytes(names: Sequence[str], setup, seed: int = 0) -> dict:
    """Bytes of every tensor reachable from ``optimizer.state`` (inside lists and helper objects too, each storage
    once) of each torch optimizer after one step on the character LM in float32."""
    from optbook.tasks import charlm

    corpus, config, val = setup
    x, y = val[0]
    out = {}
    for name in names:
        model = charlm.build_model(config, seed=seed, dtype=torch.float32)
        model.config = config
        model.loss(x, y).backward()
        opt = make_optimizer(name, model)
        opt.step()
        seen, total = set(), 0
        for t in _tensors(dict(opt.state)):
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in seen and key[1] > 0:
                seen.add(key)
                total += key[1]
        out[name] = total
    return out


# ------------------------------------------------------------------------------------- the chapter's measurements

def accumulator_comparison(n: int = 24, m: int = 16, steps: int = 30, seed: int = 0) -> dict:
    r"""AdaGrad's :math:`\gamma_t = \sum_s G_s^2`, SM3's :math:`\nu_t` and :math:`\min(\mu_t(\text{row}), \mu_t(\text{col}))`,
    the upper bound :math:`\min(\sum_s \max_j G_s(i,j)^2, \sum_s \max_i G_s(i,j)^2)`, and the rank-one
    :math:`\hat V = R C/1^\top R` of :math:`\gamma_t`, on gradients with heavy-tailed row and column scales."""
    from optbook.reference import adafactor as af
    from optbook.reference import sm3

    gen = np.random.default_rng(seed)
    row_scale, col_scale = np.exp(gen.standard_normal((n, 1))), np.exp(gen.standard_normal((1, m)))
    gamma = np.zeros((n, m))
    accs = sm3.init_sm3_state(np.zeros((n, m))).accumulators
    row_bound, col_bound = np.zeros((n, 1)), np.zeros((1, m))
    nus = []
    for _ in range(steps):
        g = row_scale * col_scale * gen.standard_normal((n, m)) * np.exp(gen.standard_normal((n, m)))
        gamma = gamma + g * g
        nu = sm3.sm3_nu(accs, g)
        accs = sm3.sm3_cover_maxima(nu)
        row_bound = row_bound + (g * g).max(axis=1, keepdims=True)
        col_bound = col_bound + (g * g).max(axis=0, keepdims=True)
        nus.append(nu)
    return {"gamma": gamma, "nu": nus[-1], "min_cover": np.minimum(accs[0], accs[1]),
            "upper": np.minimum(row_bound, col_bound),
            "v_hat": af.factored_second_moment(gamma.sum(axis=1), gamma.sum(axis=0))}


def quantiser_errors(codebook, *, size: int = 50_000, block: int = 2048, seed: int = 0) -> dict:
    """Quantise heavy-tailed float32-representable numbers; largest error over its bound, and median relative error."""
    from optbook.reference import blockwise_quantised as bq

    gen = np.random.default_rng(seed)
    s = (gen.standard_normal(size) * np.exp(2 * gen.standard_normal(size))).astype(np.float32).astype(float)
    if codebook.min() >= 0:
        s = np.abs(s)
    q = bq.quantise(s, codebook, block)
    err = np.abs(bq.dequantise(q, block) - s)
    bound = np.repeat(bq.quantisation_error_bound(q.absmax, codebook), block)[:size]
    nz = s != 0
    return {"worst_over_bound": float(np.max(err / bound)), "median_relative": float(np.median(err[nz] / np.abs(s[nz]))),
            "zeroed": float(np.mean(bq.dequantise(q, block)[nz] == 0))}


__all__ += ["accumulator_comparison", "quantiser_errors"]

# Everything public here runs or compares optimizers; none computes a book symbol.
__helpers__ = tuple(n for n in __all__ if n not in ("CROSSCHECKS", "OPTIMIZERS"))
