"""The live run of the chapter "Adafactor across machines": four Adafactors under FSDP2 on gloo ranks.

:func:`upstream_trial` runs on every rank (start it with
:func:`optbook.distributed.launch.run_ranks`): a small odd-sized model sharded
with ``fully_shard``, one step of each upstream Adafactor (each failure
caught), then three steps of :class:`optbook.optim.Adafactor` with its
collectives counted and, on every rank, the same three steps in one process
for comparison.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__helpers__ = ("small_model", "upstream_trial")


def small_model() -> nn.Module:
    """Odd sizes on purpose: 9 rows over 2 ranks is 5 + 4, a 1-row layer leaves one rank empty."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 9), nn.GELU(), nn.Linear(9, 5), nn.GELU(), nn.Linear(5, 1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 7, generator=g), torch.randn(16, 1, generator=g)


def _loss(model: nn.Module) -> torch.Tensor:
    x, y = _data()
    return ((model(x) - y) ** 2).mean()


def _upstream() -> dict:
    def torch_adafactor(params):
        return torch.optim.Adafactor(params, lr=1e-2)

    def transformers_adafactor(params):
        from transformers.optimization import Adafactor

        return Adafactor(params)

    def pytorch_optimizer_adafactor(params):
        from pytorch_optimizer import AdaFactor

        return AdaFactor(params)

    def optbook_adafactor(params):
        from optbook.optim import Adafactor

        return Adafactor(params)

    return {
        "torch.optim.Adafactor": torch_adafactor,
        "transformers Adafactor": transformers_adafactor,
        "pytorch_optimizer AdaFactor": pytorch_optimizer_adafactor,
        "optbook.Adafactor": optbook_adafactor,
    }


def upstream_trial(rank: int, world: int, steps: int = 3) -> dict:
    """Try each Adafactor for one FSDP2 step; then run optbook's for ``steps`` steps against one process.

    Returns ``{"outcomes": {name: "ok" or "ErrorType: first line"}, "max_rel_error": float,
    "collectives": [Counter per step], "local_rows": rows of the first layer on this rank}``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from optbook.distributed.comm import count_collectives

    mesh = init_device_mesh("cpu", (world,))
    outcomes = {}
    for name, make in _upstream().items():
        model = small_model()
        fully_shard(model, mesh=mesh)
        _loss(model).backward()
        try:
            make(model.parameters()).step()
            outcomes[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - the failure is what the chapter shows
            first = str(exc).splitlines()[0] if str(exc) else ""
            outcomes[name] = f"{type(exc).__name__}: {first.split('. ')[0][:100]}"

    from optbook.optim import Adafactor

    model, reference = small_model(), small_model()
    fully_shard(model, mesh=mesh)
    opt, ref_opt = Adafactor(model.parameters()), Adafactor(reference.parameters())
    counts = []
    for _ in range(steps):
        _loss(model).backward()
        _loss(reference).backward()
        with count_collectives() as c:
            opt.step()
        counts.append(dict(c))
        ref_opt.step()
        opt.zero_grad(set_to_none=True)
        ref_opt.zero_grad(set_to_none=True)
    err = 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        full, q = p.detach().full_tensor(), q.detach()
        err = max(err, float((full - q).abs().max() / q.abs().max()))
    return {"outcomes": outcomes, "max_rel_error": err, "collectives": counts,
            "local_rows": int(model[0].weight.to_local().shape[0])}
