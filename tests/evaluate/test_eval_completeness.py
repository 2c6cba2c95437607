"""Agreement with the retrained model: top-k overlap, rank correlation, forgotten items."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from trustrec.errors import ConfigError
from trustrec.evaluate.completeness import (
    agreement_report,
    forgotten_item_percentile,
    rank_correlation,
    topk_overlap,
)

from .conftest import make_ds


def lookup(matrix: np.ndarray):
    return lambda users: matrix[users]


class Model:
    """A score source with the Recommender-style ``score(users)``."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.matrix[users]


# ---------------------------------------------------------------- top-k overlap
def test_topk_overlap_hand_computed():
    a = np.array([[5, 4, 3, 2, 1, 0]], dtype=np.float32)
    b = np.array([[5, 3, 4, 0, 1, 2]], dtype=np.float32)
    train = make_ds([(0, 0)], 1, 6)  # item 0 (top for both) is masked
    # a ranks 1, 2, 3, 4, 5; b ranks 2, 1, 5, 4, 3.
    assert topk_overlap(lookup(a), lookup(b), train, [0], k=2) == pytest.approx([2 / 2])
    assert topk_overlap(lookup(a), lookup(b), train, [0], k=3) == pytest.approx([2 / 3])
    assert topk_overlap(lookup(a), lookup(b), train, [0], k=1) == pytest.approx([0 / 1])
    # k beyond the 5 candidates: the share is over the 5 candidates, so it is 1.
    assert topk_overlap(lookup(a), lookup(b), train, [0], k=20) == pytest.approx([5 / 5])


def test_topk_overlap_identical_and_no_candidates():
    g = np.random.default_rng(0)
    s = g.random((6, 30)).astype(np.float32)
    train = make_ds([(u, i) for u in range(6) for i in range(u * 3)] + [(5, i) for i in
                    range(15, 30)], 6, 30)  # user 5 has every item in train
    ov = topk_overlap(Model(s), lookup(s.copy()), train, np.arange(6), k=10)
    assert ov[:5] == pytest.approx(np.ones(5))
    assert np.isnan(ov[5])
    with pytest.raises(ConfigError, match="k must"):
        topk_overlap(Model(s), Model(s), train, [0], k=0)
    with pytest.raises(ValueError, match="out of range"):
        topk_overlap(Model(s), Model(s), train, [6])


# ---------------------------------------------------------------- rank correlation
def test_rank_correlation_identical_reversed_and_reference():
    g = np.random.default_rng(1)
    a = g.integers(0, 5, size=(7, 40)).astype(np.float32)  # many ties
    b = g.integers(0, 5, size=(7, 40)).astype(np.float32)
    pairs = [(u, i) for u in range(7) for i in g.choice(40, size=3 * u, replace=False)]
    excl = make_ds(pairs, 7, 40)
    users = np.array([3, 0, 6, 1, 5, 2, 4])
    np.testing.assert_allclose(rank_correlation(Model(a), lookup(a), users, exclude=excl), 1.0)
    np.testing.assert_allclose(rank_correlation(Model(a), lookup(-a), users, exclude=excl),
                               -1.0)
    got = rank_correlation(Model(a), Model(b), users, exclude=excl)
    mask = excl.to_csr().toarray() > 0
    for pos, u in enumerate(users):
        keep = ~mask[u]
        ref = spearmanr(a[u, keep], b[u, keep]).statistic
        assert got[pos] == pytest.approx(ref, abs=1e-12)
    # Chunking and the sparse-matrix form of the mask give the same numbers.
    np.testing.assert_allclose(
        rank_correlation(Model(a), Model(b), users, exclude=excl.to_csr(), chunk_size=2), got)
    # No mask: correlation over every item.
    full = rank_correlation(Model(a), Model(b), np.array([2]))
    assert full[0] == pytest.approx(spearmanr(a[2], b[2]).statistic, abs=1e-12)


def test_rank_correlation_constant_scores_is_nan():
    a = np.zeros((1, 5), dtype=np.float32)
    b = np.arange(5, dtype=np.float32)[None]
    assert np.isnan(rank_correlation(Model(a), Model(b), [0])[0])


# ---------------------------------------------------------------- forgotten percentile
def test_forgotten_item_percentile_hand_computed():
    remaining = make_ds([(0, 0), (1, 1)], 2, 6)
    forgotten = make_ds([(0, 2), (1, 0), (0, 1)], 2, 6)
    s = np.array([[0, 5, 1, 5, 3, 2],
                  [9, 0, 1, 2, 3, 4]], dtype=np.float32)
    pct = forgotten_item_percentile(Model(s), forgotten, remaining)
    # Row (0, 2): candidates 3, 4, 5 (0 is remaining train, 1 is another forgotten item);
    # all three score above it.
    # Row (1, 0): candidates 2, 3, 4, 5; none scores above 9.
    # Row (0, 1): candidates 3, 4, 5; item 3 ties with it (5), none is above.
    assert pct == pytest.approx([3 / 3, 0 / 4, (0 + 0.5 * 1) / 3])
    np.testing.assert_allclose(
        forgotten_item_percentile(Model(s), forgotten, remaining, chunk_size=1), pct)


def test_forgotten_items_scored_highest_is_zero_and_lowest_is_one():
    g = np.random.default_rng(2)
    n_u, n_i = 8, 50
    pairs = [(u, i) for u in range(n_u) for i in g.choice(n_i, size=10, replace=False)]
    ds = make_ds(pairs, n_u, n_i)
    forget = np.zeros(len(ds), dtype=bool)
    forget[::3] = True
    forgotten, remaining = ds.select(forget), ds.select(~forget)
    s = g.random((n_u, n_i)).astype(np.float32)
    high, low = s.copy(), s.copy()
    high[forgotten.users, forgotten.items] += 10
    low[forgotten.users, forgotten.items] -= 10
    assert forgotten_item_percentile(Model(high), forgotten, remaining) == pytest.approx(
        np.zeros(len(forgotten)))
    assert forgotten_item_percentile(Model(low), forgotten, remaining) == pytest.approx(
        np.ones(len(forgotten)))
    flat = np.zeros((n_u, n_i), dtype=np.float32)  # no information: the middle
    assert forgotten_item_percentile(Model(flat), forgotten, remaining) == pytest.approx(
        np.full(len(forgotten), 0.5))


def test_forgotten_item_percentile_id_space_error():
    with pytest.raises(ValueError, match="id spaces"):
        forgotten_item_percentile(Model(np.zeros((2, 6))), make_ds([(0, 1)], 2, 7),
                                  make_ds([(0, 0)], 2, 6))


# ---------------------------------------------------------------- report
KEYS20 = {"overlap@20_vs_retrain", "rank_corr_vs_retrain", "forgotten_overlap@20_vs_retrain",
          "forgotten_item_pct", "forgotten_item_pct_retrain", "forgotten_item_pct_gap"}


@pytest.fixture(scope="module")
def forget_setup(ml100k_split):
    """Forget every training row of users 0..19 on ML-100K; random 16-dim factor scores."""
    train = ml100k_split.train
    forget = np.isin(train.users, np.arange(20))
    g = np.random.default_rng(3)
    u = g.standard_normal((train.n_users, 16)).astype(np.float32)
    v = g.standard_normal((train.n_items, 16)).astype(np.float32)
    retained = np.setdiff1d(train.active_users(), np.arange(20))
    return train.select(~forget), train.select(forget), retained, u @ v.T


def test_report_identical_models(forget_setup):
    remaining, forgotten, retained, s = forget_setup
    rep = agreement_report(Model(s), lookup(s.copy()), remaining, forgotten, retained)
    assert set(rep) == KEYS20
    assert rep["overlap@20_vs_retrain"] == pytest.approx(1.0)
    assert rep["rank_corr_vs_retrain"] == pytest.approx(1.0)
    assert rep["forgotten_overlap@20_vs_retrain"] == pytest.approx(1.0)
    assert rep["forgotten_item_pct_gap"] == 0.0
    assert 0.3 < rep["forgotten_item_pct"] < 0.7  # random factors know nothing


def test_report_remembering_model(forget_setup):
    remaining, forgotten, retained, s = forget_setup
    memo = s.copy()
    memo[forgotten.users, forgotten.items] = s.max() + 1  # still ranks forgotten rows first
    rep = agreement_report(Model(memo), Model(s), remaining, forgotten, retained, k=10)
    assert {k.replace("@10", "@20") for k in rep} == KEYS20
    assert rep["overlap@10_vs_retrain"] == pytest.approx(1.0)  # retained users untouched
    assert rep["rank_corr_vs_retrain"] == pytest.approx(1.0)
    assert rep["forgotten_overlap@10_vs_retrain"] < 0.5
    assert rep["forgotten_item_pct"] == pytest.approx(0.0)
    assert rep["forgotten_item_pct_gap"] == pytest.approx(-rep["forgotten_item_pct_retrain"])
    assert rep["forgotten_item_pct_gap"] < -0.3


def test_report_against_direct_calls_and_sampling(forget_setup):
    remaining, forgotten, retained, s = forget_setup
    g = np.random.default_rng(4)
    other = s + g.standard_normal(s.shape).astype(np.float32)
    rep = agreement_report(Model(s), Model(other), remaining, forgotten, retained)
    assert rep["overlap@20_vs_retrain"] == pytest.approx(
        topk_overlap(Model(s), Model(other), remaining, retained).mean())
    corr = rank_correlation(Model(s), Model(other), retained, exclude=remaining)
    assert rep["rank_corr_vs_retrain"] == pytest.approx(corr.mean())
    assert 0 < rep["rank_corr_vs_retrain"] < 1
    assert rep["forgotten_item_pct_gap"] == pytest.approx(
        forgotten_item_percentile(Model(s), forgotten, remaining).mean()
        - forgotten_item_percentile(Model(other), forgotten, remaining).mean())
    # Sampling: deterministic per seed, a different draw for another seed.
    a = agreement_report(Model(s), Model(other), remaining, forgotten, retained,
                         max_users=50, seed=1)
    b = agreement_report(Model(s), Model(other), remaining, forgotten, retained,
                         max_users=50, seed=1)
    c = agreement_report(Model(s), Model(other), remaining, forgotten, retained,
                         max_users=50, seed=2)
    assert a == b
    assert a["rank_corr_vs_retrain"] != c["rank_corr_vs_retrain"]
    assert a["forgotten_item_pct"] == rep["forgotten_item_pct"]  # forgotten rows: all
    with pytest.raises(ConfigError, match="max_users"):
        agreement_report(Model(s), Model(other), remaining, forgotten, retained, max_users=0)
