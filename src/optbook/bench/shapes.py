"""The parameter sets the benchmark steps: one function, :func:`parameter_shapes`.

The shapes come from :mod:`optbook.tasks.model_shapes`, which states the published
configurations and where they come from; the benchmark fills them with
random numbers, since an optimizer step's cost depends only on the shapes
and dtypes. Each model also has a small variant of the same architecture
that a CPU steps in milliseconds.
"""

from __future__ import annotations

import math
from typing import Callable

from optbook.tasks.model_shapes import gpt2_like_shapes, llama_like_shapes

__all__ = ["MODELS", "CPU_MODELS", "ALL_MODELS", "parameter_shapes", "parameter_count"]

Shape = tuple[int, ...]


def _llama_1b(n_layer: int, d_model: int, d_ff: int, vocab: int, n_heads: int, n_kv_heads: int):
    # Llama-3.2-1B's published config: hidden 2048, intermediate 8192, 16
    # layers, 32 heads of 64 with 8 KV heads, vocabulary 128256, tied embeddings.
    return llama_like_shapes(n_layer, d_model, d_ff, vocab, n_heads=n_heads, n_kv_heads=n_kv_heads, tied=True)


#: For each model name, a description and two builders (full size, CPU size), each returning {name -> shape}.
MODELS: dict[str, tuple[str, Callable[[], dict], Callable[[], dict]]] = {
    "gpt2-small": (
        "GPT-2 small (124M): 12 layers, width 768, vocab 50257, context 1024",
        lambda: gpt2_like_shapes(12, 768, 50257, 1024),
        lambda: gpt2_like_shapes(2, 128, 4096, 256),
    ),
    "llama-1b": (
        "LLaMA-style ~1.2B (Llama-3.2-1B shapes): 16 layers, width 2048, MLP 8192, KV 512, vocab 128256",
        lambda: _llama_1b(16, 2048, 8192, 128256, n_heads=32, n_kv_heads=8),
        lambda: _llama_1b(2, 256, 1024, 4096, n_heads=4, n_kv_heads=1),
    ),
}

#: Sets for CPU runs only (``--device cpu --full``): kept apart from :data:`MODELS`, which the GPU
#: chapter and the GPU record iterate over.
CPU_MODELS: dict[str, tuple[str, Callable[[], dict], Callable[[], dict]]] = {
    "gpt2-30m": (
        "GPT-2-shaped 30.3M (the CPU benchmark's set): 6 layers, width 384, vocab 50257, context 1024",
        lambda: gpt2_like_shapes(6, 384, 50257, 1024),
        lambda: gpt2_like_shapes(2, 128, 4096, 256),
    ),
}
ALL_MODELS = {**MODELS, **CPU_MODELS}


def parameter_shapes(model: str, *, small: bool = False) -> list[tuple[str, Shape]]:
    """``(name, shape)`` of every parameter of ``model`` (a key of :data:`MODELS`).

    ``small=True`` gives the same architecture at a size a CPU steps in
    milliseconds (2 layers, narrow), for the CPU run of the benchmark.
    """
    if model not in ALL_MODELS:
        raise ValueError(f"model must be one of {sorted(ALL_MODELS)}, got {model!r}.")
    _, full, cpu = ALL_MODELS[model]
    return list((cpu() if small else full()).items())


def parameter_count(shapes: list[tuple[str, Shape]]) -> int:
    """Total number of elements of ``(name, shape)`` pairs."""
    return sum(math.prod(shape) for _, shape in shapes)
