"""The one drift measure (roots_edge/core/metrics.LogitDrift) that export verification and the bench report."""
from __future__ import annotations

import numpy as np

from roots_edge.core.metrics import LogitDrift


def test_drift_against_numbers_worked_by_hand():
    # two positions, vocabulary of two; the reference is certain-ish of token 0, the model of token 1 at the end
    ids = [0, 1]
    ref = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    art = np.log(np.array([[0.5, 0.5], [0.2, 0.8]]))
    d = LogitDrift()
    d.add(ids, art, ref)
    kl_last = 0.9 * np.log(0.9 / 0.2) + 0.1 * np.log(0.1 / 0.8)
    assert d.positions == 2 and d.predicted == 1
    assert np.isclose(d.kl, kl_last / 2)                # every position counts, the last one too
    # top-1 at position 0 is a tie (argmax 0 on both sides), at position 1 they disagree
    assert d.top1 == 0.5
    assert np.isclose(d.perplexity, 2.0) and np.isclose(d.perplexity_ref, 2.0)   # both give token 1 p=0.5
    assert np.isclose(d.max_diff, abs(np.log(0.1) - np.log(0.8)), atol=1e-6)


def test_no_reference_gives_perplexity_only():
    rng = np.random.default_rng(0)
    d = LogitDrift()
    for n in (5, 9):
        d.add(rng.integers(0, 7, n), rng.normal(size=(n, 7)))
    assert d.positions == 14 and d.predicted == 12 and d.kl is None and d.top1 is None
    assert d.perplexity_ref is None and 1 < d.perplexity < 50
    same = LogitDrift()
    logits = rng.normal(size=(6, 7))
    same.add(np.arange(6), logits, logits)
    assert same.kl == 0 and same.top1 == 1 and same.max_diff == 0
