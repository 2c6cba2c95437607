"""dataset_info: a JSON-ready summary for `trustrec data info`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustrec.data import dataset_info, load_dataset


def test_info_ml100k(ml100k):
    info = dataset_info(ml100k)
    json.dumps(info)  # JSON-ready
    assert (info["users"], info["items"], info["interactions"]) == (943, 1682, 100_000)
    assert info["density"] == pytest.approx(100_000 / (943 * 1682))
    assert info["interactions_per_user"]["min"] == 20
    assert info["user_attributes"]["gender"]["top"] == {"M": 670, "F": 273}
    assert info["user_attributes"]["occupation"]["unique"] == 21
    assert info["ratings"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    ts = info["timestamps"]
    assert ts["min"] == int(ml100k.timestamps.min()) and ts["max_utc"].startswith("1998-04-22")


def test_info_without_extras(make_ds):
    ds = make_ds([0, 0, 2], [1, 1, 0], n_users=3)
    info = dataset_info(ds)
    assert info["timestamps"] is None and info["ratings"] is None
    assert info["distinct_pairs"] == 2 and info["active_users"] == 2
    assert info["user_attributes"] == {} and info["interactions_per_user"]["max"] == 2


def test_env_cache_dir_is_used(monkeypatch, tmp_path, ml100k_dir):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for ext in ("inter", "user", "item"):
        (folder / f"ml-100k.{ext}").symlink_to(ml100k_dir / f"ml-100k.{ext}")
    monkeypatch.setenv("TRUSTREC_DATA", str(tmp_path))
    ds = load_dataset("ml-100k", download=False)
    assert ds.n_interactions == 100_000 and np.all(ds.user_counts() >= 20)
