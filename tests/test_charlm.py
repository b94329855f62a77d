"""The small character-level Transformer: seeded, causal, the documented size, and trainable."""

import io
import contextlib
import math

import pytest
import torch

from optbook.tasks import charlm
from optbook.tasks import text_corpus as tc

CFG = charlm.CharLMConfig(vocab_size=11, context=8, d_model=16, n_heads=2, n_layers=2, d_ff=24)


def test_build_is_seeded_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = charlm.build_model(CFG, seed=0), charlm.build_model(CFG, seed=0), charlm.build_model(CFG, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_parameter_count_matches_the_architecture():
    v, t, d, f, layers = CFG.vocab_size, CFG.context, CFG.d_model, CFG.d_ff, CFG.n_layers
    per_layer = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    expected = v * d + t * d + layers * per_layer + 2 * d + (d * v + v)
    model = charlm.build_model(CFG)
    assert charlm.parameter_count(model) == expected
    shapes = charlm.parameter_shapes(model)
    assert shapes["blocks.0.attn.qkv.weight"] == (3 * d, d) and shapes["head.weight"] == (v, d)
    rms = charlm.parameter_rms(model)
    assert rms["blocks.0.ln1.weight"] == 1.0 and 0.5 < rms["tok_emb.weight"] < 1.5


def test_the_model_is_causal():
    model = charlm.build_model(CFG)
    x = torch.randint(0, CFG.vocab_size, (3, CFG.context), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[:, 5] = (x2[:, 5] + 1) % CFG.vocab_size
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, CFG.context + 1, dtype=torch.int64))


def test_config_is_validated():
    with pytest.raises(ValueError, match="n_heads"):
        charlm.CharLMConfig(vocab_size=10, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="context"):
        charlm.CharLMConfig(vocab_size=10, context=0)


def _corpus_ids():
    text = "".join(f"def f{k}(x):\n    return x + {k}\n" for k in range(200))
    vocab = tc.CharVocab.from_text(text)
    return vocab, torch.from_numpy(vocab.encode(text))


def _train(steps=40, show_progress=False):
    vocab, ids = _corpus_ids()
    cfg = charlm.CharLMConfig(vocab_size=len(vocab), context=16, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    model = charlm.build_model(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    val = tc.fixed_batches(ids, 2, 8, 16, seed=1)
    return charlm.train(model, opt, tc.batches(ids, 8, 16, seed=0), val, steps=steps, eval_every=15,
                        name="adamw", show_progress=show_progress)


def test_training_learns_records_and_is_bit_reproducible():
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        run = _train(show_progress=True)
    again = _train()
    assert run.train_loss == again.train_loss and run.val_loss == again.val_loss
    assert len(run.train_loss) == 40 and run.val_steps == [0, 15, 30, 40]
    assert run.final_val_loss < 0.6 * run.val_loss[0]
    assert abs(run.val_loss[0] - math.log(len(_corpus_ids()[0]))) < 1.0  # starts near uniform guessing
    assert "40/40" in buf.getvalue() and run.nonfinite_step is None


def test_training_stops_at_a_non_finite_loss():
    vocab, ids = _corpus_ids()
    cfg = charlm.CharLMConfig(vocab_size=len(vocab), context=16, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    model = charlm.build_model(cfg)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = charlm.train(model, opt, tc.batches(ids, 4, 16, seed=0), tc.fixed_batches(ids, 1, 4, 16, seed=1),
                       steps=5, eval_every=2, show_progress=False)
    assert run.nonfinite_step == 1 and len(run.train_loss) == 1
    with pytest.raises(ValueError, match="steps"):
        charlm.train(model, opt, iter([]), [], steps=0, eval_every=1)


def test_window_mean():
    steps, means = charlm.window_mean([1.0, 3.0, 5.0, 7.0, 100.0], 2)
    assert steps == [2, 4] and means == [2.0, 6.0]
    with pytest.raises(ValueError, match="width"):
        charlm.window_mean([1.0], 0)


def test_flattened_parameters_compute_the_same_function_and_gradients():
    a = charlm.build_model(CFG)
    b = charlm.flatten_parameters(charlm.build_model(CFG))
    assert all(p.dim() == 1 for p in b.parameters())
    assert charlm.parameter_count(a) == charlm.parameter_count(b)
    x = torch.randint(0, CFG.vocab_size, (3, CFG.context), generator=torch.Generator().manual_seed(0))
    a.loss(x, x).backward()
    b.loss(x, x).backward()
    grads_a = {n: p.grad for n, p in a.named_parameters()}
    grads_b = {n.replace("parametrizations.", "").replace(".original", ""): p.grad for n, p in b.named_parameters()}
    assert grads_a.keys() == grads_b.keys()
    for name, g in grads_a.items():
        assert torch.equal(g.reshape(-1), grads_b[name]), name
