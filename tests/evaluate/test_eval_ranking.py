"""Ranking metrics against hand-computed cases and an independent reference."""

from __future__ import annotations

from math import log2

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import (
    METRICS,
    dataset_csr,
    evaluate_ranking,
    ndcg_at,
    rank_topk,
    summarize,
)

from .conftest import make_ds

# 4 users × 6 items. Scores are fixed; the "model" is a lookup into this matrix.
SCORES = np.array([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # user 0: best item 0 → worst item 5
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # user 1: no relevant item (dropped)
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # user 2: best item 5 → worst item 0
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # user 3: all tied → order by item index
], dtype=np.float32)
TRAIN = make_ds([(0, 0), (1, 0), (2, 5), (3, 1)], 4, 6)
TRUTH = make_ds([(0, 1), (0, 3), (2, 0), (3, 3)], 4, 6)


def fixed(users: np.ndarray) -> np.ndarray:
    return SCORES[users]  # a view: evaluation must not write into it


def row(df: pd.DataFrame, user: int) -> pd.Series:
    return df.set_index("user").loc[user]


@pytest.fixture(scope="module")
def toy() -> pd.DataFrame:
    before = SCORES.copy()
    df = evaluate_ranking(fixed, TRAIN, TRUTH, ks=(2, 3, 10))
    np.testing.assert_array_equal(SCORES, before)
    return df


def test_columns_and_users(toy):
    assert list(toy["user"]) == [0, 2, 3]  # user 1 has no relevant item: dropped
    assert list(toy["n_relevant"]) == [2, 1, 1]
    assert set(toy.columns) == {"user", "n_relevant"} | {
        f"{m}@{k}" for m in METRICS for k in (2, 3, 10)}


def test_user0_training_item_masked(toy):
    # Ranking without train item 0: 1, 2, 3, 4, 5; relevant {1, 3}.
    r = row(toy, 0)
    assert r["ndcg@2"] == pytest.approx((1 / log2(2)) / (1 / log2(2) + 1 / log2(3)))
    assert r["recall@2"] == pytest.approx(1 / 2)
    assert r["precision@2"] == pytest.approx(1 / 2)
    assert r["hit@2"] == 1.0
    assert r["mrr@2"] == pytest.approx(1 / 1)
    # k=3: hits at positions 0 and 2; IDCG over min(|rel|=2, 3) = 2 positions.
    assert r["ndcg@3"] == pytest.approx((1 + 1 / log2(4)) / (1 + 1 / log2(3)))
    assert r["recall@3"] == pytest.approx(2 / 2)
    assert r["precision@3"] == pytest.approx(2 / 3)
    assert r["mrr@3"] == pytest.approx(1 / 1)


def test_user2_hit_only_beyond_small_k_and_k_beyond_catalogue(toy):
    # Ranking without train item 5: 4, 3, 2, 1, 0; relevant {0} at position 4.
    r = row(toy, 2)
    for k in (2, 3):
        assert r[f"ndcg@{k}"] == 0.0
        assert r[f"recall@{k}"] == 0.0
        assert r[f"hit@{k}"] == 0.0
        assert r[f"mrr@{k}"] == 0.0
    # k=10 > 6 items: the list holds the 5 rankable items; precision still divides by k.
    assert r["ndcg@10"] == pytest.approx((1 / log2(6)) / (1 / log2(2)))
    assert r["recall@10"] == pytest.approx(1 / 1)
    assert r["precision@10"] == pytest.approx(1 / 10)
    assert r["hit@10"] == 1.0
    assert r["mrr@10"] == pytest.approx(1 / 5)


def test_user3_ties_by_item_index(toy):
    # All scores equal: ranking 0, 2, 3, 4, 5 (item 1 is in train); relevant {3} at pos 2.
    r = row(toy, 3)
    assert r["hit@2"] == 0.0
    assert r["ndcg@3"] == pytest.approx((1 / log2(4)) / (1 / log2(2)))
    assert r["mrr@3"] == pytest.approx(1 / 3)
    assert r["precision@3"] == pytest.approx(1 / 3)


def test_masked_relevant_item_never_counts():
    # The truth item 0 is also a training item: it can only appear in an excluded slot.
    train = make_ds([(0, 0), (0, 1), (0, 2)], 1, 3)
    truth = make_ds([(0, 0)], 1, 3)
    df = evaluate_ranking(lambda u: np.array([[3.0, 2.0, 1.0]]), train, truth, ks=(3,))
    assert df["hit@3"].item() == 0.0
    assert df["ndcg@3"].item() == 0.0


def test_exclude_removes_items():
    extra = sp.csr_matrix((np.ones(1), ([0], [1])), shape=(4, 6))
    df = evaluate_ranking(fixed, TRAIN, TRUTH, ks=(2,), exclude=extra)
    # User 0 ranking without items 0 and 1: 2, 3, 4, 5; relevant {1, 3} → hit at pos 1.
    assert row(df, 0)["ndcg@2"] == pytest.approx(
        (1 / log2(3)) / (1 / log2(2) + 1 / log2(3)))
    assert row(df, 0)["mrr@2"] == pytest.approx(1 / 2)
    # The same mask given as a Dataset.
    df2 = evaluate_ranking(fixed, TRAIN, TRUTH, ks=(2,), exclude=make_ds([(0, 1)], 4, 6))
    pd.testing.assert_frame_equal(df, df2)


def test_torch_and_float64_scores(toy):
    import torch

    pd.testing.assert_frame_equal(
        evaluate_ranking(lambda u: torch.from_numpy(SCORES[u]), TRAIN, TRUTH, ks=(2, 3, 10)),
        toy)
    pd.testing.assert_frame_equal(
        evaluate_ranking(lambda u: SCORES[u].astype(np.float64), TRAIN, TRUTH, ks=(2, 3, 10)),
        toy)


def test_users_argument_drops_users_without_truth():
    df = evaluate_ranking(fixed, TRAIN, TRUTH, ks=(2,), users=np.array([1, 0, 0]))
    assert list(df["user"]) == [0]


def test_chunking_matches_one_chunk(toy):
    for chunk in (1, 2):
        pd.testing.assert_frame_equal(
            evaluate_ranking(fixed, TRAIN, TRUTH, ks=(2, 3, 10), chunk_size=chunk), toy)


def test_summarize_and_ndcg_at(toy):
    s = summarize(toy)
    assert set(s) == {c for c in toy.columns if "@" in c}
    assert s["hit@10"] == pytest.approx((1 + 1 + 1) / 3)
    assert s["hit@2"] == pytest.approx((1 + 0 + 0) / 3)
    assert ndcg_at(fixed, TRAIN, TRUTH, k=2) == pytest.approx(toy["ndcg@2"].mean())
    assert np.isnan(summarize(toy.iloc[:0])["ndcg@2"])


# ---------------------------------------------------------------- rank_topk ties
def test_rank_topk_ties_lower_index_first():
    n_items = 2000
    zeros = np.zeros((3, n_items), dtype=np.float32)
    np.testing.assert_array_equal(rank_topk(zeros, None, np.arange(3), 10),
                                  np.tile(np.arange(10), (3, 1)))
    # Ties inside the list (no tie at the cut-off) and at the cut-off, at scattered items.
    g = np.random.default_rng(0)
    s = g.random((2, n_items)).astype(np.float32) * 0.5
    top = [1500, 3, 700, 42, 999]
    s[0, top] = 1.0                       # five tied items, k = 5: inside the list
    s[1, top] = 1.0                       # five tied items, k = 3: across the cut-off
    assert rank_topk(s[:1], None, np.array([0]), 5).tolist() == [[3, 42, 700, 999, 1500]]
    assert rank_topk(s[1:], None, np.array([1]), 3).tolist() == [[3, 42, 700]]


def test_rank_topk_masks_and_does_not_modify_input():
    s = np.array([[5.0, 4.0, 3.0, 2.0]], dtype=np.float32)
    before = s.copy()
    ex = sp.csr_matrix((np.ones(2), ([1, 1], [0, 2])), shape=(2, 4))
    assert rank_topk(s, ex, np.array([1]), 2).tolist() == [[1, 3]]
    assert rank_topk(s, ex.tocoo(), np.array([1]), 2).tolist() == [[1, 3]]
    assert rank_topk(s, ex, np.array([1]), 10).shape == (1, 4)  # k capped at n_items
    np.testing.assert_array_equal(s, before)


def test_dataset_csr_cached_and_read_only():
    m = dataset_csr(TRAIN)
    assert dataset_csr(TRAIN) is m
    assert (m.toarray() == TRAIN.to_csr().toarray()).all()
    with pytest.raises(ValueError):
        m.data[0] = 2.0
    other = make_ds([(0, 0)], 4, 6)  # an equal-looking but distinct Dataset: its own entry
    assert dataset_csr(other) is not dataset_csr(make_ds([(0, 0)], 4, 6))


# ---------------------------------------------------------------- errors
def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="ks"):
        evaluate_ranking(fixed, TRAIN, TRUTH, ks=(0,))
    with pytest.raises(ConfigError, match="chunk_size"):
        evaluate_ranking(fixed, TRAIN, TRUTH, chunk_size=0)
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(lambda u: np.zeros((len(u), 5)), TRAIN, TRUTH)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(lambda u: np.full((len(u), 6), np.nan), TRAIN, TRUTH)
    with pytest.raises(ValueError, match="out of range"):
        evaluate_ranking(fixed, TRAIN, TRUTH, users=np.array([0, 9]))
    with pytest.raises(ValueError, match="id spaces"):
        evaluate_ranking(fixed, TRAIN, make_ds([(0, 1)], 4, 7))


# ---------------------------------------------------------------- real data
def reference_metrics(scores: np.ndarray, train: Dataset, truth: Dataset,
                      k: int) -> pd.DataFrame:
    """Independent per-user loop: stable full sort, textbook formulas."""
    tr, te = train.to_csr().tolil().rows, truth.to_csr().tolil().rows
    out = []
    for u in range(train.n_users):
        rel = set(te[u])
        if not rel:
            continue
        s = scores[u].astype(np.float64)
        cand = np.setdiff1d(np.arange(train.n_items), tr[u])
        ranked = cand[np.argsort(-s[cand], kind="stable")][:k]
        hits = [i in rel for i in ranked]
        dcg = sum(1 / log2(p + 2) for p, h in enumerate(hits) if h)
        idcg = sum(1 / log2(p + 2) for p in range(min(len(rel), k)))
        first = next((p for p, h in enumerate(hits) if h), None)
        out.append({"user": u, f"ndcg@{k}": dcg / idcg, f"recall@{k}": sum(hits) / len(rel),
                    f"precision@{k}": sum(hits) / k, f"hit@{k}": float(any(hits)),
                    f"mrr@{k}": 0.0 if first is None else 1 / (first + 1)})
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def factor_scores(ml100k_split):
    g = np.random.default_rng(1)
    n_u, n_i = ml100k_split.train.n_users, ml100k_split.train.n_items
    u = g.standard_normal((n_u, 16)).astype(np.float32)
    v = g.standard_normal((n_i, 16)).astype(np.float32)
    return u @ v.T


def test_ml100k_matches_reference_and_chunks(ml100k_split, factor_scores):
    sp_ = ml100k_split
    model = lambda u: factor_scores[u]  # noqa: E731
    df = evaluate_ranking(model, sp_.train, sp_.test, ks=(10, 20))
    assert len(df) == int((sp_.test.user_counts() > 0).sum())
    ref = reference_metrics(factor_scores, sp_.train, sp_.test, 20)
    for c in ref.columns[1:]:
        np.testing.assert_allclose(df[c].to_numpy(), ref[c].to_numpy(), rtol=1e-12,
                                   atol=1e-12, err_msg=c)
    pd.testing.assert_frame_equal(
        evaluate_ranking(model, sp_.train, sp_.test, ks=(10, 20), chunk_size=97), df)
    # The matrix-scoring path (a Recommender-like object with score(users)) is the same.
    class Fixed:
        def score(self, users):
            return factor_scores[users]
    pd.testing.assert_frame_equal(evaluate_ranking(Fixed(), sp_.train, sp_.test), df)


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")
def test_ml100k_ndcg_agrees_with_implicit(ml100k_split, factor_scores):
    """A peer library's NDCG@k on the same scores (no ties in random factors)."""
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    g = np.random.default_rng(1)
    sp_ = ml100k_split
    u = g.standard_normal((sp_.train.n_users, 16)).astype(np.float32)
    v = g.standard_normal((sp_.train.n_items, 16)).astype(np.float32)
    peer = AlternatingLeastSquares(factors=16, random_state=0)
    peer.user_factors, peer.item_factors = u, v
    theirs = ranking_metrics_at_k(peer, sp_.train.to_csr(), sp_.test.to_csr(), K=10,
                                  show_progress=False, num_threads=1)
    ours = evaluate_ranking(lambda us: u[us] @ v.T, sp_.train, sp_.test, ks=(10,))
    assert ours["ndcg@10"].mean() == pytest.approx(theirs["ndcg"], rel=1e-6)


def test_untruncated_ideal_dcg_is_cure4rec_s():
    """CURE4Rec's NDCG divides by the DCG of *all* relevant items: a user with more than k
    relevant items cannot reach 1, and the value is never above the standard one."""
    n_items = 6
    train = make_ds([], 1, n_items)
    truth = make_ds([(0, i) for i in range(4)], 1, n_items)
    perfect = lambda users: np.tile(-np.arange(n_items, dtype=np.float32), (len(users), 1))  # noqa: E731
    std = evaluate_ranking(perfect, train, truth, (2,))
    unt = evaluate_ranking(perfect, train, truth, (2,), ndcg_ideal="untruncated")
    assert std["ndcg@2"].iloc[0] == pytest.approx(1.0)
    disc = 1 / np.log2(np.arange(4) + 2)
    assert unt["ndcg@2"].iloc[0] == pytest.approx(disc[:2].sum() / disc.sum())
    assert (unt["recall@2"] == std["recall@2"]).all()
    with pytest.raises(ConfigError, match="ndcg_ideal"):
        evaluate_ranking(perfect, train, truth, (2,), ndcg_ideal="full")
