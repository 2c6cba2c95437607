"""Saving and loading an unlearner: its models, its remaining data and an audit history.

Layout of a saved unlearner directory::

    unlearner.json            method, config, model name + config, seed, data summary,
                              model directories, history (counts only, no forgotten ids)
    state.safetensors         method arrays, e.g. SISA's shard assignment (int64)
    data/train.parquet        remaining training rows: user, item (raw ids), timestamp
                              [, rating], in the unlearner's row order
    data/valid.parquet        remaining validation rows (when the unlearner has them)
    data/user_ids.parquet     raw id per user index (column ``raw_id``), i.e. the id space
    data/item_ids.parquet     raw id per item index
    data/user_attributes.parquet, data/item_attributes.parquet   attribute tables
    model/ or shards/000/ ... one directory per model, written by ``model.save``

The forgotten rows are not in any of these files; the history records, per request, how
many ids of each kind it named, how many rows it removed, what was retrained, the seconds
spent and when. Nothing is pickled; loading executes no code from the files.

Writes are atomic at the directory level: everything is written into a temporary sibling
directory, and only when it is complete is the old directory (if any) moved aside, the new
one renamed into place and the old one deleted.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from trustrec import __version__
from trustrec.data.dataset import Dataset
from trustrec.data.rows import read_ids, read_parquet, read_rows, write_rows
from trustrec.errors import DataFormatError
from trustrec.fileio import atomic_write_bytes, swap_into_place
from trustrec.models.base import load_model
from trustrec.unlearn.base import jsonable, make_unlearner

UNLEARNER_JSON = "unlearner.json"
STATE_TENSORS = "state.safetensors"
FORMAT = "trustrec-unlearner"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- data
def _write_data(u: Any, folder: Path) -> dict[str, Any]:
    folder.mkdir()
    train, valid = u.train_, u.valid_
    write_rows(train, folder / "train.parquet")
    if valid is not None:
        write_rows(valid, folder / "valid.parquet")
    pd.DataFrame({"raw_id": train.user_ids.astype(str)}).to_parquet(
        folder / "user_ids.parquet", index=False)
    pd.DataFrame({"raw_id": train.item_ids.astype(str)}).to_parquet(
        folder / "item_ids.parquet", index=False)
    for kind in ("user", "item"):
        attrs = getattr(train, f"{kind}_attributes").reset_index(drop=True)
        attrs.columns = [str(c) for c in attrs.columns]
        attrs.to_parquet(folder / f"{kind}_attributes.parquet")
    return {"name": train.name, "valid_name": None if valid is None else valid.name,
            "n_users": train.n_users, "n_items": train.n_items,
            "train_rows": train.n_interactions,
            "valid_rows": None if valid is None else valid.n_interactions,
            "ratings": train.ratings is not None}


def _read_data(folder: Path, meta: dict[str, Any]) -> tuple[Dataset, Dataset | None]:
    user_ids = read_ids(folder / "user_ids.parquet")
    item_ids = read_ids(folder / "item_ids.parquet")
    attrs = {k: read_parquet(folder / f"{k}_attributes.parquet") for k in ("user", "item")}
    ratings = bool(meta.get("ratings", False))
    train = read_rows(folder / "train.parquet", meta["name"], user_ids, item_ids,
                       attrs["user"], attrs["item"], ratings)
    valid = None
    if meta.get("valid_rows") is not None:
        valid = read_rows(folder / "valid.parquet", meta["valid_name"], user_ids, item_ids,
                           attrs["user"], attrs["item"], ratings)
    for what, ds, key in (("training", train, "train_rows"), ("validation", valid,
                                                              "valid_rows")):
        if ds is not None and ds.n_interactions != meta[key]:
            raise DataFormatError(f"{folder}: {what} data has {ds.n_interactions} rows, "
                                  f"{UNLEARNER_JSON} says {meta[key]}")
    return train, valid


# ---------------------------------------------------------------------------- save
def save_unlearner(u: Any, path: str | Path) -> None:
    """Write a fitted unlearner to directory ``path`` (replacing a saved unlearner there).

    Args:
        u: a fitted unlearner (an :class:`~trustrec.unlearn.base.UnlearnerBase`).
        path: target directory; it must not exist, be empty, or hold a saved unlearner.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty directory that is not a saved
            unlearner (it is never overwritten).
    """
    u._check_fitted()
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    if (target.is_dir() and any(target.iterdir())
            and not (target / UNLEARNER_JSON).is_file()):
        raise FileExistsError(f"{target} is a non-empty directory without {UNLEARNER_JSON}; "
                              "refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        data = _write_data(u, tmp / "data")
        models = u.persistent_models()
        for rel, model in models.items():
            model.save(tmp / rel)
        arrays = {k: np.ascontiguousarray(v) for k, v in u.persistent_arrays().items()}
        save_file(arrays, str(tmp / STATE_TENSORS))
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "trustrec_version": __version__,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": u.name, "exact": u.exact, "config": u.config_dict(),
            "model": u.model, "model_config": u.model_config, "seed": u.seed_,
            "data": data, "models": sorted(models), "state": sorted(arrays),
            "history": u.history_,
        }
        atomic_write_bytes(tmp / UNLEARNER_JSON, json.dumps(jsonable(meta), indent=2).encode())
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- load
def load_unlearner(path: str | Path) -> Any:
    """Load an unlearner saved by :func:`save_unlearner`; it can score and forget further.

    Raises:
        FileNotFoundError: ``path`` or one of its parts is missing.
        DataFormatError: ``unlearner.json`` or a data file is malformed or inconsistent.
        UnknownNameError: the method or model is not registered in this installation.
    """
    path = Path(path)
    meta_file = path / UNLEARNER_JSON
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a saved unlearner: {UNLEARNER_JSON} missing")
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise KeyError("format")
        method, model, model_config = meta["method"], meta["model"], meta["model_config"]
        config, seed, data_meta = meta["config"], int(meta["seed"]), meta["data"]
        model_dirs, state_keys = list(meta["models"]), list(meta["state"])
        history = list(meta.get("history", []))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataFormatError(f"{meta_file}: not a trustrec unlearner description "
                              f"(bad or missing field: {exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{meta_file}: format_version {meta.get('format_version')!r} "
                              f"is not supported (expected {FORMAT_VERSION})")
    u = make_unlearner(method, model, model_config, **config)
    train, valid = _read_data(path / "data", data_meta)
    models = {rel: load_model(path / rel) for rel in model_dirs}
    state_file = path / STATE_TENSORS
    if not state_file.is_file():
        raise FileNotFoundError(f"{state_file} missing")
    arrays = dict(load_file(str(state_file)))
    if sorted(arrays) != sorted(state_keys):
        raise DataFormatError(f"{state_file}: holds {sorted(arrays)}, {UNLEARNER_JSON} lists "
                              f"{sorted(state_keys)}")
    u.train_, u.valid_, u.seed_, u.history_ = train, valid, seed, history
    try:
        u.restore_state(models, arrays)
    except KeyError as exc:
        raise DataFormatError(f"{meta_file}: model directory {exc} is not listed") from None
    return u
