"""Partitions: nearest-first greedy, balanced k-means (UBP), IBP, OT balancing, distances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trustrec.errors import ConfigError, DataFormatError
from trustrec.seeding import rng
from trustrec.unlearn import sisa
from trustrec.unlearn.ensemble import pretrained_embeddings
from trustrec.unlearn.partition import (
    balanced_kmeans,
    balanced_partition,
    balanced_round,
    greedy_assign,
    interaction_balanced_partition,
    ot_balanced_partition,
    sq_distances,
    transport_plan,
    within_shard_distance,
)


@pytest.fixture(scope="module")
def emb(ml100k_split):
    """Real pretrained WMF embeddings of ML-100K (RecEraser's and UltraRE's default)."""
    return pretrained_embeddings(ml100k_split.train, "wmf", {"dim": 32, "epochs": 5}, 0)


def walk_sorted_pairs(cost: np.ndarray, cap: int, n_over: int) -> np.ndarray:
    """Reference: walk all (row, column) pairs in stable ascending order of cost."""
    n, k = cost.shape
    out, size, over = np.full(n, -1), np.zeros(k, int), 0
    for f in np.argsort(cost, axis=None, kind="stable"):
        p, g = divmod(int(f), k)
        if out[p] >= 0:
            continue
        if size[g] >= cap:
            if size[g] > cap or over >= n_over:
                continue
            over += 1
        out[p], size[g] = g, size[g] + 1
    return out


# ---------------------------------------------------------------------------- greedy
def test_greedy_assign_takes_nearest_pairs_first():
    """Edge cases (synthetic): random costs, many ties, tight and loose capacities."""
    gen = np.random.default_rng(0)
    for trial in range(150):
        n = int(gen.integers(1, 40))
        k = int(gen.integers(1, min(n, 6) + 1))
        cost = (gen.integers(0, 4, (n, k)).astype(float) if trial % 2
                else gen.random((n, k)))
        if trial % 3 == 0:
            cap, n_over = n // k, n % k
        else:
            cap, n_over = math.ceil(n / k * gen.uniform(1, 1.6)), 0
        got = greedy_assign(cost, cap, n_over)
        np.testing.assert_array_equal(got, walk_sorted_pairs(cost, cap, n_over))
        sizes = np.bincount(got, minlength=k)
        assert got.dtype == np.int64 and sizes.sum() == n
        assert (sizes <= cap + 1).all() and (sizes > cap).sum() <= n_over


def test_greedy_assign_hand_example():
    # pairs by cost: (r0,c0)=0, (r1,c0)=1, (r2,c1)=2, (r3,c0)=3 refused (c0 full), ...,
    # (r3,c1)=8: row 3 prefers column 0 but the nearer rows 0 and 1 filled it first
    cost = np.array([[0.0, 5.0], [1.0, 9.0], [4.0, 2.0], [3.0, 8.0]])
    np.testing.assert_array_equal(greedy_assign(cost, 2), [0, 0, 1, 1])
    np.testing.assert_array_equal(greedy_assign(cost, 3), [0, 0, 1, 0])
    # 5 rows, groups of 2 and one of 3: column 0 takes its third row (row 4, cost 2.5)
    # first, so row 3 (cost 3) is refused there and goes to column 1
    cost5 = np.vstack([cost, [2.5, 7.0]])
    np.testing.assert_array_equal(greedy_assign(cost5, 2, 1), [0, 0, 1, 1, 0])


def test_greedy_assign_errors():
    with pytest.raises(ConfigError, match="do not fit"):
        greedy_assign(np.zeros((5, 2)), 2)
    with pytest.raises(DataFormatError, match="NaN"):
        greedy_assign(np.array([[np.nan, 1.0]]), 1)
    assert greedy_assign(np.zeros((0, 3)), 0).shape == (0,)


# ---------------------------------------------------------------------------- k-means
def test_balanced_kmeans_on_real_embeddings_beats_random(emb):
    p, _ = emb
    n = len(p)
    for k in (10, 7):
        a = balanced_kmeans(p, k, seed=1, capacity=1.2)
        sizes = np.bincount(a, minlength=k)
        assert a.dtype == np.int64 and a.shape == (n,)
        assert sizes.max() <= math.ceil(1.2 * n / k) and sizes.sum() == n
        # clustering must group similar users: measured ratio ~0.61-0.66 against a random
        # balanced split on these embeddings; 0.8 leaves room for seeds and BLAS noise
        ratio = within_shard_distance(p, a) / within_shard_distance(
            p, balanced_partition(n, k, 1))
        assert ratio < 0.8, ratio
    np.testing.assert_array_equal(balanced_kmeans(p, 10, 1, capacity=1.2),
                                  balanced_kmeans(p, 10, 1, capacity=1.2))
    assert not np.array_equal(balanced_kmeans(p, 10, 1), balanced_kmeans(p, 10, 2))


def test_balanced_kmeans_capacity_one_is_balanced_and_each_step_is_greedy(emb):
    p, _ = emb
    a = balanced_kmeans(p, 10, seed=0, iters=1)
    sizes = np.bincount(a, minlength=10)
    assert sizes.max() == math.ceil(len(p) / 10)
    # one iteration = the nearest-first greedy against the anchors drawn from the seed
    anchors = p[rng(0, "partition", "anchors").choice(len(p), 10, replace=False)]
    cost = sq_distances(p.astype(np.float64), anchors.astype(np.float64))
    np.testing.assert_array_equal(a, walk_sorted_pairs(cost, math.ceil(len(p) / 10), 0))


def test_balanced_kmeans_errors():
    x = np.random.default_rng(0).normal(size=(20, 3))
    for bad in (0, 21, 2.5, True):
        with pytest.raises(ConfigError, match="number of groups"):
            balanced_kmeans(x, bad, 0)
    with pytest.raises(ConfigError, match="capacity"):
        balanced_kmeans(x, 4, 0, capacity=0.9)
    with pytest.raises(ConfigError, match="iters"):
        balanced_kmeans(x, 4, 0, iters=0)
    with pytest.raises(DataFormatError, match="2-D"):
        balanced_kmeans(x[:, 0], 4, 0)
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        balanced_kmeans(bad, 4, 0)
    one = balanced_kmeans(x, 1, 0)
    assert (one == 0).all()


def test_balanced_partition_lives_in_partition_and_sisa():
    assert sisa.balanced_partition is balanced_partition


# ---------------------------------------------------------------------------- IBP
def test_interaction_partition_caps_rows_and_groups_similar_rows(emb, ml100k_split):
    p, q = emb
    tr = ml100k_split.train
    k = 10
    a = interaction_balanced_partition(p, q, tr.users, tr.items, k, seed=0, iters=3)
    sizes = np.bincount(a, minlength=k)
    assert a.shape == (tr.n_interactions,) and sizes.sum() == tr.n_interactions
    assert sizes.max() <= math.ceil(1.2 * tr.n_interactions / k)
    # rows of a shard are close in (user, item) embedding space: measured ratio ~0.72
    # against a random row split (50 iterations; 3 here), 0.9 leaves room
    x = np.hstack([p[tr.users], q[tr.items]])
    random = rng(0, "test").permutation(tr.n_interactions) % k
    assert within_shard_distance(x, a) < 0.9 * within_shard_distance(x, random)
    with pytest.raises(DataFormatError, match="outside"):
        interaction_balanced_partition(p, q, tr.users, tr.items + len(q), k, 0)


# ---------------------------------------------------------------------------- OT
@pytest.mark.parametrize("method", ["exact", "entropic"])
@pytest.mark.parametrize("k", [10, 7])
def test_ot_partition_is_exactly_balanced_on_real_embeddings(emb, method, k):
    p, _ = emb
    a = ot_balanced_partition(p, k, seed=3, method=method)
    sizes = np.bincount(a, minlength=k)
    assert sizes.sum() == len(p) and sizes.max() - sizes.min() <= 1
    assert sorted(sizes.tolist()) == sorted([len(p) // k + (g < len(p) % k) for g in range(k)])
    # and it clusters (measured ~0.61-0.67 of a random split's distance)
    ratio = within_shard_distance(p, a) / within_shard_distance(
        p, balanced_partition(len(p), k, 3))
    assert ratio < 0.8, ratio


def test_entropic_argmax_is_unbalanced_so_the_plan_is_rounded(emb):
    p, _ = emb
    x = p.astype(np.float64)
    plan = transport_plan(sq_distances(x, x[:10]), "entropic", reg=0.05)
    np.testing.assert_allclose(plan.sum(1), 1 / len(x), rtol=1e-3)
    argmax = np.bincount(plan.argmax(1), minlength=10)
    # measured on ML-100K: argmax sizes range 18..180, far from 94/95
    assert argmax.max() - argmax.min() > 10
    rounded = np.bincount(balanced_round(plan), minlength=10)
    assert rounded.max() - rounded.min() <= 1


def test_balanced_round_keeps_a_balanced_argmax():
    """Edge case (synthetic): a plan moving every point whole is left as it is."""
    labels = np.array([2, 0, 1, 1, 0, 2, 0])
    plan = np.full((7, 3), 0.01)
    plan[np.arange(7), labels] = 1.0
    np.testing.assert_array_equal(balanced_round(plan), labels)


def test_ot_errors():
    x = np.random.default_rng(0).normal(size=(12, 2))
    with pytest.raises(ConfigError, match="OT method"):
        ot_balanced_partition(x, 3, 0, method="sinkhorn")
    with pytest.raises(ConfigError, match="reg > 0"):
        transport_plan(np.ones((4, 2)), "entropic", reg=0.0)


# ---------------------------------------------------------------------------- distance
def test_within_shard_distance():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [10.0, 12.0]])
    assert within_shard_distance(x, np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert within_shard_distance(x, np.array([0, 1, 2, 3])) == 0.0
    with pytest.raises(DataFormatError, match="assignment"):
        within_shard_distance(x, np.array([0, 1]))
    with pytest.raises(DataFormatError, match="assignment"):
        within_shard_distance(x, np.array([0, -1, 0, 0]))
