"""Parameter shapes of well-known Transformers, as facts, for counting optimizer state.

An optimizer's memory and its step time depend only on the shapes (and
dtypes) of the parameters, so the book can reason about real models without
downloading them. Every builder returns an ordered ``dict`` from the
parameter's name, as in the Hugging Face ``transformers`` implementation of the
model (``model.named_parameters()``, tied weights listed once), to its shape.
The published configurations are:

* **GPT-2 small** (Radford et al. 2019, "Language Models are Unsupervised
  Multitask Learners"; the released ``gpt2`` checkpoint, 124,439,808
  parameters): 12 layers, width 768, vocabulary 50257, context 1024, a
  4x MLP, every linear layer with a bias. The checkpoint stores the linear
  weights as ``(in, out)`` (``Conv1D``), and the output layer is tied to the
  token embedding.
* **BERT-base** (Devlin et al. 2019, "BERT: Pre-training of Deep
  Bidirectional Transformers for Language Understanding", Sec. 3: L=12,
  H=768, A=12, 110M; ``bert-base-uncased``: vocabulary 30522, 512
  positions, 2 segment types, MLP 3072, and a pooler; 109,482,240 parameters
  in ``BertModel``).
* **T5-small** (Raffel et al. 2020, "Exploring the Limits of Transfer
  Learning with a Unified Text-to-Text Transformer", Sec. 3.7; the released
  ``t5-small`` config: d_model 512, d_kv 64, 8 heads, d_ff 2048, 6 encoder and
  6 decoder blocks, vocabulary 32128, 32 relative-position buckets): no
  biases, RMS-norm weights only, one shared embedding tied to the output
  layer; 60,506,624 parameters.
* **LLaMA-7B** (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation
  Language Models", Table 2: dimension 4096, 32 heads, 32 layers; vocabulary
  32000; SwiGLU MLP of width 11008 = 2/3 * 4 * 4096 rounded up to a multiple
  of 256): no biases, RMS-norm weights, an untied output layer;
  6,738,415,616 parameters.

``tests/test_adafactor_memory.py`` checks each of these against the model
that ``transformers`` builds from the same configuration (on the ``meta``
device, so nothing is allocated).
"""

from __future__ import annotations

__all__ = [
    "Shapes",
    "gpt2_like_shapes",
    "llama_like_shapes",
    "gpt2_small_shapes",
    "bert_base_shapes",
    "t5_small_shapes",
    "llama_7b_shapes",
    "MODELS",
]

# Public functions that list facts rather than compute a book symbol.
__helpers__ = tuple(name for name in __all__ if name.endswith("_shapes"))

Shapes = dict[str, tuple[int, ...]]


def _positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")


def gpt2_like_shapes(n_layer: int, d_model: int, vocab: int = 50257, ctx: int = 1024) -> Shapes:
    """A GPT-2-style decoder (``transformers.GPT2Model`` layout) of any depth and width.

    Per block: two LayerNorms (weight and bias), a fused QKV projection
    ``(d, 3d)``, an attention output ``(d, d)`` and a 4x MLP ``(d, 4d)``,
    ``(4d, d)``, each with a bias; then a final LayerNorm. Token and position
    embeddings ``(vocab, d)`` and ``(ctx, d)``; the output layer is tied to
    the token embedding. ``gpt2_like_shapes(12, 768)`` is GPT-2 small.
    """
    _positive(n_layer=n_layer, d_model=d_model, vocab=vocab, ctx=ctx)
    d, f = d_model, 4 * d_model
    shapes: Shapes = {"wte.weight": (vocab, d), "wpe.weight": (ctx, d)}
    for i in range(n_layer):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.weight": (d,), h + "ln_1.bias": (d,),
            h + "attn.c_attn.weight": (d, 3 * d), h + "attn.c_attn.bias": (3 * d,),
            h + "attn.c_proj.weight": (d, d), h + "attn.c_proj.bias": (d,),
            h + "ln_2.weight": (d,), h + "ln_2.bias": (d,),
            h + "mlp.c_fc.weight": (d, f), h + "mlp.c_fc.bias": (f,),
            h + "mlp.c_proj.weight": (f, d), h + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def llama_like_shapes(
    n_layer: int,
    d_model: int,
    d_ff: int,
    vocab: int = 32000,
    *,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
    tied: bool = False,
) -> Shapes:
    """A LLaMA-style decoder (``transformers.LlamaForCausalLM`` layout).

    Per layer: query and output projections ``(d, d)``; key and value
    projections ``(n_kv_heads * d / n_heads, d)`` (grouped-query attention,
    as in LLaMA 2 70B and LLaMA 3; ``n_kv_heads=None`` is LLaMA 1's multi-head
    attention, ``(d, d)``); a SwiGLU MLP ``(d_ff, d)``, ``(d_ff, d)``,
    ``(d, d_ff)``; two RMS-norm weights ``(d,)``. No biases. Then a final norm
    and, unless ``tied``, an output layer ``(vocab, d)``. Weights are
    ``(out, in)`` (``nn.Linear``). ``llama_like_shapes(32, 4096, 11008)`` is
    LLaMA-7B.
    """
    _positive(n_layer=n_layer, d_model=d_model, d_ff=d_ff, vocab=vocab)
    d = d_model
    if n_kv_heads is None:
        d_kv = d
    else:
        if n_heads is None:
            raise ValueError("n_kv_heads needs n_heads (the key/value width is n_kv_heads * d_model / n_heads).")
        _positive(n_heads=n_heads, n_kv_heads=n_kv_heads)
        if d % n_heads or n_heads % n_kv_heads:
            raise ValueError(
                f"d_model={d} must be divisible by n_heads={n_heads}, and n_heads by n_kv_heads={n_kv_heads}."
            )
        d_kv = n_kv_heads * (d // n_heads)
    shapes: Shapes = {"model.embed_tokens.weight": (vocab, d)}
    for i in range(n_layer):
        h = f"model.layers.{i}."
        shapes.update({
            h + "self_attn.q_proj.weight": (d, d), h + "self_attn.k_proj.weight": (d_kv, d),
            h + "self_attn.v_proj.weight": (d_kv, d), h + "self_attn.o_proj.weight": (d, d),
            h + "mlp.gate_proj.weight": (d_ff, d), h + "mlp.up_proj.weight": (d_ff, d),
            h + "mlp.down_proj.weight": (d, d_ff),
            h + "input_layernorm.weight": (d,), h + "post_attention_layernorm.weight": (d,),
        })
    shapes["model.norm.weight"] = (d,)
    if not tied:
        shapes["lm_head.weight"] = (vocab, d)
    return shapes


def gpt2_small_shapes() -> Shapes:
    """GPT-2 small: 12 layers, width 768 (124,439,808 parameters)."""
    return gpt2_like_shapes(12, 768, 50257, 1024)


def bert_base_shapes() -> Shapes:
    """BERT-base (``transformers.BertModel`` layout, pooler included; 109,482,240 parameters)."""
    d, f, vocab, positions, types, layers = 768, 3072, 30522, 512, 2, 12
    shapes: Shapes = {
        "embeddings.word_embeddings.weight": (vocab, d),
        "embeddings.position_embeddings.weight": (positions, d),
        "embeddings.token_type_embeddings.weight": (types, d),
        "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
    }
    for i in range(layers):
        h = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes.update({h + f"attention.self.{name}.weight": (d, d), h + f"attention.self.{name}.bias": (d,)})
        shapes.update({
            h + "attention.output.dense.weight": (d, d), h + "attention.output.dense.bias": (d,),
            h + "attention.output.LayerNorm.weight": (d,), h + "attention.output.LayerNorm.bias": (d,),
            h + "intermediate.dense.weight": (f, d), h + "intermediate.dense.bias": (f,),
            h + "output.dense.weight": (d, f), h + "output.dense.bias": (d,),
            h + "output.LayerNorm.weight": (d,), h + "output.LayerNorm.bias": (d,),
        })
    shapes.update({"pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)})
    return shapes


def t5_small_shapes() -> Shapes:
    """T5-small (``transformers.T5ForConditionalGeneration`` layout; 60,506,624 parameters)."""
    d, f, inner, heads, buckets, layers, vocab = 512, 2048, 512, 8, 32, 6, 32128
    shapes: Shapes = {"shared.weight": (vocab, d)}

    def attention(prefix: str, relative_bias: bool) -> None:
        for name in ("q", "k", "v"):
            shapes[prefix + f"{name}.weight"] = (inner, d)
        shapes[prefix + "o.weight"] = (d, inner)
        if relative_bias:  # only the first block of each stack learns position biases
            shapes[prefix + "relative_attention_bias.weight"] = (buckets, heads)

    for stack in ("encoder", "decoder"):
        for i in range(layers):
            b = f"{stack}.block.{i}.layer."
            attention(b + "0.SelfAttention.", i == 0)
            shapes[b + "0.layer_norm.weight"] = (d,)
            k = 1
            if stack == "decoder":
                attention(b + "1.EncDecAttention.", False)
                shapes[b + "1.layer_norm.weight"] = (d,)
                k = 2
            shapes.update({
                b + f"{k}.DenseReluDense.wi.weight": (f, d), b + f"{k}.DenseReluDense.wo.weight": (d, f),
                b + f"{k}.layer_norm.weight": (d,),
            })
        shapes[f"{stack}.final_layer_norm.weight"] = (d,)
    return shapes


def llama_7b_shapes() -> Shapes:
    """LLaMA-7B: 32 layers, width 4096, MLP 11008, vocabulary 32000 (6,738,415,616 parameters)."""
    return llama_like_shapes(32, 4096, 11008, 32000)


#: The named models, name -> builder.
MODELS = {
    "gpt2-small": gpt2_small_shapes,
    "bert-base": bert_base_shapes,
    "t5-small": t5_small_shapes,
    "llama-7b": llama_7b_shapes,
}
