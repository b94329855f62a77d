"""optbook.tasks.t5_mini: the reversal task, the encoder-decoder's masks, and reproducible training."""

import pytest
import torch

import optbook
from optbook.tasks import t5_mini as t5


def test_encode_pairs_by_hand():
    src, tgt_in, tgt_out = t5.encode_pairs(["abc", "de"])
    a, b, c, d, e = 3, 4, 5, 6, 7
    assert src.tolist() == [[a, b, c, t5.EOS], [d, e, t5.EOS, t5.PAD]]
    assert tgt_in.tolist() == [[t5.BOS, c, b, a], [t5.BOS, e, d, t5.PAD]]
    assert tgt_out.tolist() == [[c, b, a, t5.EOS], [e, d, t5.EOS, t5.PAD]]
    with pytest.raises(ValueError, match="lower-case"):
        t5.encode_pairs(["Abc"])
    with pytest.raises(ValueError, match="at least one"):
        t5.encode_pairs([])


def test_reversal_task_is_split_without_overlap():
    train, val = t5.reversal_task()
    assert not set(train) & set(val) and len(val) > 50 and len(train) > 4 * len(val) - 5
    assert all(3 <= len(w) <= 8 and w.isalpha() and w.islower() for w in train + val)
    with pytest.raises(ValueError, match="val_every"):
        t5.reversal_task(val_every=1)


def _model():
    torch.manual_seed(0)
    return t5.T5Mini(t5.T5MiniConfig()).double()


def test_decoder_is_causal_and_padding_is_ignored():
    model = _model()
    src, tgt_in, tgt_out = t5.encode_pairs(["hello", "abc"])
    logits = model(src, tgt_in)
    assert logits.shape == (2, tgt_in.shape[1], t5.T5MiniConfig().vocab_size)
    changed = tgt_in.clone()
    changed[:, 3] = 10
    other = model(src, changed)
    assert torch.equal(other[:, :3], logits[:, :3]) and not torch.equal(other[:, 3:], logits[:, 3:])
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.int64)], dim=1)
    assert torch.allclose(model(padded, tgt_in), logits, rtol=0, atol=1e-12)


def test_embedding_is_shared_and_there_are_no_biases():
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    assert sum("shared" in n for n in names) == 1 and not any(n.endswith("bias") for n in names)
    assert sum("rel" in n for n in names) == 2  # encoder and decoder self-attention


def test_optimizers_and_reproducible_training():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    af = t5.make_optimizer("adafactor_t5", p)
    assert isinstance(af, optbook.Adafactor)
    assert af.defaults["relative_step"] and af.defaults["d"] == 1.0 and af.defaults["beta1"] is None
    with pytest.raises(ValueError, match="learning rate"):
        t5.make_optimizer("adamw", p)
    with pytest.raises(ValueError, match="must be one of"):
        t5.make_optimizer("adam", p)
    a = t5.train_t5_mini("adafactor_t5", 0, 3, eval_every=3, show_progress=False)
    b = t5.train_t5_mini("adafactor_t5", 0, 3, eval_every=3, show_progress=False)
    assert a == b and a["val_steps"] == [0, 3] and len(a["train_loss"]) == 3
    with pytest.raises(ValueError, match="steps"):
        t5.train_t5_mini("adamw", 0, 0, lr=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        t5.T5MiniConfig(d_model=10, n_heads=3)
