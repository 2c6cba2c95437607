"""The ML-1M-shaped generator (timing data): shape, no duplicates, determinism, long tails."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.loaders import ML1M_AGE_GROUPS, ML1M_OCCUPATIONS
from trustrec.data.synthetic import SYNTHETIC_ML1M_NAME, ml1m_shaped
from trustrec.errors import ConfigError

SMALL = {"n_users": 300, "n_items": 400, "n_interactions": 30_000}


@pytest.fixture(scope="module")
def full():
    """The default size, drawn once (about a second)."""
    return ml1m_shaped(0)


def test_default_has_ml1m_shape(full):
    assert (full.n_users, full.n_items, full.n_interactions) == (6040, 3706, 1_000_209)
    assert full.name == SYNTHETIC_ML1M_NAME and "synthetic" in full.name
    # every user and every item is used, as in ML-1M
    assert (full.user_counts() >= 20).all()
    assert (full.item_counts() >= 1).all()
    assert full.to_csr().nnz == full.n_interactions  # no duplicate (user, item) pair


def test_long_tails(full):
    items = np.sort(full.item_counts())[::-1]
    top_tenth = items[: len(items) // 10].sum() / items.sum()
    # a uniform popularity would give ~0.10; ML-1M's top tenth holds about a third or more
    assert top_tenth > 0.3
    users = full.user_counts()
    # activity is right-skewed: mean well above median (ML-1M: 165.6 vs 96), heavy max
    assert users.mean() > 1.3 * np.median(users)
    assert users.max() > 10 * np.median(users)
    assert users.max() <= 0.625 * full.n_items


def test_attributes_and_timestamps(full):
    attrs = full.user_attributes
    assert list(attrs.columns) == ["gender", "age", "occupation"] and len(attrs) == 6040
    assert set(attrs["gender"]) == {"M", "F"}
    assert set(attrs["age"]) <= set(ML1M_AGE_GROUPS)
    assert set(attrs["occupation"]) <= set(ML1M_OCCUPATIONS)
    # ML-1M is 71.7 % male; 6,040 draws stay within a few points of it
    assert 0.67 < (attrs["gender"] == "M").mean() < 0.77
    ts = full.timestamps
    assert ts.min() >= 956_703_932 and ts.max() <= 1_046_454_590
    assert set(np.unique(full.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = ml1m_shaped(3, **SMALL), ml1m_shaped(3, **SMALL), ml1m_shaped(4, **SMALL)
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert np.array_equal(a.timestamps, b.timestamps)
    assert a.user_attributes.equals(b.user_attributes)
    assert not np.array_equal(a.pair_keys(), c.pair_keys())


def test_small_sizes_are_exact_and_distinct():
    d = ml1m_shaped(1, **SMALL, min_activity=25)
    assert (d.n_users, d.n_items, d.n_interactions) == (300, 400, 30_000)
    assert d.user_counts().min() >= 25
    assert len(np.unique(d.pair_keys())) == d.n_interactions


@pytest.mark.parametrize("kwargs, match", [
    ({"n_users": 0}, "n_users"),
    ({"n_items": 2.5}, "n_items"),
    ({"n_interactions": 10}, r"must lie in \[6000, "),
    ({"n_users": 10, "n_items": 40, "n_interactions": 300}, "must lie in"),
    ({"n_items": 20}, "exceeds the largest profile"),
])
def test_bad_sizes_are_config_errors(kwargs, match):
    args = {**SMALL, "n_users": 300, **kwargs}
    with pytest.raises(ConfigError, match=match):
        ml1m_shaped(0, **args)
