"""optbook.analysis.applications: published parameter lists and the optimizer state at their scale.

Expected values are counted by hand from the papers' configurations or taken from the model that
``transformers`` builds on the meta device, never from the functions under test.
"""

import pytest
import torch

from optbook.analysis import applications as ap


def test_state_memory_of_a_toy_parameter_list():
    m = ap.state_memory_at_scale({"w": (3, 4), "b": (5,)})
    # N = 12 + 5; Adam 2N; Adafactor keeps 3 + 4 for the matrix and 5 for the vector; beta1 adds N.
    assert m == {"N": 17, "adam": 34, "adafactor": 12, "adafactor_beta1": 29,
                 "adam_bytes": 136, "adafactor_bytes": 48, "adafactor_beta1_bytes": 116}
    assert ap.state_memory_at_scale({"w": (3, 4)}, bytes_per_number=2)["adam_bytes"] == 48


def test_t5_11b_by_hand_and_against_transformers():
    shapes = ap.SCALE_MODELS["T5-11B"].build()
    d, inner, f, L = 1024, 128 * 128, 65536, 24
    enc = L * (4 * d * inner + 2 * d * f + 2 * d) + d + 32 * 128
    dec = L * (8 * d * inner + 2 * d * f + 3 * d) + d + 32 * 128
    assert sum(torch.Size(s).numel() for s in shapes.values()) == enc + dec + 32128 * d
    tf = pytest.importorskip("transformers")
    config = tf.T5Config(vocab_size=32128, d_model=1024, d_kv=128, d_ff=65536, num_layers=24,
                         num_decoder_layers=24, num_heads=128)
    with torch.device("meta"):
        model = tf.T5ForConditionalGeneration(config)
    theirs = sorted(tuple(p.shape) for p in model.parameters())
    assert sorted(shapes.values()) == theirs


def test_llama_65b_against_transformers():
    tf = pytest.importorskip("transformers")
    config = tf.LlamaConfig(vocab_size=32000, hidden_size=8192, intermediate_size=22016, num_hidden_layers=80,
                            num_attention_heads=64, num_key_value_heads=64, tie_word_embeddings=False)
    with torch.device("meta"):
        model = tf.LlamaForCausalLM(config)
    assert sorted(ap.SCALE_MODELS["LLaMA-65B"].build().values()) == sorted(tuple(p.shape) for p in model.parameters())


def test_palm_and_vit_g_match_the_stated_counts():
    # PaLM Table 1 states 540.35B; the count without the 119 norm scales is exactly that to 10 kB.
    palm = ap.state_memory_at_scale(ap.SCALE_MODELS["PaLM-540B"].build())["N"]
    per_layer = 18432 * (48 * 256) * 2 + 2 * 18432 * 256 + 3 * 18432 * 4 * 18432
    assert palm == 118 * per_layer + 256_000 * 18432 + 119 * 18432
    assert abs(palm / 540.35e9 - 1) < 1e-4
    vit = ap.state_memory_at_scale(ap.SCALE_MODELS["ViT-G/14"].build())["N"]
    assert abs(vit / 1843e6 - 1) < 1e-3  # Zhai et al. 2022, Table 2


def test_every_model_is_within_a_few_percent_of_its_paper():
    for row in ap.memory_table():
        assert abs(row["counted / stated"] - 1) < 0.03, row["model"]
        assert row["Adafactor / Adam"] < 1e-3
        assert row["Adafactor + beta1 [GB]"] == pytest.approx(row["Adam state [GB]"] / 2 + row["Adafactor state [GB]"])


def test_vit_head_is_optional_and_shapes_validate():
    base = ap.vit_like_shapes(2, 8, 16, patch=4, image=8)
    head = ap.vit_like_shapes(2, 8, 16, patch=4, image=8, n_classes=10)
    assert set(head) - set(base) == {"head.kernel", "head.bias"}
    assert base["pos_embedding"] == (4, 8) and base["embedding.kernel"] == (48, 8)
    with pytest.raises(ValueError, match="multiple of patch"):
        ap.vit_like_shapes(2, 8, 16, patch=5, image=8)
    with pytest.raises(ValueError, match="n_classes"):
        ap.vit_like_shapes(2, 8, 16, n_classes=-1)
    with pytest.raises(ValueError, match="n_layers"):
        ap.t5_like_shapes(0, 8, 16, 4, 2)
    with pytest.raises(ValueError, match="d_head"):
        ap.palm_like_shapes(2, 8, 2, 0)


def test_bad_inputs_to_state_memory():
    with pytest.raises(TypeError, match="non-empty dict"):
        ap.state_memory_at_scale({})
    with pytest.raises(ValueError, match="bytes_per_number"):
        ap.state_memory_at_scale({"w": (2, 2)}, bytes_per_number=0)


def test_claims_have_known_verdicts():
    allowed = {"true", "false", "not testable here", "true with a caveat"}
    assert all(c.verdict in allowed for c in ap.CLAIMS)
    assert len({c.key for c in ap.CLAIMS}) == len(ap.CLAIMS)
