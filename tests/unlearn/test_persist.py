"""save_unlearner / load_unlearner: round trip, further forgetting, atomicity, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import trustrec.unlearn.persist as persist
from trustrec.errors import DataFormatError
from trustrec.unlearn import UNLEARNERS, ForgetRequest, load_unlearner, save_unlearner

from .conftest import fit, same_snapshot, snapshot

METHODS = UNLEARNERS.names()


def assert_same_data(a, b) -> None:
    assert (a.name, a.n_users, a.n_items) == (b.name, b.n_users, b.n_items)
    for col in ("users", "items", "timestamps", "ratings", "user_ids", "item_ids"):
        x, y = getattr(a, col), getattr(b, col)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    for col in ("user_attributes", "item_attributes"):
        x, y = getattr(a, col), getattr(b, col)
        assert x.shape == y.shape and list(x.columns) == list(y.columns)
        pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True),
                                      check_column_type=False, check_index_type=False)


def leftovers(parent) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_then_forget_further(method, split, tmp_path):
    u = fit(method, split, seed=3)
    u.forget(ForgetRequest(users=[0, 1, 2]))
    target = tmp_path / "u"
    save_unlearner(u, target)
    assert leftovers(tmp_path) == []
    v = load_unlearner(target)
    assert type(v) is type(u) and v.config == u.config
    assert (v.model, v.model_config, v.seed_) == (u.model, u.model_config, u.seed_)
    assert v.history_ == u.history_
    assert_same_data(u.train_, v.train_)
    assert_same_data(u.valid_, v.valid_)
    assert same_snapshot(v, snapshot(u))
    users = np.arange(split.train.n_users)
    np.testing.assert_array_equal(u.score(users), v.score(users))
    for k, arr in u.persistent_arrays().items():
        np.testing.assert_array_equal(arr, v.persistent_arrays()[k])
    # both forget further in the same way
    for req in (ForgetRequest(users=[10, 11]), ForgetRequest(items=[99]),
                ForgetRequest(pairs=[[int(u.train_.users[5]), int(u.train_.items[5])]])):
        ru, rv = u.forget(req), v.forget(req)
        assert (ru.rows_removed, ru.users_affected, ru.retrained, ru.rows_remaining) == (
            rv.rows_removed, rv.users_affected, rv.retrained, rv.rows_remaining)
        np.testing.assert_array_equal(u.score(users), v.score(users))
    assert same_snapshot(v, snapshot(u))
    assert_same_data(u.train_, v.train_)
    # the already-forgotten users are still rejected after loading
    with pytest.raises(Exception, match="not in the training data"):
        v.forget(ForgetRequest(users=[1]))


@pytest.mark.parametrize("method", METHODS)
def test_saved_files_hold_no_forgotten_data(method, split, tmp_path):
    u = fit(method, split)
    forgotten_users = [4, 9]
    u.forget(ForgetRequest(users=forgotten_users))
    u.forget(ForgetRequest(items=[0]))
    save_unlearner(u, tmp_path / "u")
    raw_users = set(split.train.user_ids[forgotten_users])
    raw_item = split.train.item_ids[0]
    for part in ("train", "valid"):
        rows = pd.read_parquet(tmp_path / "u" / "data" / f"{part}.parquet")
        assert not rows["user"].isin(raw_users).any()
        assert not (rows["item"] == raw_item).any()
    meta = json.loads((tmp_path / "u" / "unlearner.json").read_text())
    forgets = [h for h in meta["history"] if h["event"] == "forget"]
    assert len(forgets) == 2
    assert [h["n_users"] for h in forgets] == [2, 0] and forgets[1]["n_items"] == 1
    assert all(h["rows_removed"] > 0 and h["seconds"] > 0 and h["time"] for h in forgets)
    for h in meta["history"]:
        assert not {"users", "items", "pairs", "users_affected", "request"} & set(h)
    assert meta["method"] == method and meta["data"]["train_rows"] == u.train_.n_interactions


def test_sisa_layout(split, tmp_path):
    u = fit("sisa", split)
    save_unlearner(u, tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "unlearner.json").read_text())
    assert meta["models"] == ["shards/000", "shards/001", "shards/002"]
    assert meta["state"] == ["assignment"] and meta["config"]["n_shards"] == 3
    for rel in meta["models"]:
        assert (tmp_path / "s" / rel / "model.safetensors").is_file()


def test_save_replaces_an_old_save_atomically(split, tmp_path, monkeypatch):
    target = tmp_path / "u"
    u = fit("retrain", split)
    save_unlearner(u, target)
    old_scores = load_unlearner(target).score(np.arange(30))
    u.forget(ForgetRequest(users=[7]))
    # a failure in the middle of the write leaves the old save intact and no debris
    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(persist, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_unlearner(u, target)
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(load_unlearner(target).score(np.arange(30)), old_scores)
    monkeypatch.undo()
    save_unlearner(u, target)
    assert leftovers(tmp_path) == []
    v = load_unlearner(target)
    np.testing.assert_array_equal(v.score(np.arange(30)), u.score(np.arange(30)))
    assert v.train_.n_interactions == u.train_.n_interactions


def test_refuses_to_overwrite_foreign_directories(split, tmp_path):
    u = fit("retrain", split)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        save_unlearner(u, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FileExistsError):
        save_unlearner(u, afile)
    empty = tmp_path / "empty"
    empty.mkdir()
    save_unlearner(u, empty)
    assert (empty / "unlearner.json").is_file()


def test_unfitted_cannot_be_saved(tmp_path):
    from .conftest import build

    with pytest.raises(RuntimeError, match="not fitted"):
        save_unlearner(build("retrain"), tmp_path / "u")
    assert not (tmp_path / "u").exists()


def test_load_errors(split, tmp_path):
    with pytest.raises(FileNotFoundError, match="unlearner.json missing"):
        load_unlearner(tmp_path / "nothing")
    u = fit("retrain", split)
    target = tmp_path / "u"
    save_unlearner(u, target)
    meta_file = target / "unlearner.json"
    good = meta_file.read_text()
    meta_file.write_text("{not json")
    with pytest.raises(DataFormatError, match="unlearner.json"):
        load_unlearner(target)
    meta = json.loads(good)
    del meta["seed"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="seed"):
        load_unlearner(target)
    meta_file.write_text(good)
    rows = pd.read_parquet(target / "data" / "train.parquet")
    rows.loc[3, "user"] = "no-such-user"
    rows.to_parquet(target / "data" / "train.parquet", index=False)
    with pytest.raises(DataFormatError, match=r"train\.parquet: row 4, field 'user'"):
        load_unlearner(target)
    rows.iloc[:-1].assign(user=lambda f: f["user"].where(f.index != 3, rows.loc[2, "user"])
                          ).to_parquet(target / "data" / "train.parquet", index=False)
    with pytest.raises(DataFormatError, match="rows"):
        load_unlearner(target)


def test_round_trip_without_validation_ratings_or_attributes(tmp_path):
    """Edge case (synthetic): string raw ids, no ratings, no attribute tables, no valid."""
    from trustrec.data.dataset import Dataset

    gen = np.random.default_rng(0)
    users = np.repeat(np.arange(12), 5)
    items = gen.integers(0, 9, size=len(users))
    ds = Dataset(name="tiny", users=users, items=items, timestamps=np.arange(len(users)),
                 n_users=12, n_items=9, user_ids=np.array([f"u{k}" for k in range(12)]),
                 item_ids=np.array([f"i|{k}" for k in range(9)]))
    u = fit_plain(ds)
    u.forget(ForgetRequest(users=[3]))
    save_unlearner(u, tmp_path / "t")
    v = load_unlearner(tmp_path / "t")
    assert v.valid_ is None and v.train_.ratings is None
    assert_same_data(u.train_, v.train_)
    np.testing.assert_array_equal(u.score(np.arange(12)), v.score(np.arange(12)))
    ru, rv = u.forget(ForgetRequest(items=[2])), v.forget(ForgetRequest(items=[2]))
    assert ru.rows_removed == rv.rows_removed
    np.testing.assert_array_equal(u.score(np.arange(12)), v.score(np.arange(12)))


def fit_plain(ds):
    from trustrec.unlearn import make_unlearner

    return make_unlearner("sisa", "bpr", {"epochs": 2, "dim": 4}, n_shards=2).fit(ds, seed=0)
