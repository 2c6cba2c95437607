"""CURE4Rec forget-set selection: sizes, ranking, ties, seeding, validation."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data import (
    SELECTIONS,
    select_forget_interactions,
    select_forget_items,
    select_forget_users,
)
from trustrec.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def train(ml100k_split):
    return ml100k_split.train


def test_registry_names():
    assert SELECTIONS.names() == ["core", "edge", "random"]


@pytest.mark.parametrize(("ratio", "n"), [(0.05, 47), (0.10, 94), (0.15, 141), (0.20, 188)])
def test_sizes(train, ratio, n):
    assert train.active_users().size == 943
    for sel in ("core", "edge", "random"):
        got = select_forget_users(train, sel, ratio, seed=0)
        assert got.shape == (n,) and len(np.unique(got)) == n
        assert got.dtype == np.int64 and (np.diff(got) > 0).all()


def test_core_more_active_than_edge(train):
    counts = train.user_counts()
    core = select_forget_users(train, "core", 0.05, 0)
    edge = select_forget_users(train, "edge", 0.05, 0)
    assert counts[core].min() > counts[edge].max()
    rest = np.setdiff1d(np.arange(train.n_users), core)
    assert counts[core].min() >= counts[rest].max()  # truly the top 5%
    rest = np.setdiff1d(np.arange(train.n_users), edge)
    assert counts[edge].max() <= counts[rest].min()  # truly the bottom 5%


def test_random_reproducible_and_seed_sensitive(train):
    a = select_forget_users(train, "random", 0.1, seed=1)
    b = select_forget_users(train, "random", 0.1, seed=1)
    c = select_forget_users(train, "random", 0.1, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(select_forget_users(train, "core", 0.1, 1),
                                  select_forget_users(train, "core", 0.1, 2))


def test_ties_by_index_and_inactive_users_excluded(make_ds):
    # counts: u0=2, u1=1, u2=2, u3=1, u4=0 (no rows), u5=3
    ds = make_ds([0, 0, 1, 2, 2, 3, 5, 5, 5], [0, 1, 0, 0, 1, 2, 0, 1, 2], n_users=6)
    assert list(select_forget_users(ds, "core", 0.4, 0)) == [0, 5]  # 5 active * .4 = 2
    assert list(select_forget_users(ds, "edge", 0.4, 0)) == [1, 3]  # u4 has no rows
    assert list(select_forget_users(ds, "edge", 0.6, 0)) == [0, 1, 3]  # tie 0 vs 2 -> 0
    assert list(select_forget_users(ds, "edge", 0.01, 0)) == [1]  # at least one
    assert 4 not in select_forget_users(ds, "random", 0.99, 0)


def test_validation(train):
    with pytest.raises(UnknownNameError, match="did you mean 'core'"):
        select_forget_users(train, "cor", 0.05, 0)
    for bad in (0, 1, 1.0, -0.1, 1.5, "0.1", float("nan")):
        with pytest.raises(ConfigError, match="ratio"):
            select_forget_users(train, "core", bad, 0)


def test_interactions(train):
    pairs = select_forget_interactions(train, 0.01, seed=0)
    assert pairs.shape == (len(np.unique(train.pair_keys())) // 100, 2)
    keys = pairs[:, 0] * train.n_items + pairs[:, 1]
    assert np.isin(keys, train.pair_keys()).all() and len(np.unique(keys)) == len(keys)
    np.testing.assert_array_equal(pairs, select_forget_interactions(train, 0.01, seed=0))
    assert not np.array_equal(pairs, select_forget_interactions(train, 0.01, seed=1))


def test_items(train):
    counts = train.item_counts()
    pop = select_forget_items(train, 0.05, 0, "popular")
    unpop = select_forget_items(train, 0.05, 0, "unpopular")
    n_active = int((counts > 0).sum())
    assert len(pop) == len(unpop) == int(n_active * 0.05)
    assert counts[pop].min() > counts[unpop].max() and counts[unpop].min() >= 1
    r = select_forget_items(train, 0.05, 3)
    np.testing.assert_array_equal(r, select_forget_items(train, 0.05, 3, "random"))
    with pytest.raises(UnknownNameError):
        select_forget_items(train, 0.05, 0, "core")
