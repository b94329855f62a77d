r"""Optimizer-state bytes of Adafactor's successors on real model shapes: counted and measured.

For a parameter tensor of shape :math:`s = (s_1, \dots, s_k)` with
:math:`N = \prod_a s_a` entries, stored in :math:`b` bytes per number, the
state of each method is (:func:`closed_form_state_bytes`; :math:`n \times m`
the last two axes of a matrix, :math:`r' = \min(r, n, m)`):

=====================  ===========================================================================
AdamW                  :math:`2Nb`
Adafactor (β1 = 0)     :math:`(N/m + N/n)\,b` (:math:`n + m` for a matrix); :math:`Nb` for a vector
SM3                    :math:`b\sum_a s_a`
CAME                   :math:`Nb + 2(N/m + N/n)b`; :math:`2Nb` for a vector
Adam-mini              :math:`(N + B)\,b`, :math:`B` blocks (:func:`optbook.reference.adam_mini.blocks_for`)
GaLore (rank r)        :math:`(2\max(n,m)\,r' + \min(n,m)\,r')\,b`; :math:`2Nb` for a non-matrix
8-bit AdamW            :math:`2(N + 4\lceil N/2048\rceil)` bytes
Shampoo                :math:`2b\sum_a s_a^2` (factors and their inverse roots)
SOAP                   :math:`2Nb + 2b\sum_{a:\,s_a\le 10^4} s_a^2` (factors and bases; vectors: :math:`2Nb`)
Muon                   :math:`Nb` for hidden matrices; :math:`2Nb` (AdamW) for embeddings, output layer, vectors
schedule-free AdamW    :math:`2Nb` (:math:`z` and :math:`v`)
=====================  ===========================================================================

:func:`measured_state_bytes` instead *builds* the state that the NumPy
reference allocates for one tensor (in the given dtype; ``np.zeros`` maps
untouched pages lazily, so even a :math:`50257^2` Shampoo factor costs no
time) and adds the ``nbytes`` of its arrays. :func:`state_bytes_table` does
both for every shape class of a model (tensors of equal shape and role share
one measurement, scaled by their count) and asserts that they agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping

import numpy as np

from optbook.notation import symbol

__all__ = ["METHODS", "t5_base_shapes", "closed_form_state_bytes", "measured_state_bytes", "model_state_bytes",
           "state_bytes_table"]
__helpers__ = ("t5_base_shapes", "measured_state_bytes", "model_state_bytes", "state_bytes_table")

METHODS = ("AdamW", "Adafactor", "SM3", "CAME", "Adam-mini", "GaLore", "8-bit AdamW", "Shampoo", "SOAP", "Muon",
           "schedule-free AdamW")
_EMBED = ("embed", "wte", "wpe", "shared", "lm_head", "output.weight", "tok_emb", "pos_emb", "head.weight")


def t5_base_shapes() -> dict[str, tuple[int, ...]]:
    """T5-base (Raffel et al. 2020: the baseline of Sec. 3.1.1, called Base in Sec. 3.7; d_model 768, d_ff 3072,
    12 heads of 64, 12 encoder and 12 decoder blocks; vocabulary 32128 as released),
    ``transformers.T5ForConditionalGeneration`` layout, 222,903,552 parameters."""
    d, f, heads, buckets, layers, vocab = 768, 3072, 12, 32, 12, 32128
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (vocab, d)}
    for stack in ("encoder", "decoder"):
        for i in range(layers):
            b = f"{stack}.block.{i}.layer."
            subs = ["0.SelfAttention."] + (["1.EncDecAttention."] if stack == "decoder" else [])
            for k, sub in enumerate(subs):
                for name in ("q", "k", "v", "o"):
                    shapes[b + sub + f"{name}.weight"] = (d, d)
                if i == 0 and k == 0:
                    shapes[b + sub + "relative_attention_bias.weight"] = (buckets, heads)
                shapes[b + f"{k}.layer_norm.weight"] = (d,)
            k = len(subs)
            shapes.update({b + f"{k}.DenseReluDense.wi.weight": (f, d), b + f"{k}.DenseReluDense.wo.weight": (d, f),
                           b + f"{k}.layer_norm.weight": (d,)})
        shapes[f"{stack}.final_layer_norm.weight"] = (d,)
    return shapes


def _check(method, shape):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"shape must hold sizes >= 1, got {shape}.")
    return shape


def _hidden_matrix(name, shape):
    return len(shape) >= 2 and not any(k in name for k in _EMBED)


@symbol(r"S_{\text{method}}(s)\,b", "optimizer-state bytes of one tensor of shape s, per method")
def closed_form_state_bytes(method: str, name: str, shape, *, dtype_bytes: int = 4, heads: int = 12,
                            rank: int = 128) -> int:
    """The closed forms of the module docstring, for one tensor ``name`` of ``shape``."""
    from optbook.reference.adam_mini import blocks_for

    shape = _check(method, shape)
    b, n_all = dtype_bytes, math.prod(shape)
    mat = len(shape) >= 2
    rows_cols = (n_all // shape[-1] + n_all // shape[-2]) if mat else None
    if method in ("AdamW", "schedule-free AdamW"):
        return 2 * n_all * b
    if method == "Adafactor":
        return (rows_cols if mat else n_all) * b
    if method == "SM3":
        return sum(shape) * b if shape else b
    if method == "CAME":
        return (n_all + 2 * rows_cols) * b if mat else 2 * n_all * b
    if method == "Adam-mini":
        return (n_all + blocks_for(name, shape, heads)) * b
    if method == "GaLore":
        if len(shape) != 2:
            return 2 * n_all * b
        n, m = shape
        r = min(rank, n, m)
        return (2 * max(n, m) * r + min(n, m) * r) * b
    if method == "8-bit AdamW":
        return 2 * (n_all + 4 * max(1, math.ceil(n_all / 2048)))
    if method == "Shampoo":
        return 2 * b * sum(s * s for s in shape)
    if method == "SOAP":
        return 2 * n_all * b + (2 * b * sum(s * s for s in shape if s <= 10000) if mat else 0)
    return n_all * b if _hidden_matrix(name, shape) else 2 * n_all * b  # Muon


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if dataclasses.is_dataclass(obj):
        return sum(_nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "codebook")
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def measured_state_bytes(method: str, name: str, shape, *, dtype="float32", heads: int = 12, rank: int = 128) -> int:
    """Bytes of the arrays in the state that the NumPy reference of ``method`` allocates for one tensor.

    The codebook of an 8-bit state is shared by all tensors and is not counted.
    """
    from optbook.reference import adafactor, adam, adam_mini, blockwise_quantised, came, galore, muon, schedule_free
    from optbook.reference import shampoo, sm3

    shape = _check(method, shape)
    x = np.zeros(shape, dtype=dtype)
    z = lambda s: np.zeros(s, dtype=dtype)  # noqa: E731
    if method == "AdamW" or (method == "Muon" and not _hidden_matrix(name, shape)):
        state = adam.AdamState(m=z(shape), v=z(shape))
    elif method == "Adafactor":
        state = (adafactor.AdafactorState(r=z(shape[:-1]), c=z(shape[:-2] + shape[-1:])) if len(shape) >= 2
                 else adafactor.AdafactorState(v=z(shape)))
    else:
        init = {
            "SM3": sm3.init_sm3_state, "CAME": came.init_came_state,
            "Adam-mini": lambda x: adam_mini.init_adam_mini_state(x, adam_mini.blocks_for(name, shape, heads)),
            "GaLore": lambda x: galore.init_galore_state(x, rank), "8-bit AdamW": blockwise_quantised.init_adam8bit_state,
            "Shampoo": shampoo.init_shampoo_state, "SOAP": shampoo.init_soap_state, "Muon": muon.init_muon_state,
            "schedule-free AdamW": schedule_free.init_schedule_free_state,
        }[method]
        state = init(x)
    return _nbytes(state)


def model_state_bytes(method: str, shapes: Mapping[str, tuple], *, measure: bool = True, **options) -> int:
    """State bytes of a whole model: one measurement (or closed form) per shape class, times its count."""
    classes = Counter((tuple(s), _hidden_matrix(n, s), _role(n, s, options.get("heads", 12))) for n, s in shapes.items())
    examples = {}
    for n, s in shapes.items():
        examples.setdefault((tuple(s), _hidden_matrix(n, s), _role(n, s, options.get("heads", 12))), n)
    f = measured_state_bytes if measure else closed_form_state_bytes
    return sum(count * f(method, examples[key], key[0], **options) for key, count in classes.items())


def _role(name, shape, heads):
    from optbook.reference.adam_mini import blocks_for

    return blocks_for(name, shape, heads)


def state_bytes_table(models: Mapping[str, tuple[Mapping[str, tuple], int]], methods=METHODS, **options):
    """``{model: {method: bytes}}`` measured, after asserting that every entry equals its closed form.

    ``models`` maps a name to ``(shapes, heads)``.
    """
    out = {}
    for model, (shapes, heads) in models.items():
        out[model] = {}
        for method in methods:
            measured = model_state_bytes(method, shapes, heads=heads, **options)
            counted = model_state_bytes(method, shapes, measure=False, heads=heads, **options)
            if measured != counted:
                raise AssertionError(f"{method} on {model}: measured {measured} bytes, closed form {counted}.")
            out[model][method] = measured
    return out
