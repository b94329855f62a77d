"""The book's schedules agree with torch.optim.lr_scheduler and transformers to 1e-12 (after the stated alignment)."""

import numpy as np
import pytest
import torch

from optbook.schedules import upstream


def test_every_upstream_pairing_agrees():
    rows = upstream.crosscheck_rows()
    assert len(rows) >= 17
    for row in rows:
        assert row["max_rel_diff"] <= 1e-12, row


def test_transformers_warmup_starts_at_zero():
    import transformers

    lrs = upstream.upstream_lrs(lambda o: transformers.get_constant_schedule_with_warmup(o, 4), 6)
    assert lrs.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_annealing_lr_rises_again_after_t_max():
    lrs = upstream.upstream_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10), 21)
    assert lrs[10] == pytest.approx(0.0, abs=1e-15) and lrs[20] == pytest.approx(1.0, rel=1e-12)


def test_compare_alignments():
    # w = 4: ours peaks at t = 3 (end of warm-up) and t = 4 (start of the decay), transformers only at t = 4
    ours = np.array([0.25, 0.5, 0.75, 1.0, 1.0, 0.9])
    theirs = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.9])
    assert upstream.compare(ours, theirs, "warmup", warmup=4) == 0.0
    assert upstream.compare(ours[:4], theirs, "all") == 0.0
    assert upstream.compare(ours, theirs, "none") > 0.1
    with pytest.raises(ValueError):
        upstream.compare(ours, theirs, "later")
    with pytest.raises(ValueError):
        upstream.max_relative_difference([1.0], [1.0, 2.0])
