"""Rank functions for tests/test_distributed.py (importable by name: each rank is a fresh process).

Every function runs on all ranks of a gloo group started by
:func:`optbook.distributed.launch.run_ranks` and returns a small dict of
measurements; rank 0 also computes the single-process reference, which is
cheap at these sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, DIM, HIDDEN = 13, 7, 9  # odd on purpose: uneven shards on 2, 3 and 4 ranks


class Tiny(nn.Module):
    """A one-block transformer with odd sizes, and a 1-row gate that leaves most ranks empty under FSDP."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.norm = nn.LayerNorm(DIM)
        self.q = nn.Linear(DIM, DIM, bias=False)
        self.k = nn.Linear(DIM, DIM, bias=False)
        self.v = nn.Linear(DIM, DIM, bias=False)
        self.o = nn.Linear(DIM, DIM)
        self.fc1 = nn.Linear(DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, DIM)
        self.gate = nn.Linear(DIM, 1)
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM), dim=-1) @ v
        x = x + self.o(att)
        x = x + self.fc2(F.gelu(self.fc1(self.norm(x)))) * torch.sigmoid(self.gate(x))
        return self.head(x)


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, VOCAB, (3, 5), generator=g), torch.randint(0, VOCAB, (3, 5), generator=g))
            for _ in range(steps)]


def loss_fn(model: nn.Module, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(ids)
    if hasattr(logits, "full_tensor"):
        logits = logits.full_tensor()
    return F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))


def fresh_model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def adafactor(model: nn.Module, name: str = "adafactor"):
    """Two groups: matrices with momentum and weight decay, the rest with the paper's defaults."""
    from optbook.optim import Adafactor, Lion, Sophia

    params = list(model.named_parameters())
    if name == "lion":
        return Lion([p for _, p in params], lr=1e-3, weight_decay=0.1)
    if name == "sophia":
        return Sophia([p for _, p in params], lr=1e-3, rho=0.05, k=1)
    mats = [p for n, p in params if n.endswith("weight") and p.dim() == 2 and not n.startswith("norm")]
    rest = [p for n, p in params if not (n.endswith("weight") and p.dim() == 2 and not n.startswith("norm"))]
    return Adafactor([{"params": mats, "beta1": 0.9, "weight_decay": 0.01}, {"params": rest}])


def train(model: nn.Module, opt, steps, *, count: list | None = None, shadow=None) -> None:
    """Steps on the same batches on every rank (so FSDP's averaged gradient is the single-process one).

    ``count`` collects the collectives of each ``opt.step()``. ``shadow`` is a
    ``(model, optimizer)`` pair of plain tensors stepped with the gathered
    gradients of ``model``: the optimizer alone, with the same gradients.
    """
    from optbook.distributed.comm import count_collectives
    from optbook.optim import Sophia

    for ids, target in steps:
        loss = loss_fn(model, ids, target)
        loss.backward()
        if shadow is not None:
            for (_, p), (_, q) in zip(model.named_parameters(), shadow[0].named_parameters()):
                q.grad = full(p.grad)
        for m, o in ((model, opt),) + (() if shadow is None else (shadow,)):
            if isinstance(o, Sophia):
                o.update_hessian([p.grad * p.grad for p in o.param_groups[0]["params"]])
        if count is None:
            opt.step()
        else:
            with count_collectives() as c:
                opt.step()
            count.append(dict(c))
        if shadow is not None:
            shadow[1].step()
            shadow[1].zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t.detach().clone()


def errors(model: nn.Module, reference: nn.Module, start: dict) -> dict:
    """Per parameter: (max |X - X_ref| / max |X_ref - X_0|, max |X - X_ref| / max |X_ref|): relative to the
    update and to the value. Every rank must call it (it gathers the shards)."""
    out = {}
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        x, r, x0 = full(p.detach()), ref[name].detach(), start[name]
        out[name] = (float((x - r).abs().max() / (r - x0).abs().max().clamp_min(1e-30)),
                     float((x - r).abs().max() / r.abs().max().clamp_min(1e-30)))
    return out


def reference(name: str, steps) -> tuple[nn.Module, dict]:
    """The single-process run: the same model, batches and optimizer on plain tensors."""
    model = fresh_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, adafactor(model, name), steps)
    return model, start


def compare(model: nn.Module, shadow: nn.Module, name: str, steps, start: dict) -> dict:
    """Errors against the shadow (same gradients) and against an independent single-process run."""
    ref, _ = reference(name, steps)
    return {"same_grads": errors(model, shadow, start), "single_process": errors(model, ref, start)}


def run(model: nn.Module, name: str, steps, counts: list | None = None):
    """Set up the optimizer and a shadow for ``model`` (already sharded) and train; returns the optimizer."""
    shadow = fresh_model()
    opt = adafactor(model, name)
    train(model, opt, steps, count=counts, shadow=(shadow, adafactor(shadow, name)))
    return opt, shadow


def tp_plan(gate: bool = True):
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    return {
        "q": ColwiseParallel(use_local_output=False),
        "k": ColwiseParallel(use_local_output=False),
        "v": ColwiseParallel(use_local_output=False),
        "o": RowwiseParallel(input_layouts=Shard(-1)),
        "fc1": ColwiseParallel(use_local_output=False),  # 9 columns: uneven, so keep the global shape
        "fc2": RowwiseParallel(),
        "head": ColwiseParallel(output_layouts=Replicate()),
    } | ({"gate": ColwiseParallel(output_layouts=Replicate())} if gate else {})


def placements_of(model: nn.Module) -> dict:
    return {n: repr(tuple(p.placements)) if hasattr(p, "placements") else "local" for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------- rank functions


def _fsdp_model(mesh):
    from torch.distributed.fsdp import fully_shard

    model = fresh_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    fully_shard(model, mesh=mesh)
    return model, start


def state_errors(opt, model: nn.Module, ref_opt, ref_model: nn.Module) -> dict:
    """max |S - S_ref| / max |S_ref| for every tensor of the optimizer state (DTensors gathered)."""
    ref = dict(ref_model.named_parameters())
    out = {}
    for name, p in model.named_parameters():
        mine, theirs = opt.state[p], ref_opt.state[ref[name]]
        for key, value in mine.items():
            a, b = full(value).double(), theirs[key].detach().double()
            out[f"{name}.{key}"] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    return out


def three_ranks(rank: int, world: int, ckpt: str) -> dict:
    """FSDP2 on 3 ranks: Adafactor, Lion and Sophia against one process, collective counts,
    torch.optim.Adafactor's failure, the unsupported-placement error, and a DCP save after 3 steps."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate

    from optbook.distributed import UnsupportedPlacementError
    from optbook.optim import Adafactor

    mesh = init_device_mesh("cpu", (world,))
    steps = batches(3)
    out: dict = {"errors": {}, "counts": {}}
    for name in ("adafactor", "lion", "sophia"):
        model, start = _fsdp_model(mesh)
        counts: list = []
        opt, shadow = run(model, name, steps, counts)
        out["counts"][name] = counts
        out["errors"][name] = compare(model, shadow, name, steps, start)
        if name == "adafactor":
            out["placements"] = placements_of(model)
            out["local_shapes"] = {n: tuple(p.to_local().shape) for n, p in model.named_parameters()}
            out["state_placements"] = {
                n: {k: repr(tuple(v.placements)) for k, v in opt.state[p].items() if isinstance(v, DTensor)}
                for n, p in model.named_parameters()
            }
            sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
            dcp.save(sd, checkpoint_id=ckpt)
            # A NaN in one rank's shard of one matrix: every rank skips that matrix (the flag is global),
            # the others step.
            loss_fn(model, *steps[0]).backward()
            if rank == 0:
                model.head.weight.grad.to_local()[0, 0] = float("nan")
            before = {n: full(q.detach()) for n, q in model.named_parameters()}
            opt.step()
            opt.zero_grad(set_to_none=True)
            out["nan_skips"] = {n: int(opt.state[q]["nonfinite_skips"]) for n, q in model.named_parameters()}
            out["nan_unchanged"] = {n: bool(torch.equal(full(q.detach()), before[n]))
                                    for n, q in model.named_parameters()}

    # torch.optim.Adafactor under FSDP2, as the issue reports.
    model, _ = _fsdp_model(mesh)
    loss_fn(model, *steps[0]).backward()
    try:
        torch.optim.Adafactor(model.parameters(), lr=1e-2).step()
        out["torch_adafactor"] = None
    except Exception as exc:  # noqa: BLE001 - the failure is the measurement
        out["torch_adafactor"] = f"{type(exc).__name__}: {exc}"

    # A Partial parameter is refused by name, before anything is written (also the other parameters).
    w = nn.Parameter(DTensor.from_local(torch.ones(3, 5), mesh, [Partial()], run_check=False))
    w.grad = DTensor.from_local(torch.ones(3, 5), mesh, [Replicate()], run_check=False)
    v = nn.Parameter(torch.ones(4))
    v.grad = torch.ones(4)
    opt = Adafactor([v, w])
    try:
        opt.step()
        out["partial_error"] = None
    except UnsupportedPlacementError as exc:
        out["partial_error"] = str(exc)
        out["partial_untouched"] = bool((w.to_local() == 1).all()) and bool((v == 1).all()) and not opt.state
    out.update(sophia_estimators(mesh))
    return out


def sophia_estimators(mesh) -> dict:
    """Sophia's Hessian estimators on FSDP2 shards against one process (same batch, same label draw)."""
    from optbook.optim.sophia import gauss_newton_bartlett, hutchinson

    ids, _ = batches(1)[0]
    model, _ = _fsdp_model(mesh)
    params = list(model.parameters())
    sentinel = [torch.full_like(p, 7.0) for p in params]
    for p, g in zip(params, sentinel):
        p.grad = g
    rows = ids.numel()
    # Every rank has the same batch, so FSDP's average over ranks is the one-process gradient: B = rows.
    est = gauss_newton_bartlett(lambda: model(ids), params, generator=torch.Generator().manual_seed(3), batch_rows=rows)
    ref_model = fresh_model()
    ref = gauss_newton_bartlett(lambda: ref_model(ids), list(ref_model.parameters()),
                                generator=torch.Generator().manual_seed(3))
    out = {
        "gnb_placements_match": all(type(e) is type(p) and e.placements == p.placements for e, p in zip(est, params)),
        "gnb_errors": [float((full(e) - r).abs().max() / r.abs().max().clamp_min(1e-30)) for e, r in zip(est, ref)],
        "gnb_nonzero": sum(bool(r.abs().max() > 0) for r in ref),
        "grads_restored": all(p.grad is g for p, g in zip(params, sentinel)),
    }
    for name, call in (("hutchinson_error", lambda: hutchinson(lambda: loss_fn(model, *batches(1)[0]), params)),
                       ("gnb_rows_error", lambda: gauss_newton_bartlett(lambda: model(ids), params))):
        try:
            call()
            out[name] = None
        except ValueError as exc:
            out[name] = str(exc)
    return out


def two_ranks(rank: int, world: int, ckpt: str) -> dict:
    """Load the 3-rank checkpoint on 2 ranks and continue; then tensor parallelism on 2 ranks."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import parallelize_module

    mesh = init_device_mesh("cpu", (world,))
    steps = batches(5)
    out: dict = {}

    # DCP 3 -> 2: the sharded run and a plain-tensor shadow both load the checkpoint.
    model, start = _fsdp_model(mesh)
    opt = adafactor(model)
    shadow = fresh_model()
    shadow_opt = adafactor(shadow)
    sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    sd_shadow = {"model": get_model_state_dict(shadow), "optim": get_optimizer_state_dict(shadow, shadow_opt)}
    dcp.load(sd, checkpoint_id=ckpt)
    dcp.load(sd_shadow, checkpoint_id=ckpt)
    set_model_state_dict(model, sd["model"])
    set_optimizer_state_dict(model, opt, sd["optim"])
    set_model_state_dict(shadow, sd_shadow["model"])
    set_optimizer_state_dict(shadow, shadow_opt, sd_shadow["optim"])
    out["dcp_steps"] = sorted({float(s["step"]) for s in opt.state.values()})
    out["dcp_state_placements"] = {
        n: {k: repr(tuple(v.placements)) for k, v in opt.state[p].items() if isinstance(v, DTensor)}
        for n, p in model.named_parameters()
    }
    uninterrupted = fresh_model()
    uninterrupted_opt = adafactor(uninterrupted)
    train(uninterrupted, uninterrupted_opt, steps[:3])
    out["dcp_state_errors"] = state_errors(opt, model, uninterrupted_opt, uninterrupted)
    train(model, opt, steps[3:], shadow=(shadow, shadow_opt))
    ref, _ = reference("adafactor", steps)
    out["dcp_errors"] = {"same_grads": errors(model, shadow, start), "single_process": errors(model, ref, start)}

    # Tensor parallelism: ColwiseParallel (Shard(0)) and RowwiseParallel (Shard(1), Replicate bias).
    steps = batches(3)
    model = fresh_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    parallelize_module(model, mesh, tp_plan())
    counts: list = []
    opt, shadow = run(model, "adafactor", steps, counts)
    out["tp_counts"] = counts
    out["tp_placements"] = placements_of(model)
    out["tp_errors"] = compare(model, shadow, "adafactor", steps, start)
    out.update(bf16_fsdp(mesh))
    return out


def _bf16_adafactor_run(model: nn.Module, steps, stochastic_rounding: bool):
    from optbook.optim import Adafactor

    opt = Adafactor(model.parameters(), beta1=0.9, stochastic_rounding=stochastic_rounding)
    opt.generator = torch.Generator().manual_seed(5)  # the same seed on every rank
    for ids, target in steps:
        loss_fn(model, ids, target).float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt


def bf16_fsdp(mesh) -> dict:
    """bfloat16 parameters under FSDP2 against one process: round to nearest, and stochastic rounding.

    Per parameter: the largest difference in units of bfloat16's spacing at the tensor's largest entry.
    """
    from torch.distributed.fsdp import fully_shard

    steps = batches(3)
    out = {}
    for sr in (False, True):
        model = fresh_model().to(torch.bfloat16)
        fully_shard(model, mesh=mesh)
        opt = _bf16_adafactor_run(model, steps, sr)
        ref = fresh_model().to(torch.bfloat16)
        _bf16_adafactor_run(ref, steps, sr)
        refs = dict(ref.named_parameters())
        key = "bf16_sr" if sr else "bf16_rtn"
        out[key] = {}
        for n, p in model.named_parameters():
            x, r = full(p.detach()).float(), refs[n].detach().float()
            spacing = torch.finfo(torch.bfloat16).eps * r.abs().max().clamp_min(1e-30)
            out[key][n] = float((x - r).abs().max() / spacing)
        out[key + "_dtypes"] = sorted({f"{p.dtype}/{v.dtype}" for p in model.parameters()
                                       for k, v in opt.state[p].items() if k in ("R", "C", "V", "exp_avg")})
    return out


def four_ranks(rank: int, world: int) -> dict:
    """A 2x2 mesh: tensor parallelism inside, FSDP2 across (placements such as _StridedShard)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import parallelize_module

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    steps = batches(3)
    model = fresh_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    # The 1-row gate stays out of TP here: FSDP2 cannot reduce-scatter the empty TP shard it would leave
    # (torch._chunk_cat expects non-empty tensors); under FSDP alone it is sharded (and empty on some ranks).
    parallelize_module(model, mesh["tp"], tp_plan(gate=False))
    fully_shard(model, mesh=mesh["dp"])
    counts: list = []
    opt, shadow = run(model, "adafactor", steps, counts)
    return {"counts": counts, "placements": placements_of(model),
            "errors": compare(model, shadow, "adafactor", steps, start)}
