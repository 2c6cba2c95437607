"""Rows of a dataset as Parquet files in raw ids: written and read back over id maps.

Every file that stores interactions (a saved unlearner's remaining data, a model
directory's test rows) has the columns ``user``, ``item`` (raw ids, text), ``timestamp``
and optionally ``rating``; raw ids are mapped back to indices through the id maps of the
data they belong to, and a raw id outside them is an error naming file, row and field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.errors import DataFormatError


def write_rows(ds: Dataset, path: Path, *, ratings: bool = True) -> None:
    """Write ``ds``'s rows to Parquet: raw ``user``, ``item``, ``timestamp`` [, ``rating``].

    Args:
        ds: the rows.
        path: the Parquet file.
        ratings: also write the ratings, when ``ds`` has them.
    """
    frame = pd.DataFrame({"user": ds.user_ids[ds.users].astype(str),
                          "item": ds.item_ids[ds.items].astype(str),
                          "timestamp": ds.timestamps})
    if ratings and ds.ratings is not None:
        frame["rating"] = ds.ratings
    frame.to_parquet(path, index=False)


def read_parquet(path: Path, where: str = "the saved unlearner") -> pd.DataFrame:
    """A Parquet file as a frame; a missing or unreadable file names itself and ``where``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from {where}")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataFormatError(f"{path}: not a readable Parquet file: {exc}") from None


def read_ids(path: Path) -> np.ndarray:
    """The ``raw_id`` column of an id-map file (raw id per index; no duplicates)."""
    frame = read_parquet(path)
    if "raw_id" not in frame.columns:
        raise DataFormatError(f"{path}: no column 'raw_id'")
    ids = frame["raw_id"].to_numpy(dtype=str)
    if len(np.unique(ids)) != len(ids):
        raise DataFormatError(f"{path}: duplicate raw ids")
    return ids


def read_rows(path: Path, name: str, user_ids: np.ndarray, item_ids: np.ndarray,
              user_attrs: pd.DataFrame, item_attrs: pd.DataFrame, ratings: bool, *,
              where: str = "the saved unlearner") -> Dataset:
    """Read rows written by :func:`write_rows` into a Dataset over the given id maps.

    Args:
        path: the Parquet file.
        name: the dataset's name.
        user_ids: raw id per user index (the id space of the result).
        item_ids: raw id per item index.
        user_attrs: user attribute table of the result.
        item_attrs: item attribute table of the result.
        ratings: read the ``rating`` column (it must be there).
        where: what the file belongs to, for error messages.

    Raises:
        FileNotFoundError: ``path`` is missing.
        DataFormatError: unreadable file, missing column, or a raw id not in the id maps
            (names the file, row and field).
    """
    frame = read_parquet(path, where)
    need = ["user", "item", "timestamp"] + (["rating"] if ratings else [])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}")
    index = {}
    for col, ids in (("user", user_ids), ("item", item_ids)):
        codes = pd.Index(np.asarray(ids, dtype=str)).get_indexer(frame[col].astype(str))
        if (codes < 0).any():
            r = int(np.argmax(codes < 0))
            raise DataFormatError(f"{path}: row {r + 1}, field {col!r}: raw id "
                                  f"{frame[col].iloc[r]!r} is not in the id map of {where}")
        index[col] = codes
    return Dataset(name=name, users=index["user"], items=index["item"],
                   timestamps=frame["timestamp"].to_numpy(dtype=np.int64),
                   n_users=len(user_ids), n_items=len(item_ids), user_ids=user_ids,
                   item_ids=item_ids, user_attributes=user_attrs, item_attributes=item_attrs,
                   ratings=frame["rating"].to_numpy(dtype=np.float32) if ratings else None)
