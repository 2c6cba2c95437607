"""Loaders that turn files into a :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.errors import DataFormatError


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with path.open(encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\n").split("\t")
    cols = []
    for j, h in enumerate(header):
        if ":" not in h:
            raise DataFormatError(f"{path}: line 1, column {j + 1}: header field {h!r} is not "
                                  "'name:type' (RecBole atomic format)")
        cols.append(h.split(":", 1)[0])
    df = pd.read_csv(path, sep="\t", skiprows=1, header=None, names=cols, dtype=str,
                     keep_default_na=False, quoting=3, engine="c", on_bad_lines="error")
    return df


def load_recbole(directory: str | Path, name: str | None = None) -> Dataset:
    """Load ``{name}.inter`` (+ optional ``.user``/``.item``) RecBole atomic files."""
    directory = Path(directory)
    name = name or directory.name
    inter = _read_atomic(directory / f"{name}.inter")
    for need in ("user_id", "item_id"):
        if need not in inter.columns:
            raise DataFormatError(f"{directory / f'{name}.inter'}: missing column {need!r}")
    users, user_ids = pd.factorize(inter["user_id"], sort=True)
    items, item_ids = pd.factorize(inter["item_id"], sort=True)
    ts = (pd.to_numeric(inter["timestamp"], errors="raise").to_numpy().astype(np.int64)
          if "timestamp" in inter.columns else np.zeros(len(inter), np.int64))
    user_attr = pd.DataFrame(index=pd.RangeIndex(len(user_ids)))
    ufile = directory / f"{name}.user"
    if ufile.is_file():
        u = _read_atomic(ufile).set_index("user_id")
        user_attr = u.reindex(pd.Index(user_ids)).reset_index(drop=True)
    return Dataset(name=name, users=users, items=items, timestamps=ts,
                   n_users=len(user_ids), n_items=len(item_ids),
                   user_ids=np.asarray(user_ids, dtype=str), item_ids=np.asarray(item_ids, dtype=str),
                   user_attributes=user_attr)
