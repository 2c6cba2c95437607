"""Filters that shrink a dataset's id space (apply them before splitting)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError


def _check_k(name: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ConfigError(f"k_core: {name} must be a non-negative integer, got {k!r}")
    return int(k)


def k_core(ds: Dataset, user_k: int = 5, item_k: int = 5) -> Dataset:
    """Keep the largest sub-dataset where every user has ``>= user_k`` rows and every item
    ``>= item_k`` rows, then re-index to contiguous ids.

    Removing a sparse user can leave an item below its threshold and vice versa, so the
    filter repeats until nothing changes (each pass is two ``bincount`` calls). Every row
    counts, duplicates included. Users and items left with no rows are dropped from the id
    space; the survivors keep their relative order, and the raw-id maps and attribute tables
    are cut to match. Row order is kept.

    Args:
        ds: the dataset (before any split: the id space changes).
        user_k: minimum rows per user (0 or 1 = no constraint beyond having rows).
        item_k: minimum rows per item.

    Returns:
        A new Dataset; ``ds`` itself when nothing is removed.
    """
    user_k, item_k = _check_k("user_k", user_k), _check_k("item_k", item_k)
    users, items = ds.users, ds.items
    keep = np.ones(len(users), dtype=bool)
    while True:
        uc = np.bincount(users[keep], minlength=ds.n_users)
        ic = np.bincount(items[keep], minlength=ds.n_items)
        drop = keep & ((uc[users] < user_k) | (ic[items] < item_k))
        if not drop.any():
            break
        keep &= ~drop
    kept_users = np.flatnonzero(uc > 0)
    kept_items = np.flatnonzero(ic > 0)
    if keep.all() and len(kept_users) == ds.n_users and len(kept_items) == ds.n_items:
        return ds
    new_u = np.full(ds.n_users, -1, dtype=np.int64)
    new_u[kept_users] = np.arange(len(kept_users))
    new_i = np.full(ds.n_items, -1, dtype=np.int64)
    new_i[kept_items] = np.arange(len(kept_items))

    def cut(table: pd.DataFrame, rows: np.ndarray, n: int) -> pd.DataFrame:
        if len(table) != n:  # no per-index table (e.g. the empty default): nothing to align
            return table
        return table.iloc[rows].reset_index(drop=True)

    return replace(
        ds,
        users=new_u[users[keep]],
        items=new_i[items[keep]],
        timestamps=ds.timestamps[keep],
        ratings=None if ds.ratings is None else ds.ratings[keep],
        n_users=len(kept_users),
        n_items=len(kept_items),
        user_ids=ds.user_ids[kept_users],
        item_ids=ds.item_ids[kept_items],
        user_attributes=cut(ds.user_attributes, kept_users, ds.n_users),
        item_attributes=cut(ds.item_attributes, kept_items, ds.n_items),
    )
