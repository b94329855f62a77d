r"""Where Adafactor is used, at the scale where it is used: parameter lists and optimizer state.

The chapter "Adafactor in applications" tests the applications that the
Cornell Optimization Wiki's Adafactor page lists. This module holds what the
chapter needs for the claims that concern memory: the full parameter list of
each model at its published size, built from the configuration printed in its
paper, and the optimizer state that Adam and Adafactor keep for it.

For parameter shapes :math:`s^{(1)}, \dots, s^{(L)}` with
:math:`N = \sum_\ell |s^{(\ell)}|` entries, the state in numbers is

.. math::

    S_{\text{Adam}} = 2N, \qquad
    S_{\text{Adafactor}} = \sum_{\ell:\ \text{rank} \ge 2} (n_\ell + m_\ell)
        + \sum_{\ell:\ \text{rank} < 2} |s^{(\ell)}|, \qquad
    S_{\text{Adafactor},\beta_1} = S_{\text{Adafactor}} + N,

(:func:`optbook.analysis.memory.adafactor_state_numbers` per tensor), and in
bytes :math:`4S` in float32 (:func:`state_memory_at_scale`).

The published configurations (each builder's docstring says which table):

* **T5-11B** (Raffel et al. 2020, Sec. 3.7 and the released ``t5-11b``
  config): :math:`d_{\text{model}} = 1024`, :math:`d_{ff} = 65536`,
  :math:`d_{kv} = 128`, 128 heads, 24 encoder and 24 decoder blocks,
  vocabulary 32128; the input embedding of both stacks and the output layer
  are one shared matrix. Stated size: "11 billion".
* **PaLM-540B** (Chowdhery et al. 2022, Table 1 and Sec. 2): 118 layers,
  :math:`d_{\text{model}} = 18432`, 48 heads of size 256, multi-query attention
  (one key and one value head shared by all heads), SwiGLU MLP of width
  :math:`4 d_{\text{model}}`, no biases, layer norms without bias, parallel
  attention and MLP (one norm per layer), vocabulary 256k, input and output
  embeddings shared. Stated size: 540.35B.
* **ViT-G/14** (Zhai et al. 2022, Table 2): width 1664, depth 48, MLP 8192,
  16 heads, patch 14 at 224 x 224 (256 patches, no class token). Stated size:
  1843M, which matches the encoder without any classification head.
* **LLaMA-7B and LLaMA-65B** (Touvron et al. 2023, Table 2): width 4096 / 8192,
  32 / 64 heads, 32 / 80 layers, SwiGLU width :math:`\frac23 4d` rounded up to a
  multiple of 256, vocabulary 32000, untied output layer. Stated sizes 6.7B
  and 65.2B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from optbook.analysis import memory as _memory
from optbook.notation import symbol
from optbook.tasks.model_shapes import Shapes, llama_like_shapes

__all__ = [
    "t5_like_shapes",
    "palm_like_shapes",
    "vit_like_shapes",
    "ScaleModel",
    "SCALE_MODELS",
    "state_memory_at_scale",
    "memory_table",
    "Claim",
    "CLAIMS",
]

# Public functions that list facts or tabulate rather than compute a book symbol.
__helpers__ = ("t5_like_shapes", "palm_like_shapes", "vit_like_shapes", "memory_table")


def _positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")


def t5_like_shapes(
    n_layers: int, d_model: int, d_ff: int, d_kv: int, n_heads: int, vocab: int = 32128, buckets: int = 32
) -> Shapes:
    """A T5 v1.0 encoder-decoder (``transformers.T5ForConditionalGeneration`` layout), tied embedding listed once.

    Per encoder block: query, key, value ``(n_heads * d_kv, d_model)``, output
    ``(d_model, n_heads * d_kv)``, a ReLU MLP ``(d_ff, d_model)``,
    ``(d_model, d_ff)``, two RMS-norm weights; a decoder block adds a
    cross-attention and its norm. The first block of each stack holds the
    relative-position bias ``(buckets, n_heads)``. No biases.
    ``t5_like_shapes(24, 1024, 65536, 128, 128)`` is T5-11B.
    """
    _positive(n_layers=n_layers, d_model=d_model, d_ff=d_ff, d_kv=d_kv, n_heads=n_heads, vocab=vocab, buckets=buckets)
    d, inner = d_model, n_heads * d_kv
    shapes: Shapes = {"shared.weight": (vocab, d)}
    for stack in ("encoder", "decoder"):
        for i in range(n_layers):
            b = f"{stack}.block.{i}."
            attentions = ("SelfAttention", "EncDecAttention") if stack == "decoder" else ("SelfAttention",)
            for k, kind in enumerate(attentions):
                for name in ("q", "k", "v"):
                    shapes[b + f"{kind}.{name}.weight"] = (inner, d)
                shapes[b + f"{kind}.o.weight"] = (d, inner)
                if kind == "SelfAttention" and i == 0:
                    shapes[b + f"{kind}.relative_attention_bias.weight"] = (buckets, n_heads)
                shapes[b + f"{kind}.layer_norm.weight"] = (d,)
            shapes.update({b + "wi.weight": (d_ff, d), b + "wo.weight": (d, d_ff), b + "ff_norm.weight": (d,)})
        shapes[f"{stack}.final_layer_norm.weight"] = (d,)
    return shapes


def palm_like_shapes(n_layers: int, d_model: int, n_heads: int, d_head: int, vocab: int = 256_000) -> Shapes:
    """A PaLM decoder (Chowdhery et al. 2022, Sec. 2), weights as ``(in, out)``, tied embedding listed once.

    Per layer: one layer-norm scale ``(d_model,)`` (parallel attention and
    MLP share it; no bias), the query ``(d_model, n_heads * d_head)``, one
    shared key and one shared value head ``(d_model, d_head)`` each
    (multi-query attention), the attention output ``(n_heads * d_head, d_model)``,
    and a SwiGLU MLP of width :math:`4 d_{\\text{model}}`: two input matrices
    ``(d_model, 4 d_model)`` and one output matrix ``(4 d_model, d_model)``.
    No biases anywhere. A final norm; the output layer is the embedding.
    """
    _positive(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, vocab=vocab)
    d, inner, f = d_model, n_heads * d_head, 4 * d_model
    shapes: Shapes = {"embedding": (vocab, d)}
    for i in range(n_layers):
        h = f"layer.{i}."
        shapes.update({
            h + "norm.scale": (d,), h + "attn.query": (d, inner), h + "attn.key": (d, d_head),
            h + "attn.value": (d, d_head), h + "attn.out": (inner, d),
            h + "mlp.gate": (d, f), h + "mlp.up": (d, f), h + "mlp.down": (f, d),
        })
    shapes["final_norm.scale"] = (d,)
    return shapes


def vit_like_shapes(
    n_layers: int, width: int, mlp: int, *, patch: int = 16, image: int = 224, channels: int = 3, n_classes: int = 0
) -> Shapes:
    """A ViT encoder (Dosovitskiy et al. 2021; no class token, as in Zhai et al. 2022), weights ``(in, out)``.

    A patch embedding ``(patch * patch * channels, width)`` with bias, a
    learned position embedding ``((image // patch) ** 2, width)``, then per
    block two LayerNorms (scale and bias), a fused QKV ``(width, 3 width)``
    and output ``(width, width)`` projection with biases and an MLP
    ``(width, mlp)``, ``(mlp, width)`` with biases; a final LayerNorm. A
    linear head ``(width, n_classes)`` with bias only if ``n_classes > 0``.
    ``vit_like_shapes(48, 1664, 8192, patch=14)`` is ViT-G/14's encoder.
    """
    _positive(n_layers=n_layers, width=width, mlp=mlp, patch=patch, image=image, channels=channels)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 0:
        raise ValueError(f"n_classes must be a whole number >= 0 (0: no head), got {n_classes!r}.")
    if image % patch:
        raise ValueError(f"image={image} must be a multiple of patch={patch}.")
    w = width
    shapes: Shapes = {
        "embedding.kernel": (patch * patch * channels, w), "embedding.bias": (w,),
        "pos_embedding": ((image // patch) ** 2, w),
    }
    for i in range(n_layers):
        b = f"block.{i}."
        shapes.update({
            b + "ln1.scale": (w,), b + "ln1.bias": (w,),
            b + "attn.qkv.kernel": (w, 3 * w), b + "attn.qkv.bias": (3 * w,),
            b + "attn.out.kernel": (w, w), b + "attn.out.bias": (w,),
            b + "ln2.scale": (w,), b + "ln2.bias": (w,),
            b + "mlp.in.kernel": (w, mlp), b + "mlp.in.bias": (mlp,),
            b + "mlp.out.kernel": (mlp, w), b + "mlp.out.bias": (w,),
        })
    shapes.update({"encoder_norm.scale": (w,), "encoder_norm.bias": (w,)})
    if n_classes:
        shapes.update({"head.kernel": (w, n_classes), "head.bias": (n_classes,)})
    return shapes


@dataclass(frozen=True)
class ScaleModel:
    """A published model: how to build its parameter list, and the size its paper states."""

    name: str
    build: Callable[[], Shapes]
    stated_parameters: float
    source: str
    shared_embeddings: str


#: The models of the chapter's table, by name.
SCALE_MODELS: dict[str, ScaleModel] = {
    m.name: m
    for m in (
        ScaleModel("T5-11B", lambda: t5_like_shapes(24, 1024, 65536, 128, 128, 32128), 11e9,
                   "Raffel et al. 2020, Sec. 3.7", "encoder input = decoder input = output layer"),
        ScaleModel("PaLM-540B", lambda: palm_like_shapes(118, 18432, 48, 256, 256_000), 540.35e9,
                   "Chowdhery et al. 2022, Table 1", "input embedding = output layer"),
        ScaleModel("ViT-G/14", lambda: vit_like_shapes(48, 1664, 8192, patch=14), 1843e6,
                   "Zhai et al. 2022, Table 2", "none (no head counted)"),
        ScaleModel("LLaMA-7B", lambda: llama_like_shapes(32, 4096, 11008, 32000), 6.7e9,
                   "Touvron et al. 2023, Table 2", "none: separate output layer"),
        ScaleModel("LLaMA-65B", lambda: llama_like_shapes(80, 8192, 22016, 32000), 65.2e9,
                   "Touvron et al. 2023, Table 2", "none: separate output layer"),
    )
}


@symbol(r"4\,(2N),\ 4\,S_{\mathrm{Adafactor}},\ 4\,(S_{\mathrm{Adafactor}} + N)",
        "float32 bytes of Adam's state and of Adafactor's, without and with beta1, over a model's parameter list")
def state_memory_at_scale(shapes: Mapping[str, tuple[int, ...]], bytes_per_number: int = 4) -> dict[str, int]:
    r"""Optimizer state of a whole parameter list, in numbers and bytes.

    Returns ``N`` (parameters), ``adam`` :math:`= 2N`, ``adafactor``
    :math:`= \sum (n+m) + \sum_{\text{vectors}} |s|` and ``adafactor_beta1``
    :math:`= S_{\text{Adafactor}} + N` (numbers), and the same three times
    ``bytes_per_number`` as ``*_bytes``. Counted per tensor with
    :func:`optbook.analysis.memory.adafactor_state_numbers` (factored over the
    last two dims, as in :class:`optbook.Adafactor`).
    """
    if not isinstance(shapes, Mapping) or not shapes:
        raise TypeError("shapes must be a non-empty dict name -> shape, e.g. SCALE_MODELS['T5-11B'].build().")
    if isinstance(bytes_per_number, bool) or not isinstance(bytes_per_number, int) or bytes_per_number < 1:
        raise ValueError(f"bytes_per_number must be a whole number >= 1 (4 for float32), got {bytes_per_number!r}.")
    n = _memory.total_numbers(shapes)
    adam = _memory.total_numbers(shapes, lambda s: _memory.full_state_numbers(s, 2))
    factored = _memory.total_numbers(shapes, _memory.adafactor_state_numbers)
    out = {"N": n, "adam": adam, "adafactor": factored, "adafactor_beta1": factored + n}
    for key in ("adam", "adafactor", "adafactor_beta1"):
        out[key + "_bytes"] = out[key] * bytes_per_number
    return out


def memory_table(models: Mapping[str, ScaleModel] | None = None, bytes_per_number: int = 4) -> list[dict]:
    """One row per model: parameters counted and stated, and the float32 state of each optimizer in GB (1e9 bytes)."""
    models = SCALE_MODELS if models is None else models
    rows = []
    for name, model in models.items():
        m = state_memory_at_scale(model.build(), bytes_per_number)
        rows.append({
            "model": name,
            "parameters (counted)": m["N"],
            "parameters (stated)": model.stated_parameters,
            "counted / stated": m["N"] / model.stated_parameters,
            "Adam state [GB]": m["adam_bytes"] / 1e9,
            "Adafactor state [GB]": m["adafactor_bytes"] / 1e9,
            "Adafactor + beta1 [GB]": m["adafactor_beta1_bytes"] / 1e9,
            "Adafactor / Adam": m["adafactor"] / m["adam"],
            "shared embeddings": model.shared_embeddings,
        })
    return rows


@dataclass(frozen=True)
class Claim:
    """One claim of the wiki page's Applications section, in the book's words, with its verdict."""

    key: str
    claim: str
    source: str
    verdict: str
    evidence: str


#: The Applications claims, in the order of the page. The verdicts are the chapter's conclusions.
CLAIMS: tuple[Claim, ...] = (
    Claim("t5", "T5 was trained with Adafactor; its small state made that possible", "raffel2020t5",
          "true with a caveat", "memory table; T5 miniature: the recipe trains without tuning but trails tuned AdamW"),
    Claim("llama", "LLaMA-scale models trained with Adafactor plus diagonalisation match Adam with less memory",
          "nguyen2025adadiag", "true with a caveat",
          "memory at LLaMA size computed; LLaMA itself used AdamW; the speed comparison is not testable here"),
    Claim("humor", "an ALBERT humor detector reached 99% with Adafactor, faster than Adam", "chauhan2021humor",
          "not testable here", "no data or pretrained model here"),
    Claim("multilingual", "Adafactor made multilingual models scale by cutting memory", "lepikhin2021gshard",
          "true with a caveat", "the mechanism of the memory table; the models are not rebuilt here"),
    Claim("vision", "Adafactor trains ViT on ImageNet with little memory; AdafacDiag(++) beats Adam",
          "nguyen2025adadiag", "true with a caveat",
          "ViT miniature: it trains, but trails tuned AdamW; AdafacDiag not testable here"),
    Claim("frameworks", "PyTorch provides torch.optim.AdaFactor", "pytorch2024adafactor", "true with a caveat",
          "the class is torch.optim.Adafactor; in JAX it is optax.adafactor"),
    Claim("no_compromise", "Adafactor saves resources without compromising performance", "cornellwiki2024adafactor",
          "true with a caveat",
          "long run: with beta1 = 0.9 it matches tuned AdamW; with the memory-saving defaults it trails in both miniatures"),
)
