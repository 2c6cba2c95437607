"""Query: the users to score and, optionally, each user's item history (CSR arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users


def small() -> Dataset:
    return Dataset(name="s", users=np.array([1, 0, 1, 1, 2]), items=np.array([4, 2, 0, 3, 1]),
                   timestamps=np.array([30, 5, 10, 30, 1]), n_users=4, n_items=5,
                   user_ids=np.array(["a", "b", "c", "d"]),
                   item_ids=np.array([f"i{k}" for k in range(5)]))


def test_histories_are_each_users_items_in_time_order():
    q = Query.from_dataset(small(), np.array([1, 3, 0, 1]))
    assert q.users.tolist() == [1, 3, 0, 1] and q.has_history
    # user 1: item 0 at t=10, then items 4 and 3 at t=30 in the data's order
    assert [q.history(r).tolist() for r in range(4)] == [[0, 4, 3], [], [2], [0, 4, 3]]
    assert q.indptr.tolist() == [0, 3, 3, 4, 7]
    everyone = Query.from_dataset(small())
    assert everyone.users.tolist() == [0, 1, 2, 3] and everyone.history(2).tolist() == [1]


def test_users_only_and_plain_arrays():
    q = Query([2, 0])
    assert not q.has_history and q.history(0).size == 0
    assert query_users(q).tolist() == [2, 0]
    assert query_users(np.array([5, 1])).dtype == np.int64
    with pytest.raises(AttributeError):
        q.users = np.array([1])  # frozen
    assert not q.users.flags.writeable


@pytest.mark.parametrize("indptr,items,match", [
    ([0, 1], None, "both"),
    ([0, 1], [3], "len\\(users\\) \\+ 1"),
    ([1, 1, 2], [3, 4], "start at 0"),
    ([0, 2, 1], [3, 4], "never decrease"),
    ([0, 1, 1], [3, 4], "end at"),
])
def test_bad_histories_are_clear_errors(indptr, items, match):
    with pytest.raises(ValueError, match=match):
        Query([0, 1], indptr, items)
