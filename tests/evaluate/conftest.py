"""Shared helpers of the evaluation tests."""

from __future__ import annotations

import numpy as np

from trustrec.data.dataset import Dataset


def make_ds(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> Dataset:
    """A toy Dataset from (user, item) index pairs (raw ids are the indices as strings)."""
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return Dataset(
        name="toy", users=arr[:, 0], items=arr[:, 1], timestamps=np.zeros(len(arr)),
        n_users=n_users, n_items=n_items,
        user_ids=np.array([str(u) for u in range(n_users)]),
        item_ids=np.array([str(i) for i in range(n_items)]),
    )
