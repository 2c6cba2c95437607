"""Negative sampling: never a positive, seeded, identical on both membership paths."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.seeding import rng
from trustrec.train import sampling
from trustrec.train.sampling import sample_negatives


@pytest.fixture
def dense_toy():
    # 50 users × 40 items, ~60% of pairs positive (many re-draw rounds)
    g = np.random.default_rng(0)
    pos = g.random((50, 40)) < 0.6
    pos[:, 7] = False  # every user has at least one negative
    u, i = np.nonzero(pos)
    return u, np.sort(u.astype(np.int64) * 40 + i), pos


def test_negatives_are_never_positives(dense_toy):
    users, keys, pos = dense_toy
    neg = sample_negatives(users, keys, 40, rng(0, "t"), n_neg=3)
    assert neg.shape == (len(users), 3)
    assert not pos[np.repeat(users, 3), neg.ravel()].any()


def test_same_seed_same_draws_and_lookup_paths_agree(dense_toy, monkeypatch):
    users, keys, _ = dense_toy
    a = sample_negatives(users, keys, 40, rng(5, "t"))
    b = sample_negatives(users, keys, 40, rng(5, "t"))
    np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(sampling, "DENSE_LOOKUP_MAX", 0)  # force binary search
    c = sample_negatives(users, keys, 40, rng(5, "t"))
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, sample_negatives(users, keys, 40, rng(6, "t")))


def test_empty_inputs():
    assert sample_negatives(np.array([], np.int64), np.array([5]), 10, rng(0)).shape == (0,)
    neg = sample_negatives(np.array([0, 1]), np.array([], np.int64), 10, rng(0))
    assert neg.shape == (2,) and ((neg >= 0) & (neg < 10)).all()
