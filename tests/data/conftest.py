"""Helpers for the data-layer tests: tiny synthetic files and datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trustrec.data.dataset import Dataset


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write("d/x.inter", text, encoding="utf-8")`` → path under tmp_path (bytes allowed)."""

    def _write(rel: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
        return p

    return _write


def make_dataset(users, items, timestamps=None, n_users=None, n_items=None,
                 name: str = "toy") -> Dataset:
    """A Dataset from index lists (raw ids are the indices as strings)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_users = int(users.max()) + 1 if n_users is None else n_users
    n_items = int(items.max()) + 1 if n_items is None else n_items
    ts = np.zeros(len(users), np.int64) if timestamps is None else np.asarray(timestamps)
    return Dataset(name=name, users=users, items=items, timestamps=ts, n_users=n_users,
                   n_items=n_items, user_ids=np.arange(n_users).astype(str),
                   item_ids=np.arange(n_items).astype(str))


@pytest.fixture
def make_ds() -> Callable[..., Dataset]:
    """The :func:`make_dataset` builder (a fixture, so test modules need no imports)."""
    return make_dataset
