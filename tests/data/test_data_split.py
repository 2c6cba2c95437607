"""random_split and leave_last_out: disjoint, complete, per-user rules, seeding, validation."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data import leave_last_out, random_split
from trustrec.errors import ConfigError


def _rows(ds) -> np.ndarray:
    return np.stack([ds.users, ds.items, ds.timestamps], axis=1)


def _same_multiset(a: np.ndarray, b: np.ndarray) -> bool:
    a = a[np.lexsort(a.T[::-1])]
    b = b[np.lexsort(b.T[::-1])]
    return a.shape == b.shape and (a == b).all()


def _check_partition(ds, split):
    parts = [split.train, split.valid, split.test]
    assert sum(p.n_interactions for p in parts) == ds.n_interactions
    assert _same_multiset(np.concatenate([_rows(p) for p in parts]), _rows(ds))
    keys = [set(p.pair_keys().tolist()) for p in parts]  # ML-100K has no duplicate pairs
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    for p in parts:
        assert (p.n_users, p.n_items) == (ds.n_users, ds.n_items)


def test_random_split_partition_and_shares(ml100k, ml100k_split):
    _check_partition(ml100k, ml100k_split)
    share = ml100k_split.test.n_interactions / ml100k.n_interactions
    assert 0.09 < share < 0.11
    assert (ml100k_split.train.user_counts() > 0).all()


def test_random_split_seeding(ml100k):
    a = random_split(ml100k, seed=3)
    b = random_split(ml100k, seed=3)
    c = random_split(ml100k, seed=4)
    np.testing.assert_array_equal(a.test.pair_keys(), b.test.pair_keys())
    assert not np.array_equal(a.test.pair_keys(), c.test.pair_keys())


@pytest.mark.parametrize("ratios", [(0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (0.8, 0.2),
                                    (1.2, -0.1, -0.1)])
def test_random_split_ratios_validated(ml100k, ratios):
    with pytest.raises(ConfigError, match="ratios"):
        random_split(ml100k, ratios)


def test_leave_last_out_ml100k(ml100k):
    split = leave_last_out(ml100k)
    _check_partition(ml100k, split)
    assert (split.test.user_counts() == 1).all() and (split.valid.user_counts() == 1).all()
    # the test row is the user's latest; the validation row is no later than the test row
    last = np.full(ml100k.n_users, -1, np.int64)
    np.maximum.at(last, ml100k.users, ml100k.timestamps)
    t_ts = np.zeros(ml100k.n_users, np.int64)
    t_ts[split.test.users] = split.test.timestamps
    assert (t_ts == last).all()
    v_ts = np.zeros(ml100k.n_users, np.int64)
    v_ts[split.valid.users] = split.valid.timestamps
    train_last = np.full(ml100k.n_users, -1, np.int64)
    np.maximum.at(train_last, split.train.users, split.train.timestamps)
    assert (v_ts <= t_ts).all() and (train_last <= v_ts).all()


def test_leave_last_out_ties_and_small_users(make_ds):
    # user 0: rows at t=5 (item 0), 9 (item 1), 9 (item 2): tie at 9 -> later row (item 2) last
    # user 1: one row -> train only; user 2: two rows -> one train, one test, no valid
    ds = make_ds(users=[0, 0, 0, 1, 2, 2], items=[0, 1, 2, 0, 1, 0],
                      timestamps=[5, 9, 9, 1, 4, 3])
    s = leave_last_out(ds, n_valid=1, n_test=1)
    assert list(zip(s.test.users, s.test.items, strict=True)) == [(0, 2), (2, 1)]
    assert list(zip(s.valid.users, s.valid.items, strict=True)) == [(0, 1)]
    assert list(zip(s.train.users, s.train.items, strict=True)) == [(0, 0), (1, 0), (2, 0)]
    s2 = leave_last_out(ds, n_valid=0, n_test=2)
    assert list(zip(s2.test.users, s2.test.items, strict=True)) == [(0, 1), (0, 2), (2, 1)]
    assert s2.valid.n_interactions == 0


@pytest.mark.parametrize("kw", [{"n_test": -1}, {"n_valid": 1.5}, {"n_test": True}])
def test_leave_last_out_validated(kw, make_ds):
    with pytest.raises(ConfigError):
        leave_last_out(make_ds([0], [0]), **kw)
