"""The stdlib character corpus: what is read, how it is split and encoded, and seeded batches."""

import numpy as np
import pytest
import torch

from optbook.tasks import text_corpus as tc


@pytest.fixture()
def tiny_root(tmp_path):
    """Three small 'stdlib' files (and things that must be ignored)."""
    (tmp_path / "b_mod.py").write_text("".join(f"line {i} of b\n" for i in range(20)), encoding="utf-8")
    (tmp_path / "a_mod.py").write_text("".join(f"row {i} of a\n" for i in range(10)) + "é\n", encoding="utf-8")
    (tmp_path / "c_mod.py").write_text("x = 1\n" * 30, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not python\n", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inner.py").write_text("inside a package\n", encoding="utf-8")
    return tmp_path


def test_only_top_level_py_files_in_sorted_order(tiny_root):
    assert [p.name for p in tc.stdlib_files(tiny_root)] == ["a_mod.py", "b_mod.py", "c_mod.py"]
    with pytest.raises(FileNotFoundError, match="root"):
        tc.stdlib_files(tiny_root / "missing")


def test_each_file_is_split_at_the_first_line_break_after_the_cut(tmp_path):
    lines = [f"line {k}\n" for k in range(10)]  # 7 characters each, 70 in all
    (tmp_path / "a.py").write_text("".join(lines), encoding="utf-8")
    (tmp_path / "b.py").write_text("one\ntwo\nthree\nfour\né\n", encoding="utf-8")
    corpus = tc.load_stdlib_corpus(10_000, val_fraction=0.25, root=tmp_path)
    # a.py: 0.75 * 70 = 52.5 -> 52; the first line break at or after index 52 ends "line 7".
    # b.py (21 characters): 0.75 * 21 = 15.75 -> 16; the first line break at or after index 16 ends "four".
    assert corpus.vocab.decode(corpus.train) == "".join(lines[:8]) + "one\ntwo\nthree\nfour\n"
    # "8", "9" and "é" occur only in validation text, so they are unknown to the vocabulary.
    u = tc.UNKNOWN
    assert corpus.vocab.decode(corpus.val) == f"line {u}\nline {u}\n{u}\n"
    assert corpus.summary()["val_unknown_chars"] == 3
    assert corpus.n_chars == 70 + 21 and corpus.files == ("a.py", "b.py")


def test_max_chars_takes_whole_files_in_order(tiny_root):
    sizes = [len(p.read_text(encoding="utf-8")) for p in tc.stdlib_files(tiny_root)]
    corpus = tc.load_stdlib_corpus(sizes[0] + sizes[1], root=tiny_root)
    assert corpus.files == ("a_mod.py", "b_mod.py") and corpus.n_chars == sizes[0] + sizes[1]
    with pytest.raises(ValueError, match="max_chars"):
        tc.load_stdlib_corpus(sizes[0] - 1, root=tiny_root)
    with pytest.raises(ValueError, match="val_fraction"):
        tc.load_stdlib_corpus(1000, val_fraction=1.0, root=tiny_root)


def test_vocabulary_round_trip_and_unknown_characters():
    vocab = tc.CharVocab.from_text("hello world")
    assert vocab.chars == tc.UNKNOWN + " dehlorw"
    assert vocab.decode(vocab.encode("hello world")) == "hello world"
    ids = vocab.encode("hé!")
    assert ids.tolist() == [vocab.chars.index("h"), 0, 0]
    with pytest.raises(ValueError, match="ids"):
        vocab.decode([len(vocab)])


def test_real_stdlib_corpus_is_deterministic_and_split_about_one_tenth():
    a = tc.load_stdlib_corpus(200_000)
    b = tc.load_stdlib_corpus(200_000)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val) and a.vocab == b.vocab
    assert a.files == tuple(sorted(a.files)) and a.files[0] == tc.stdlib_files()[0].name
    assert 0.08 < len(a.val) / a.n_chars < 0.12
    assert a.summary()["vocab_size"] == len(a.vocab) > 60


def test_batches_are_windows_shifted_by_one_and_seeded():
    ids = torch.arange(1000)
    x, y = tc.sample_batch(ids, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.int64))  # contiguous windows
    s1, s2, s3 = tc.batches(ids, 8, 16, seed=1), tc.batches(ids, 8, 16, seed=1), tc.batches(ids, 8, 16, seed=2)
    first, again, other = next(s1), next(s2), next(s3)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    fixed = tc.fixed_batches(ids, 3, 8, 16, seed=1)
    assert len(fixed) == 3 and torch.equal(fixed[0][0], first[0])
    # every window stays inside the text, including the last target
    x, y = tc.sample_batch(ids[:17], 50, 16, torch.Generator().manual_seed(0))
    assert int(y.max()) == 16
    with pytest.raises(ValueError, match="context"):
        tc.sample_batch(ids[:10], 2, 16, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        tc.sample_batch(ids, 0, 16, torch.Generator())
