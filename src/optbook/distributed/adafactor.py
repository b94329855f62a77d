r"""Adafactor on DTensor parameters: the sharded mathematics and its two coalesced all-reduces.

Why a sharded Adafactor needs communication, for one :math:`n \times m`
matrix :math:`X` whose local block on a rank is :math:`G_{I \times J}` (the
rows :math:`I` and columns :math:`J` it holds):

* the row sums :math:`(G^2 1_m)_i = \sum_{j} G_{ij}^2` are sums over *all*
  columns, so a rank holding only some columns has a partial sum; likewise
  the column sums over rows. Under ``Shard(0)`` the row sums are local and the
  column sums need a reduction; under ``Shard(1)`` the reverse;
* :math:`1^\top R_t`, :math:`\mathrm{RMS}(U_t)` (clipping) and
  :math:`\mathrm{RMS}(X_{t-1})` (the relative step) are global.

Every one of these is a *sum of per-rank partial sums*, so one all-reduce of
zero-padded partial sums gives the exact global value on every rank. Each rank
writes its partial row sums at their global positions in a vector of length
:math:`n` (per batch entry), its partial column sums in one of length
:math:`m`, and :math:`\sum X^2`; positions it does not hold stay zero, and a
rank that only replicates data it shares with another (a ``Replicate`` mesh
dim) writes nothing, so nothing is counted twice. After the sum every rank
holds the global :math:`G^2 1_m` and :math:`1_n^\top G^2` and takes its own
slice for its shard of :math:`R_t` and :math:`C_t`. The second all-reduce
carries, per matrix, :math:`S = 1^\top R_t` and
:math:`T = \sum_{ij} G_{ij}^2 / (R_i C_j)` (partial over the rank's block), from
which :math:`\sum U^2 = S\,T`: :math:`U_{ij}^2 = G_{ij}^2 S / (R_i C_j)`.

All parameters on one mesh share one flat buffer per pass: **two all-reduces
per step per device mesh**, whatever the number of parameters, each moving
:math:`O(n + m)` numbers per matrix (plus two per tensor), never a gradient.
The update itself is local: :math:`U = G \odot r c^\top` with
:math:`r_i = \sqrt{S / R_i}` and :math:`c_j = 1/\sqrt{C_j}`.

The result equals the single-process iteration of
:class:`optbook.optim.Adafactor` up to the order of floating-point summation.

State of a DTensor parameter: ``R``, ``C``, ``V`` and ``exp_avg`` are DTensors
on the parameter's mesh (``R`` sums over the column dim, so a mesh dim that
shards the column dim replicates ``R``; see
:func:`optbook.distributed.placement.drop_dim_placements`), so
``torch.distributed.checkpoint`` reshards them between world sizes; ``step``
and ``nonfinite_skips`` are plain 0-d tensors, as for a local parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optbook.distributed.comm import all_reduce_buffers, mesh_group
from optbook.distributed.placement import (
    UnsupportedPlacementError,
    check_placements,
    drop_dim_placements,
    layout_of,
    stat_dtensor,
)

__helpers__ = ("sharded_adafactor_step", "state_placements")


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


@dataclass
class _Plan:
    pair: tuple[int, int] | None
    layout: Any
    comm_mesh: Any = None  # the mesh whose group carries the sums: the root mesh of a submesh
    comm_owner: bool = True  # coordinate 0 on the root mesh dims the parameter's mesh lacks
    r_shape: tuple[int, ...] = ()
    c_shape: tuple[int, ...] = ()
    r_place: tuple = ()
    c_place: tuple = ()
    pos_r: Tensor | None = None
    pos_c: Tensor | None = None
    pos_b: Tensor | None = None
    r_owner: bool = True
    n_batch: int = 1


_PLANS: dict = {}


def _plan(p, factor_dims: str) -> _Plan:
    from optbook.optim.adafactor import _factor_pair

    mesh, placements, shape = p.device_mesh, tuple(p.placements), tuple(p.shape)
    key = (id(mesh), mesh, placements, shape, factor_dims)
    hit = _PLANS.get(key)
    if hit is not None:
        return hit
    layout = layout_of(mesh, placements, shape)
    pair = _factor_pair(shape, factor_dims)
    plan = _Plan(pair, layout)
    plan.comm_mesh, plan.comm_owner = _root_of(mesh)
    if not plan.comm_owner:
        # Replicated along the root mesh dims outside this submesh: one copy is counted.
        from dataclasses import replace

        plan.layout = layout = replace(layout, owner=False)
    if pair is not None:
        i, j = pair
        dims = range(len(shape))
        plan.r_shape = shape[:j] + shape[j + 1:]
        plan.c_shape = shape[:i] + shape[i + 1:]
        plan.r_place = drop_dim_placements(placements, j)
        plan.c_place = drop_dim_placements(placements, i)
        plan.pos_r = layout.positions([d for d in dims if d != j])
        plan.pos_c = layout.positions([d for d in dims if d != i])
        batch = [d for d in dims if d not in (i, j)]
        plan.pos_b = layout.positions(batch)
        plan.n_batch = math.prod(shape[d] for d in batch)
        plan.r_owner = layout_of(mesh, plan.r_place, plan.r_shape).owner and plan.comm_owner
    _PLANS[key] = plan
    return plan


def _root_of(mesh) -> tuple[Any, bool]:
    """The root mesh of a submesh (e.g. the data-parallel mesh of a 2-D FSDP+TP mesh) and whether this rank
    is at coordinate 0 of the root's other dims; parameters on a submesh and on its root then share one
    process group, so one all-reduce per pass serves them all."""
    try:
        root = mesh._get_root_mesh()
    except AttributeError:
        return mesh, True
    if root is None or root is mesh or root == mesh:
        return mesh, True
    names, root_names = mesh.mesh_dim_names, root.mesh_dim_names
    if not names or not root_names or not set(names) <= set(root_names):
        return mesh, True  # a flattened or unnamed submesh: its own group
    coord = root.get_coordinate()
    return root, all(c == 0 for name, c in zip(root_names, coord) if name not in names)


def state_placements(p, factor_dims: str = "last_two") -> dict[str, tuple]:
    """The placements of each statistic of the DTensor parameter ``p`` (``R``, ``C`` or ``V``, ``exp_avg``)."""
    plan = _plan(p, factor_dims)
    if plan.pair is None:
        return {"V": tuple(p.placements), "exp_avg": tuple(p.placements)}
    return {"R": plan.r_place, "C": plan.c_place, "exp_avg": tuple(p.placements)}


def _as_stat(value: Tensor, mesh, placements: tuple, dtype: torch.dtype):
    """A state tensor as a DTensor with ``placements`` (a plain tensor is taken as the full, replicated value)."""
    from torch.distributed.tensor import distribute_tensor

    if not _is_dtensor(value):
        return distribute_tensor(value.to(dtype), mesh, placements, src_data_rank=None)
    if tuple(value.placements) != tuple(placements) or value.device_mesh != mesh:
        value = value.redistribute(mesh, placements)
    return value if value.dtype == dtype else value.to(dtype)


def _prepare_state(opt, p, group: dict, plan: _Plan, cd: torch.dtype) -> dict:
    state = opt.state[p]
    device = p.to_local().device
    mesh = p.device_mesh
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=device)
        if plan.pair is None:
            state["V"] = torch.zeros_like(p, dtype=cd)
        else:
            lr_, lc_ = _local_shape(plan.layout, plan.pair[1]), _local_shape(plan.layout, plan.pair[0])
            state["R"] = stat_dtensor(torch.zeros(lr_, dtype=cd, device=device), mesh, plan.r_place, plan.r_shape)
            state["C"] = stat_dtensor(torch.zeros(lc_, dtype=cd, device=device), mesh, plan.c_place, plan.c_shape)
        state["nonfinite_skips"] = torch.zeros((), dtype=torch.int64, device=device)
    names = {"V": tuple(p.placements)} if plan.pair is None else {"R": plan.r_place, "C": plan.c_place}
    if group["beta1"]:
        names["exp_avg"] = tuple(p.placements)
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, dtype=cd)
    for name, pl in names.items():
        state[name] = _as_stat(state[name], mesh, pl, cd)
    return state


def _local_shape(layout, drop: int) -> tuple[int, ...]:
    s = layout.local_shape
    return s[:drop] + s[drop + 1:]


@dataclass
class _Item:
    p: Any
    group: dict
    plan: _Plan
    grad: Tensor  # local, statistics dtype
    state: dict
    cd: torch.dtype
    comm: Any
    off1: int = 0
    off2: int = 0
    sq: Tensor | None = None
    finite: Tensor | None = None
    U: Tensor | None = None  # unfactored: G / sqrt(V)
    rho: Tensor | float = 0.0  # rho_t
    x2: Tensor | None = None  # sum of X_{t-1}^2 over the whole tensor (reduced)


def validate(work: list[tuple[dict, list]], param_groups: list[dict] | None = None) -> None:
    """Refuse unsupported DTensor parameters and gradients before anything is written.

    ``param_groups`` (the optimizer's) only serves to name a parameter by its place in them.
    """
    for gi, (group, params) in enumerate(work):
        if param_groups is not None:
            gi = next((k for k, g in enumerate(param_groups) if g is group), gi)
        for pi, p in enumerate(params):
            pi = next((k for k, q in enumerate(group["params"]) if q is p), pi)
            where = f"parameter {pi} of param group {gi}"
            check_placements(p.placements, where)
            g = p.grad
            if not _is_dtensor(g):
                raise ValueError(
                    f"{where} is a DTensor but its gradient is a {type(g).__name__}; both must be DTensors."
                )
            if g.device_mesh != p.device_mesh:
                raise ValueError(f"{where}: its gradient lives on another device mesh ({g.device_mesh}) than the "
                                 f"parameter ({p.device_mesh}).")
            for pl in g.placements:
                if not (pl.is_shard() or pl.is_replicate() or pl.is_partial() or type(pl).__name__ == "_StridedShard"):
                    raise UnsupportedPlacementError(
                        f"{where}: its gradient has placement {pl!r}, which cannot be redistributed to the "
                        "parameter's placements."
                    )


def sharded_adafactor_step(opt, work: list[tuple[dict, list]], generator=None) -> None:
    """One Adafactor step of every DTensor parameter in ``work`` (``(group, params)`` pairs of ``opt``).

    Two ``all_reduce`` calls per device mesh, for all parameters together. Call
    :func:`validate` first (``optbook.optim.Adafactor.step`` does).
    """
    from optbook.optim.adafactor import _compute_dtype

    items: list[_Item] = []
    sizes1: dict = {}
    sizes2: dict = {}
    dtypes: dict = {}
    for group, params in work:
        for p in params:
            g = p.grad
            if tuple(g.placements) != tuple(p.placements):
                g = g.redistribute(p.device_mesh, p.placements)  # e.g. a Partial gradient: its own reduction
            plan = _plan(p, group["factor_dims"])
            cd = _compute_dtype(p.dtype)
            state = _prepare_state(opt, p, group, plan, cd)
            comm = mesh_group(plan.comm_mesh)
            gl = g.to_local()
            item = _Item(p, group, plan, gl if gl.dtype == cd else gl.to(cd), state, cd, comm)
            # pass 1: row and column sums (or the sum of G^2), and the sum of X^2
            n1 = math.prod(plan.r_shape) + math.prod(plan.c_shape) + 1 if plan.pair else 2
            item.off1 = sizes1.get(comm, 0)
            sizes1[comm] = item.off1 + n1
            item.off2 = sizes2.get(comm, 0)
            sizes2[comm] = item.off2 + (2 * plan.n_batch if plan.pair else 1)
            dtypes[comm] = torch.promote_types(dtypes.get(comm, torch.float32), cd)
            items.append(item)
    device = items[0].grad.device if items else torch.device("cpu")
    buf1 = {c: torch.zeros(n, dtype=dtypes[c], device=device) for c, n in sizes1.items()}
    buf2 = {c: torch.zeros(n, dtype=dtypes[c], device=device) for c, n in sizes2.items()}

    # Pass 1: partial sums of G^2 by row and by column (or of all of G^2), and of X^2.
    for it in items:
        b, o, plan = buf1[it.comm], it.off1, it.plan
        it.state["step"].add_(1.0)
        if not plan.layout.owner:
            continue
        x = it.p.to_local()
        if plan.pair is not None:
            i, j = plan.pair
            it.sq = it.grad.square()
            nr = math.prod(plan.r_shape)
            b[o + plan.pos_r] = it.sq.sum(j).reshape(-1).to(b.dtype)
            b[o + nr + plan.pos_c] = it.sq.sum(i).reshape(-1).to(b.dtype)
            o += nr + math.prod(plan.c_shape)
        else:
            b[o] = it.grad.square().sum().to(b.dtype)
            o += 1
        b[o] = x.to(it.cd).square().sum().to(b.dtype)
    all_reduce_buffers(buf1)

    # Local: R_t, C_t (or V_t), then the partial sums S = 1^T R_t and T = sum G^2 / (R C) (or sum U^2).
    for it in items:
        b, o, plan, group = buf1[it.comm], it.off1, it.plan, it.group
        numel = math.prod(plan.layout.shape)
        if numel == 0:
            continue
        cd = it.cd
        t = it.state["step"].reshape(1).double()
        w = t.pow(float(group["beta2_decay"]))
        beta2hat = torch.rsub(w, 1.0)
        it.rho = t.rsqrt().clamp_(max=float(group["lr"])) if group["relative_step"] else float(group["lr"])
        w, beta2hat = w.to(cd), beta2hat.to(cd)
        if group["relative_step"]:
            it.rho = it.rho.to(cd)
        eps1 = float(group["eps"][0])
        if plan.pair is not None:
            i, j = plan.pair
            n, m = plan.layout.shape[i], plan.layout.shape[j]
            nr, nc = math.prod(plan.r_shape), math.prod(plan.c_shape)
            row = b[o:o + nr].to(cd).add_(m * eps1)
            col = b[o + nr:o + nr + nc].to(cd).add_(n * eps1)
            it.finite = row.sum().reshape(1) < math.inf
            it.x2 = b[o + nr + nc]
            R, C = it.state["R"].to_local(), it.state["C"].to_local()
            row_l = row[plan.pos_r].view(R.shape)
            col_l = col[plan.pos_c].view(C.shape)
            torch.where(it.finite, R * beta2hat + row_l * w, R, out=R)
            torch.where(it.finite, C * beta2hat + col_l * w, C, out=C)
            b2, o2 = buf2[it.comm], it.off2
            if plan.r_owner:
                b2[o2 + plan.pos_b] = R.sum(i).reshape(-1).to(b2.dtype)
            if plan.layout.owner:
                if it.sq is None:
                    it.sq = it.grad.square()
                T = (it.sq * C.reciprocal().unsqueeze(i) * R.reciprocal().unsqueeze(j)).sum((i, j))
                b2[o2 + plan.n_batch + plan.pos_b] = T.reshape(-1).to(b2.dtype)
        else:
            it.finite = b[o].to(cd).reshape(1) < math.inf
            it.x2 = b[o + 1]
            V = it.state["V"].to_local()
            U = torch.where(it.finite, it.grad, 0.0)  # a skipped tensor's G counts as 0 (never written into p.grad)
            torch.where(it.finite, V * beta2hat + U.square().add(eps1) * w, V, out=V)
            it.U = U.mul(V.rsqrt())
            if plan.layout.owner:
                buf2[it.comm][it.off2] = it.U.square().sum().to(buf2[it.comm].dtype)
    all_reduce_buffers(buf2)

    # The update, local to each shard.
    for it in items:
        plan, group = it.plan, it.group
        numel = math.prod(plan.layout.shape)
        if numel == 0:
            continue
        _apply(it, buf2[it.comm], numel, generator)


def _apply(it: _Item, b2: Tensor, numel: int, generator) -> None:
    from optbook.optim.adafactor import _stochastic_round_to_bfloat16, _update_coefficients

    group, plan, cd = it.group, it.plan, it.cd
    lr, d, wd = float(group["lr"]), float(group["d"]), float(group["weight_decay"])
    beta1 = float(group["beta1"]) if group["beta1"] else None
    sign = 1.0 if group["maximize"] else -1.0
    o2 = it.off2
    if plan.pair is not None:
        i, j = plan.pair
        S = b2[o2:o2 + plan.n_batch].to(cd)
        T = b2[o2 + plan.n_batch:o2 + 2 * plan.n_batch].to(cd)
        usq = (S * T).sum().reshape(1)
    else:
        usq = b2[o2].to(cd).reshape(1)
    clip = usq.div(numel).sqrt_().div_(d).clamp_(min=1.0)
    rms_x = it.x2.to(cd).reshape(1).sqrt().div_(math.sqrt(numel)) if group["scale_parameter"] else None
    decay, scale, weight, minus = _update_coefficients(
        clip, it.finite, rms_x, it.rho, lr=lr, eps2=float(group["eps"][1]), weight_decay=wd, beta1=beta1, sign=sign,
        scale_parameter=group["scale_parameter"], relative_step=group["relative_step"],
    )
    skipped = ~it.finite
    if plan.pair is not None:
        R, C = it.state["R"].to_local(), it.state["C"].to_local()
        S_l = S[plan.pos_b].view(R.shape[:i] + R.shape[i + 1:])  # 1^T R of the local batch entries
        rowf = R.rsqrt().mul_(S_l.unsqueeze(i).sqrt())
        update = torch.where(it.finite, it.grad, 0.0).mul_(rowf.mul_(scale).unsqueeze(j))
        factor = C.rsqrt().unsqueeze(i)
    else:
        update, factor = it.U, scale
    x_local = it.p.to_local()
    x = x_local if x_local.dtype == cd else x_local.to(cd)
    if decay is not None:
        x.mul_(decay)
    if beta1 is None:
        x.addcmul_(update, factor, value=sign)
    else:
        mom = it.state["exp_avg"].to_local()
        mom.lerp_(update.mul_(factor), weight)
        x.addcmul_(mom, minus)
    if x is not x_local:
        if group["stochastic_rounding"] and x_local.dtype == torch.bfloat16:
            x_local.copy_(_stochastic_round_to_bfloat16(x, generator))
        else:
            x_local.copy_(x)
    it.state["nonfinite_skips"].add_(skipped[0])


def step_dtensors(opt, work: list[tuple[dict, list]]) -> list[tuple[dict, list]]:
    """Step the DTensor parameters of ``work`` (``(group, params)`` pairs) here; return the rest.

    Called by :meth:`optbook.optim.Adafactor.step` after its own checks and before
    it writes anything. Without DTensors (``torch.distributed.tensor`` never
    imported, or none among the parameters) it returns ``work`` unchanged.
    """
    import sys

    if "torch.distributed.tensor" not in sys.modules:
        return work
    sharded = [(group, [p for p in params if _is_dtensor(p)]) for group, params in work]
    if not any(params for _, params in sharded):
        return work
    sharded = [(group, params) for group, params in sharded if params]
    validate(sharded, opt.param_groups)
    sharded_adafactor_step(opt, sharded, getattr(opt, "generator", None))
    return [(group, [p for p in params if not _is_dtensor(p)]) for group, params in work]
