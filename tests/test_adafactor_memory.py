"""optbook.analysis.memory, optbook.tasks.model_shapes, optbook.bench.timing and the Adafactor-only CPU bench.

Oracles: the tensors torch optimizers really allocate (for the state
counts), the models ``transformers`` builds from the published configurations
on the ``meta`` device (for the shapes; nothing is allocated), and the
published parameter counts of the released checkpoints.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch

from optbook import Adafactor
from optbook.analysis import memory as ma
from optbook.tasks import model_shapes as ms
from optbook.bench.timing import compare_optimizers, interleaved_step_times, make_problem, parameter_count
from optbook.analysis.memory import adafactor_state_numbers, optimizer_state_bytes, optimizer_state_numbers

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _stepped(make, shapes, dtype=torch.float32):
    params = [torch.nn.Parameter(torch.randn(s).to(dtype)) for s in shapes]
    opt = make(params)
    for p in params:
        p.grad = torch.randn(p.shape).to(dtype)
    opt.step()
    return opt


# --------------------------------------------------------------------------- optbook.analysis.memory


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: torch.optim.Adam(ps),
        lambda ps: torch.optim.Adafactor(ps),
        lambda ps: Adafactor(ps),
        lambda ps: Adafactor(ps, beta1=0.9),
    ],
    ids=["sgd", "sgd-momentum", "adam", "torch-adafactor", "optbook", "optbook-beta1"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_optimizer_state_bytes_is_what_the_state_holds(make, dtype):
    """Any torch optimizer: the sum over optimizer.state of numel * element_size, step counters included."""
    opt = _stepped(make, [(7, 5), (5,), (2, 3, 4), ()], dtype)
    expected = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    assert optimizer_state_bytes(opt) == expected


def test_optimizer_state_bytes_counts_a_shared_storage_once():
    opt = _stepped(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), [(4, 3)])
    (state,) = opt.state.values()
    state["alias"] = state["momentum_buffer"]
    state["view"] = state["momentum_buffer"][1:]
    assert optimizer_state_bytes(opt) == 12 * 4
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        optimizer_state_bytes({"state": {}})


def test_adafactor_state_bytes_of_a_bfloat16_matrix():
    """(n + m) float32 statistics for a bf16 n x m matrix, plus the two 0-d counters (float32 step, int64 skips)."""
    opt = _stepped(lambda ps: Adafactor(ps), [(300, 200)], torch.bfloat16)
    assert optimizer_state_bytes(opt) == (300 + 200) * 4 + 4 + 8
    assert optimizer_state_numbers(opt) == 500 and optimizer_state_numbers(opt, min_dim=0) == 502
    adam = _stepped(lambda ps: torch.optim.Adam(ps), [(300, 200)], torch.bfloat16)
    assert optimizer_state_numbers(adam) == 2 * 300 * 200
    with pytest.raises(ValueError, match="min_dim"):
        optimizer_state_numbers(opt, min_dim=-1)


@pytest.mark.parametrize("n, m", [(1, 1), (7, 3), (300, 200), (1, 50)])
def test_an_n_by_m_matrix_keeps_n_plus_m_numbers_and_nm_more_with_momentum(n, m):
    for beta1, expected in ((None, n + m), (0.9, n + m + n * m)):
        opt = _stepped(lambda ps: Adafactor(ps, beta1=beta1), [(n, m)])
        assert optimizer_state_numbers(opt) == expected
        assert adafactor_state_numbers((n, m), beta1=beta1 is not None) == expected


def test_adafactor_state_numbers_other_shapes_and_options():
    assert adafactor_state_numbers((5,)) == 5 and adafactor_state_numbers(()) == 1
    assert adafactor_state_numbers((6, 4, 3, 3)) == 6 * 4 * 6  # last two: 3 + 3 per (O, I) pair
    assert adafactor_state_numbers((6, 4, 3, 3), factor_dims="two_largest") == 4 * 9 + 6 * 9
    assert adafactor_state_numbers((6, 4), factored=False) == 24
    assert adafactor_state_numbers((6, 4), beta1=0.0) == 10  # beta1 = 0 keeps no buffer, as in the optimizer
    assert adafactor_state_numbers((0, 4)) == 4
    with pytest.raises(ValueError, match="factor_dims"):
        adafactor_state_numbers((3, 4), factor_dims="first_two")
    with pytest.raises(ValueError, match="non-negative"):
        adafactor_state_numbers((3, -4))


def test_adafactor_keeps_a_sliver_of_adams_state_on_real_models():
    """Adafactor's factored state against Adam's 2N (optbook.analysis.memory) on the four models."""
    for name, build in ms.MODELS.items():
        shapes = build()
        n = ma.total_numbers(shapes)
        adam = ma.total_numbers(shapes, lambda s: ma.full_state_numbers(s, 2))
        ours = ma.total_numbers(shapes, adafactor_state_numbers)
        assert adam == 2 * n
        assert ma.state_fraction(ours, n) < 0.01, name
        assert ma.total_numbers(shapes, lambda s: adafactor_state_numbers(s, beta1=True)) == ours + n


# --------------------------------------------------------------------------- optbook.tasks.model_shapes


def _transformers_shapes(name):
    tf = pytest.importorskip("transformers")
    configs = {
        "gpt2-small": lambda: tf.GPT2Model(tf.GPT2Config()),
        "bert-base": lambda: tf.BertModel(tf.BertConfig()),
        "t5-small": lambda: tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
            relative_attention_num_buckets=32)),
        "llama-7b": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False)),
    }
    with torch.device("meta"):
        model = configs[name]()
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


PUBLISHED = {"gpt2-small": 124_439_808, "bert-base": 109_482_240, "t5-small": 60_506_624, "llama-7b": 6_738_415_616}


@pytest.mark.parametrize("name", sorted(ms.MODELS))
def test_model_shapes_are_the_published_models(name):
    shapes = ms.MODELS[name]()
    assert ma.total_numbers(shapes) == PUBLISHED[name]
    assert list(shapes.items()) == list(_transformers_shapes(name).items())


def test_parametrised_builders():
    assert ms.gpt2_like_shapes(12, 768) == ms.gpt2_small_shapes()
    assert ms.llama_like_shapes(32, 4096, 11008) == ms.llama_7b_shapes()
    small = ms.gpt2_like_shapes(6, 384)
    assert ma.total_numbers(small) == 30_339_456 and len(small) == 76
    tf = pytest.importorskip("transformers")
    config = tf.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                            num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True)
    with torch.device("meta"):
        model = tf.LlamaForCausalLM(config)
    gqa = ms.llama_like_shapes(2, 64, 176, 1000, n_heads=8, n_kv_heads=2, tied=True)
    assert gqa == {n: tuple(p.shape) for n, p in model.named_parameters()}
    for bad in ({"n_layer": 0}, {"d_model": -1}):
        with pytest.raises(ValueError, match="must be a whole number >= 1"):
            ms.gpt2_like_shapes(**{"n_layer": 2, "d_model": 8, **bad})
    with pytest.raises(ValueError, match="n_kv_heads needs n_heads"):
        ms.llama_like_shapes(2, 64, 128, n_kv_heads=2)
    with pytest.raises(ValueError, match="divisible"):
        ms.llama_like_shapes(2, 64, 128, n_heads=6, n_kv_heads=2)


# --------------------------------------------------------------------------- optbook.bench.timing


def test_compare_optimizers_times_every_optimizer_against_the_baseline(monkeypatch):
    monkeypatch.delenv("OPTBOOK_TIMING_SMOKE", raising=False)
    shapes = [(16, 8), (8,)]
    factories = {"optbook": lambda ps: Adafactor(ps), "torch": lambda ps: torch.optim.Adafactor(ps)}
    results = {r.name: r for r in compare_optimizers(factories, shapes, baseline="torch", warmup=1, repeats=3)}
    assert set(results) == {"optbook", "torch"}
    assert results["torch"].ratio_of_medians == 1.0 and results["torch"].median_paired_ratio == 1.0
    for r in results.values():
        assert r.samples == 3 and 0 < r.q1_s <= r.median_s <= r.q3_s
    # R, C and V in float32, and per parameter a float32 step and an int64 skip counter.
    assert results["optbook"].state_bytes == (16 + 8 + 8) * 4 + 2 * (4 + 8)
    assert parameter_count(shapes) == 136
    with pytest.raises(ValueError, match="baseline"):
        compare_optimizers(factories, shapes, baseline="adam")
    x0, grads = make_problem(shapes, grad_rms=1e-3)
    assert [tuple(x.shape) for x in x0] == shapes and grads[0].abs().max() < 1e-2
    with pytest.raises(ValueError, match="repeats"):
        interleaved_step_times({}, repeats=0)


def test_smoke_mode_times_one_round_without_warmup(monkeypatch):
    steps = []

    class Counting:
        def step(self):
            steps.append(1)

    monkeypatch.setenv("OPTBOOK_TIMING_SMOKE", "1")
    samples = interleaved_step_times({"a": Counting(), "b": Counting()}, warmup=3, repeats=20)
    assert [len(t) for t in samples.values()] == [1, 1] and len(steps) == 2
    monkeypatch.setenv("OPTBOOK_TIMING_SMOKE", "0")
    steps.clear()
    samples = interleaved_step_times({"a": Counting()}, warmup=3, repeats=20)
    assert len(samples["a"]) == 20 and len(steps) == 23
    with pytest.raises(ValueError, match="repeats"):  # bad input is refused in smoke mode too
        monkeypatch.setenv("OPTBOOK_TIMING_SMOKE", "1")
        interleaved_step_times({}, repeats=0)


def test_adafactor_only_comparison_reports_paired_ratios(tmp_path, capsys):
    """``python -m optbook.bench --device cpu`` with the Adafactor rows only (what tools/bench_adafactor_cpu.py
    printed): every row, its ratios to torch's default and foreach paths, medians and per-round (paired).

    Run in this process (its main()), which saves starting another Python.
    """
    from optbook.bench import __main__ as cli
    from optbook.bench.shapes import parameter_shapes

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    methods = ["optbook", "optbook-foreach", "torch-adafactor", "torch-adafactor-foreach"]
    try:
        assert cli.main(["--device", "cpu", "--models", "gpt2-30m", "--dtypes", "fp32", "--threads", "1",
                         "--methods", *methods, "--warmup", "1", "--repeats", "3", "--output", str(out),
                         "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    stdout = capsys.readouterr().out
    (case,) = json.loads(out.read_text())["results"]
    rows = {r["method"]: r for r in case["rows"]}
    assert list(rows) == methods
    assert case["parameters"] == ma.total_numbers(dict(parameter_shapes("gpt2-30m", small=True)))
    assert rows["torch-adafactor"]["speedup_vs"]["torch-adafactor"] == 1.0
    assert math.isclose(rows["torch-adafactor-foreach"]["speedup_vs"]["torch-adafactor-foreach"], 1.0)
    for r in rows.values():
        for base in ("torch-adafactor", "torch-adafactor-foreach"):
            p = r["paired_ratio_vs"][base]
            assert p["rounds"] == 3 and p["q1"] <= p["median"] <= p["q3"]
    assert rows["torch-adafactor"]["paired_ratio_vs"]["torch-adafactor"]["median"] == 1.0
    assert "CPU RUN" in stdout and "optbook.Adafactor" in stdout


def test_paired_ratio_by_hand():
    from optbook.bench import paired_ratio

    # Per-round ratios 2, 1, 3, 0.5: sorted 0.5, 1, 2, 3; median 1.5; quartiles (exclusive method) 0.625, 2.75.
    p = paired_ratio([2.0, 1.0, 6.0, 1.0], [1.0, 1.0, 2.0, 2.0])
    assert p == {"median": 1.5, "q1": 0.625, "q3": 2.75, "rounds": 4}
    # One round (OPTBOOK_TIMING_SMOKE runs one): its ratio is the median and both quartiles.
    assert paired_ratio([3.0], [2.0]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "rounds": 1}
    with pytest.raises(ValueError, match="same number"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same number"):
        paired_ratio([], [])

