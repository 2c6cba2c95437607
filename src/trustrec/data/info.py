"""A JSON-ready summary of a dataset (for ``trustrec data info``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset


def _spread(counts: np.ndarray) -> dict[str, float]:
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(counts.min()), "median": float(np.median(counts)),
            "mean": round(float(counts.mean()), 3), "max": int(counts.max())}


def _columns(table: pd.DataFrame, top: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for col in table.columns:
        s = table[col]
        counts = s.value_counts(dropna=True)
        out[str(col)] = {
            "unique": int(s.nunique(dropna=True)),
            "missing": int(s.isna().sum()),
            "top": {str(k): int(v) for k, v in counts.head(top).items()},
        }
    return out


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(int(ts), UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return str(ts)


def dataset_info(ds: Dataset, top: int = 5) -> dict[str, Any]:
    """Sizes, density, activity spread, attribute columns and the timestamp range.

    Args:
        ds: the dataset.
        top: how many most frequent values to list per attribute column.

    Returns:
        A JSON-ready dict: ``name``, ``users``, ``items``, ``interactions``,
        ``distinct_pairs``, ``density`` (distinct pairs / users × items), ``active_users``,
        ``active_items``, ``interactions_per_user`` / ``interactions_per_item``
        (min/median/mean/max over active ones), ``ratings`` (value counts, when present),
        ``user_attributes`` / ``item_attributes`` (per column: ``unique``, ``missing``,
        ``top`` values with counts), and ``timestamps`` (``min``/``max`` in seconds and as
        UTC ISO dates; null when the source has none).
    """
    uc, ic = ds.user_counts(), ds.item_counts()
    pairs = int(len(np.unique(ds.pair_keys())))
    cells = ds.n_users * ds.n_items
    info: dict[str, Any] = {
        "name": ds.name,
        "users": int(ds.n_users),
        "items": int(ds.n_items),
        "interactions": int(ds.n_interactions),
        "distinct_pairs": pairs,
        "density": pairs / cells if cells else 0.0,
        "active_users": int((uc > 0).sum()),
        "active_items": int((ic > 0).sum()),
        "interactions_per_user": _spread(uc[uc > 0]),
        "interactions_per_item": _spread(ic[ic > 0]),
        "ratings": None,
        "user_attributes": _columns(ds.user_attributes, top),
        "item_attributes": _columns(ds.item_attributes, top),
        "timestamps": None,
    }
    if ds.ratings is not None and len(ds.ratings):
        vals, cnt = np.unique(ds.ratings, return_counts=True)
        if len(vals) <= 20:
            info["ratings"] = {f"{v:g}": int(c) for v, c in zip(vals, cnt, strict=True)}
        else:
            info["ratings"] = _spread(ds.ratings)
    ts = ds.timestamps
    if len(ts) and (ts != 0).any():
        lo, hi = int(ts.min()), int(ts.max())
        info["timestamps"] = {"min": lo, "max": hi, "min_utc": _iso(lo), "max_utc": _iso(hi)}
    return info
