"""Activity groups, A-IGF and shard fairness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError, UnknownNameError
from trustrec.evaluate.fairness import (
    a_igf,
    a_igf_signed,
    activity_groups,
    group_metrics,
    shard_fairness,
)


def counts_ds(counts: list[int], n_items: int = 50) -> Dataset:
    """User u has counts[u] rows (items 0..counts[u]-1)."""
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) for c in counts]) if sum(counts) else np.zeros(0)
    return Dataset(name="toy", users=users, items=items, timestamps=np.zeros(len(users)),
                   n_users=len(counts), n_items=n_items,
                   user_ids=np.array([str(u) for u in range(len(counts))]),
                   item_ids=np.array([str(i) for i in range(n_items)]))


def test_activity_groups_size_rounding_and_ties():
    # 10 users with rows, one without. top=0.25 → round(2.5) = 3 (half up) active users.
    counts = [5, 9, 9, 0, 1, 7, 9, 2, 3, 4, 6]
    act = activity_groups(counts_ds(counts), top=0.25)
    assert act.dtype == bool and len(act) == len(counts)
    assert np.flatnonzero(act).tolist() == [1, 2, 6]
    # top=0.2 → 2 users: three users tie at 9 rows, the lower indices win.
    assert np.flatnonzero(activity_groups(counts_ds(counts), top=0.2)).tolist() == [1, 2]
    # At least one active user, even for a tiny share.
    assert np.flatnonzero(activity_groups(counts_ds(counts), top=0.001)).tolist() == [1]
    # top=1: every user with a row, never the user without rows.
    assert np.flatnonzero(~activity_groups(counts_ds(counts), top=1.0)).tolist() == [3]


def test_activity_groups_errors():
    with pytest.raises(ConfigError, match="top"):
        activity_groups(counts_ds([1, 2]), top=0)
    with pytest.raises(ConfigError, match="top"):
        activity_groups(counts_ds([1, 2]), top=1.5)
    with pytest.raises(ConfigError, match="top"):
        activity_groups(counts_ds([1, 2]), top="5%")
    with pytest.raises(ValueError, match="no interactions"):
        activity_groups(counts_ds([0, 0]))


def test_group_metrics_and_a_igf_hand_computed():
    train = counts_ds([10, 1, 2, 3])  # top=0.25 → 1 active user: user 0
    per_user = pd.DataFrame({"user": [0, 1, 2, 3], "n_relevant": [1, 1, 1, 1],
                             "ndcg@20": [0.9, 0.1, 0.2, 0.6],
                             "recall@20": [1.0, 0.0, 0.5, 0.5]})
    g = group_metrics(per_user, activity_groups(train, 0.25))
    assert g["n_users_active"] == 1 and g["n_users_inactive"] == 3
    assert g["ndcg@20_active"] == pytest.approx(0.9)
    assert g["ndcg@20_inactive"] == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    assert g["recall@20_inactive"] == pytest.approx((0.0 + 0.5 + 0.5) / 3)
    assert "n_relevant_active" not in g
    assert a_igf_signed(per_user, train, top=0.25) == pytest.approx(0.9 - (0.1 + 0.2 + 0.6) / 3)
    # The active user doing worse: signed negative, absolute positive.
    worse = per_user.assign(**{"ndcg@20": [0.0, 0.3, 0.3, 0.6]})
    assert a_igf_signed(worse, train, top=0.25) == pytest.approx(0.0 - 0.4)
    assert a_igf(worse, train, top=0.25) == pytest.approx(0.4)
    assert a_igf(per_user, train, metric="recall@20", top=0.25) == pytest.approx(1 - 1 / 3)


def test_group_metrics_labels_and_empty_group():
    per_user = pd.DataFrame({"user": [0, 2], "ndcg@10": [0.5, 0.25]})
    g = group_metrics(per_user, np.array(["F", "M", "M"]))
    assert g == {"n_users_F": 1, "ndcg@10_F": 0.5, "n_users_M": 1, "ndcg@10_M": 0.25}
    # User 1 (the only active one) is not evaluated: the active mean is NaN.
    g = group_metrics(per_user, np.array([False, True, False]))
    assert g["n_users_active"] == 0 and np.isnan(g["ndcg@10_active"])
    assert np.isnan(a_igf(per_user.rename(columns={"ndcg@10": "ndcg@20"}),
                          counts_ds([1, 5, 1]), top=0.1))


def test_fairness_errors_name_the_problem():
    per_user = pd.DataFrame({"user": [0, 5], "ndcg@20": [0.5, 0.25]})
    with pytest.raises(ValueError, match="user index 5"):
        group_metrics(per_user, np.zeros(3, dtype=bool))
    with pytest.raises(UnknownNameError, match="ndcg@20"):
        a_igf(per_user, counts_ds([1] * 6), metric="ndcg@2O")


def test_shard_fairness():
    assert shard_fairness([0.3]) == 0.0
    vals = [0.1, 0.2, 0.6]
    mean = (0.1 + 0.2 + 0.6) / 3
    assert shard_fairness(vals) == pytest.approx(
        ((0.1 - mean) ** 2 + (0.2 - mean) ** 2 + (0.6 - mean) ** 2) / 3)
    with pytest.raises(ValueError, match="at least one"):
        shard_fairness([])
    with pytest.raises(ValueError, match="finite"):
        shard_fairness([0.1, float("nan")])


def test_activity_groups_on_ml100k(ml100k_split):
    train = ml100k_split.train
    counts = train.user_counts()
    act = activity_groups(train)
    n_with_rows = int((counts > 0).sum())
    assert n_with_rows == 943
    assert act.sum() == 47  # round(0.05 * 943) = round(47.15)
    # Every active user has at least as many rows as every inactive one.
    assert counts[act].min() >= counts[~act].max()
    # Matches an independent ranking (count descending, then user index).
    ref = sorted(range(train.n_users), key=lambda u: (-counts[u], u))[:47]
    assert np.flatnonzero(act).tolist() == sorted(ref)
    # A-IGF on a per-user table whose metric is the user's training count: the gap is
    # exactly the difference in mean counts.
    per_user = pd.DataFrame({"user": np.arange(train.n_users),
                             "ndcg@20": counts.astype(float)})
    assert a_igf_signed(per_user, train) == pytest.approx(
        counts[act].mean() - counts[~act].mean())
