"""k-core filtering: iterates to a fixed point and re-indexes consistently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustrec.data import k_core
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError


def _reference_k_core(pairs: list[tuple[int, int]], uk: int, ik: int) -> list[tuple[int, int]]:
    """Slow, obviously correct: drop one offending row set at a time until stable."""
    rows = list(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in rows:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        keep = [(u, i) for u, i in rows if uc[u] >= uk and ic[i] >= ik]
        if len(keep) == len(rows):
            return rows
        rows = keep


def test_iteration_matters():
    # A, B rate x, y; C rates y and z. z has one row -> gone; then C has one row -> gone.
    # A single pass would keep C's row on y.
    users = ["A", "A", "B", "B", "C", "C"]
    items = ["x", "y", "x", "y", "y", "z"]
    uidx = {"A": 0, "B": 1, "C": 2}
    iidx = {"x": 0, "y": 1, "z": 2}
    ds = Dataset(
        name="t", users=[uidx[u] for u in users], items=[iidx[i] for i in items],
        timestamps=np.arange(6), n_users=3, n_items=3,
        user_ids=np.array(["A", "B", "C"]), item_ids=np.array(["x", "y", "z"]),
        user_attributes=pd.DataFrame({"gender": ["F", "M", "F"]}),
        item_attributes=pd.DataFrame({"title": ["X", "Y", "Z"]}),
        ratings=np.arange(6, dtype=np.float32),
    )
    out = k_core(ds, 2, 2)
    assert (out.n_users, out.n_items, out.n_interactions) == (2, 2, 4)
    assert list(out.user_ids) == ["A", "B"] and list(out.item_ids) == ["x", "y"]
    assert list(out.users) == [0, 0, 1, 1] and list(out.items) == [0, 1, 0, 1]
    assert list(out.timestamps) == [0, 1, 2, 3] and out.ratings.tolist() == [0, 1, 2, 3]
    assert out.user_attributes["gender"].tolist() == ["F", "M"]
    assert out.item_attributes["title"].tolist() == ["X", "Y"]
    assert ds.n_interactions == 6  # input unchanged


def test_matches_reference_on_random_data(make_ds):
    gen = np.random.default_rng(7)
    users = gen.integers(0, 60, 700)
    items = (gen.zipf(1.6, 700) % 80).astype(np.int64)
    ds = make_ds(users, items, n_users=60, n_items=80)
    for uk, ik in [(3, 3), (5, 2), (1, 6), (10, 10)]:
        out = k_core(ds, uk, ik)
        want = _reference_k_core(list(zip(users.tolist(), items.tolist(), strict=True)), uk, ik)
        got = list(zip(out.user_ids[out.users].astype(int).tolist(),
                       out.item_ids[out.items].astype(int).tolist(), strict=True))
        assert got == want
        if out.n_interactions:
            assert out.user_counts().min() >= uk and out.item_counts().min() >= ik
            assert out.n_users == len(np.unique(out.users))


def test_ml100k_5core(ml100k):
    out = k_core(ml100k, 5, 5)
    assert out.user_counts().min() >= 5 and out.item_counts().min() >= 5
    assert out.n_users == 943 and out.n_items < ml100k.n_items
    assert len(out.user_attributes) == out.n_users
    # surviving items keep their raw ids and relative order
    assert (out.item_ids.astype(int)[1:] > out.item_ids.astype(int)[:-1]).all()


def test_noop_and_validation(make_ds):
    ds = make_ds([0, 0, 1, 1], [0, 1, 0, 1])
    assert k_core(ds, 2, 2) is ds
    assert k_core(ds, 3, 0).n_interactions == 0
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ConfigError, match="user_k"):
            k_core(ds, bad, 1)
