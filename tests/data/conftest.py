"""Helpers for the data-layer tests: tiny synthetic files and datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.data.dataset import Dataset
from trustrec.data.loaders import ML100K_GENRES


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


#: RecBole's item 267 (no title, no date in GroupLens's file) is spelled "unkonwn" there.
RECBOLE_QUIRK_ITEM = "267"


def write_grouplens_100k(atomic: Path, dest: Path) -> None:
    """GroupLens's ``u.data`` / ``u.user`` / ``u.item`` rebuilt from RecBole's atomic files.

    ``u.item`` gets ``"<title> (<year>)"`` titles, a release date, an empty video date,
    a URL and the 19 genre flags, latin-1 encoded, as GroupLens distributes it.
    """
    dest.mkdir(parents=True)
    read = {ext: pd.read_csv(atomic / f"ml-100k.{ext}", sep="\t", dtype=str,
                             keep_default_na=False, encoding="utf-8")
            for ext in ("inter", "user", "item")}
    read["inter"].to_csv(dest / "u.data", sep="\t", header=False, index=False)
    read["user"].to_csv(dest / "u.user", sep="|", header=False, index=False)
    lines = []
    for item, title, year, genres in read["item"].itertuples(index=False):
        if item == RECBOLE_QUIRK_ITEM:
            title, date = "unknown", ""
        else:
            title, date = f"{title} ({year})", f"01-Jan-{year}" if year.isdigit() else ""
        flags = ["1" if g in genres.split(" ") else "0" for g in ML100K_GENRES]
        lines.append("|".join([item, title, date, "", f"http://us.imdb.com/{item}", *flags]))
    (dest / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


@pytest.fixture(scope="session")
def grouplens_100k() -> Callable[[Path, Path], None]:
    """The :func:`write_grouplens_100k` writer (``(atomic_dir, dest) -> None``)."""
    return write_grouplens_100k
