"""optbook.analysis.state_bytes: closed forms counted by hand, measured states, T5-base shapes."""

import math

import pytest
import torch

from optbook.analysis import state_bytes as sb
from optbook.tasks import model_shapes as ms

# (4, 3) matrix, float32 (b = 4): counts worked out by hand from each method's state.
HAND = {
    "AdamW": 2 * 12 * 4,
    "Adafactor": (4 + 3) * 4,
    "SM3": (4 + 3) * 4,
    "CAME": (12 + 2 * (4 + 3)) * 4,
    "Adam-mini": (12 + 1) * 4,            # an ordinary tensor is one block
    "GaLore": (2 * 4 * 2 + 2 * 3) * 4,    # rank 2: moments 4 x 2, projector 2 x 3
    "8-bit AdamW": 2 * (12 + 4),          # 12 codes and one float32 scale per state
    "Shampoo": 2 * (16 + 9) * 4,
    "SOAP": (2 * 12 + 2 * (16 + 9)) * 4,
    "Muon": 12 * 4,
    "schedule-free AdamW": 2 * 12 * 4,
}


@pytest.mark.parametrize("method", sb.METHODS)
def test_closed_form_and_measurement_match_the_hand_count(method):
    kw = {"rank": 2} if method == "GaLore" else {}
    assert sb.closed_form_state_bytes(method, "h.0.mlp.c_fc.weight", (4, 3), **kw) == HAND[method]
    assert sb.measured_state_bytes(method, "h.0.mlp.c_fc.weight", (4, 3), **kw) == HAND[method]


def test_vectors_and_roles():
    assert sb.closed_form_state_bytes("Adafactor", "ln.weight", (7,)) == 7 * 4
    assert sb.closed_form_state_bytes("Muon", "wte.weight", (10, 4)) == 2 * 40 * 4  # embeddings go to AdamW
    assert sb.closed_form_state_bytes("Adam-mini", "wte.weight", (10, 4)) == (40 + 40) * 4  # Adam per entry
    assert sb.closed_form_state_bytes("Adam-mini", "attn.q_proj.weight", (8, 8), heads=2) == (64 + 2) * 4
    assert sb.closed_form_state_bytes("SOAP", "lm_head.weight", (20000, 8), dtype_bytes=1) == 2 * 160000 + 2 * 64
    assert sb.measured_state_bytes("AdamW", "w", (5, 2), dtype="float64") == 2 * 10 * 8


def test_table_on_a_model_and_errors():
    table = sb.state_bytes_table({"gpt2": (ms.gpt2_small_shapes(), 12)}, methods=["AdamW", "Adafactor", "SM3"])
    n = 124_439_808
    assert table["gpt2"]["AdamW"] == 2 * 4 * n
    assert table["gpt2"]["Adafactor"] == table["gpt2"]["SM3"]
    with pytest.raises(ValueError, match="method must be one of"):
        sb.closed_form_state_bytes("Adam", "w", (2, 2))
    with pytest.raises(ValueError, match="shape must hold sizes"):
        sb.measured_state_bytes("AdamW", "w", (0, 2))


def test_t5_base_is_the_published_model():
    shapes = sb.t5_base_shapes()
    assert sum(math.prod(s) for s in shapes.values()) == 222_903_552
    tf = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12,
            relative_attention_num_buckets=32))
    assert list(shapes.items()) == [(n, tuple(p.shape)) for n, p in model.named_parameters()]
