"""Loaders: formats, id order, attribute alignment, and errors that name file/line/field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.data import (
    load_dataset,
    load_movielens_1m,
    load_movielens_100k,
    load_path,
    load_recbole,
    load_table,
)
from trustrec.errors import ConfigError, DataFormatError, TrustrecError, UnknownNameError

HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _raises(exc: type[Exception], *fragments: str):
    """pytest.raises that also checks every fragment appears in the message."""
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *a):
            out = self.cm.__exit__(*a)
            msg = str(self.info.value)
            for f in fragments:
                assert f in msg, f"{f!r} not in {msg!r}"
            return out

    return _Ctx()


# ---------------------------------------------------------------------------- real data
def test_ml100k_shape_and_numeric_id_order(ml100k):
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_interactions) == (943, 1682, 100_000)
    assert list(ml100k.user_ids[:3]) == ["1", "2", "3"]
    assert ml100k.user_ids[9] == "10"  # numeric, not "1", "10", "100", ...
    assert list(ml100k.item_ids[-2:]) == ["1681", "1682"]
    assert ml100k.user_ids[ml100k.users[0]] == "196"  # first row: user 196, item 242
    assert ml100k.item_ids[ml100k.items[0]] == "242"
    assert ml100k.timestamps[0] == 881250949 and ml100k.ratings[0] == 3


def test_ml100k_attributes_aligned(ml100k):
    ua = ml100k.user_attributes
    assert list(ua.columns) == ["age", "gender", "occupation", "zip_code"]
    assert len(ua) == ml100k.n_users
    assert ua.loc[0].tolist() == ["24", "M", "technician", "85711"]  # raw user "1"
    assert ua.loc[1].tolist() == ["53", "F", "other", "94043"]  # raw user "2"
    assert set(ua["gender"]) == {"M", "F"}
    assert len(ml100k.item_attributes) == ml100k.n_items
    assert ml100k.item_attributes.loc[0, "movie_title"] == "Toy Story"


def _write_raw_100k(src: Path, dest: Path) -> None:
    """u.data / u.user written from the RecBole atomic files (same rows, same order)."""
    dest.mkdir(parents=True)
    inter = pd.read_csv(src / "ml-100k.inter", sep="\t", dtype=str, keep_default_na=False)
    inter.to_csv(dest / "u.data", sep="\t", header=False, index=False)
    user = pd.read_csv(src / "ml-100k.user", sep="\t", dtype=str, keep_default_na=False)
    user.to_csv(dest / "u.user", sep="|", header=False, index=False)


def test_atomic_and_raw_100k_loaders_agree(ml100k, ml100k_dir, tmp_path):
    _write_raw_100k(ml100k_dir, tmp_path / "ml-100k")
    raw = load_movielens_100k(tmp_path / "ml-100k")
    assert raw.name == ml100k.name == "ml-100k"
    for f in ("users", "items", "timestamps", "ratings", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(raw, f), getattr(ml100k, f), err_msg=f)
    assert (raw.n_users, raw.n_items) == (ml100k.n_users, ml100k.n_items)
    pd.testing.assert_frame_equal(raw.user_attributes, ml100k.user_attributes)
    # and sniffing the folder picks the raw loader
    sniffed = load_path(tmp_path / "ml-100k")
    np.testing.assert_array_equal(sniffed.users, ml100k.users)


def test_min_rating_filters_rows_and_id_space(ml100k_dir):
    ds = load_recbole(ml100k_dir, "ml-100k", min_rating=4)
    assert ds.n_interactions == 34174 + 21201
    assert ds.ratings.min() >= 4
    assert ds.n_users == len(np.unique(ds.users)) and ds.n_items == len(np.unique(ds.items))
    assert len(ds.user_attributes) == ds.n_users


# ---------------------------------------------------------------------------- id order
def test_integer_ids_numeric_order_else_lexicographic(write, tmp_path):
    write("a/a.inter", HEAD + "10\tx\t1\t5\n9\tx\t1\t6\n2\ty\t1\t7\n-1\tz\t1\t8\n")
    ds = load_recbole(tmp_path / "a")
    assert list(ds.user_ids) == ["-1", "2", "9", "10"]
    assert list(ds.users) == [3, 2, 1, 0]
    assert list(ds.item_ids) == ["x", "y", "z"]
    write("b/b.inter", HEAD + "u10\t1\t1\t5\nu9\t1\t1\t6\nu2\t1\t1\t7\n")
    ds = load_recbole(tmp_path / "b")
    assert list(ds.user_ids) == ["u10", "u2", "u9"]  # not all integers: string order


def test_atomic_optional_columns_and_missing_attributes(write, tmp_path):
    write("t/t.inter", "item_id:token\tuser_id:token\n5\t1\n6\t2\n6\t3\n")
    write("t/t.user", "user_id:token\tgender:token\textra:float\n2\tF\t0.5\n1\tM\t1\n9\tF\t2\n")
    ds = load_recbole(tmp_path / "t")
    assert ds.ratings is None and (ds.timestamps == 0).all()
    ua = ds.user_attributes
    assert ua["gender"].iloc[:2].tolist() == ["M", "F"]  # aligned by id, not by file order
    assert pd.isna(ua["gender"].iloc[2])  # user 3 has no row
    assert len(ua) == 3  # user 9 has no interactions: not in the id space


def test_blank_lines_and_crlf_are_tolerated(write, tmp_path):
    write("c/c.inter", (HEAD + "1\t1\t1\t5\n\n2\t2\t1\t6\n\n").replace("\n", "\r\n"))
    ds = load_recbole(tmp_path / "c")
    assert ds.n_interactions == 2 and list(ds.timestamps) == [5, 6]


def test_fractional_timestamps_are_floored(write, tmp_path):
    write("f/f.inter", HEAD + "1\t1\t1\t5.7\n2\t2\t1\t8.8e2\n")
    assert list(load_recbole(tmp_path / "f").timestamps) == [5, 880]


# ---------------------------------------------------------------------------- raw MovieLens
ML1M_RATINGS = "1::10::5::978300760\n2::10::3::978302109\n2::20::4::978301968\n"
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_MOVIES = "10::GoldenEye (1995)::Action|Adventure|Thriller\n20::Café (1999)::Drama\n"


def test_movielens_1m(write, tmp_path):
    write("ml-1m/ratings.dat", ML1M_RATINGS)
    write("ml-1m/users.dat", ML1M_USERS)
    write("ml-1m/movies.dat", ML1M_MOVIES, encoding="latin-1")
    ds = load_movielens_1m(tmp_path / "ml-1m")
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("ml-1m", 2, 2, 3)
    ua = ds.user_attributes
    assert ua["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert ua["age"].tolist() == ["1", "56"]
    assert ua["gender"].tolist() == ["F", "M"]
    assert ua["zip_code"].tolist() == ["48067", "70072"]
    assert ds.item_attributes["title"].tolist() == ["GoldenEye (1995)", "Café (1999)"]
    assert ds.item_attributes["genres"].iloc[0] == "Action|Adventure|Thriller"
    assert load_path(tmp_path / "ml-1m").n_interactions == 3
    assert load_movielens_1m(tmp_path / "ml-1m", min_rating=4).n_interactions == 2


@pytest.mark.parametrize(("users", "field"), [
    ("1::F::1::21::48067\n", "occupation"),
    ("1::F::1::x::48067\n", "occupation"),
    ("1::F::1::0::1\n2::M::17::0::1\n", "age"),
])
def test_movielens_1m_bad_codes(write, tmp_path, users, field):
    write("m/ratings.dat", ML1M_RATINGS)
    write("m/users.dat", users)
    line = users.count("\n")
    with _raises(DataFormatError, "users.dat", f"line {line}", repr(field)):
        load_movielens_1m(tmp_path / "m")


def test_movielens_100k_items_latin1_and_genres(write, tmp_path):
    flags = ["0"] * 19
    flags[1] = flags[8] = "1"  # Action, Drama
    item = "|".join(["1", "Amélie (2001)", "01-Jan-2001", "", "http://x", *flags]) + "\n"
    write("r/u.data", "1\t1\t5\t100\n")
    write("r/u.item", item, encoding="latin-1")
    ds = load_movielens_100k(tmp_path / "r")
    ia = ds.item_attributes
    assert ia.loc[0, "title"] == "Amélie (2001)"
    assert ia.loc[0, "genres"] == "Action|Drama"
    assert ia.loc[0, "video_release_date"] == ""


# ---------------------------------------------------------------------------- tables
def test_csv_with_mapping_and_default_names(write, tmp_path):
    p = write("x.csv", "userId,movieId,rating,timestamp,tag\nb,7,4.5,10,t\na,7,2,11,u\n")
    ds = load_table(p, {"userId": "user", "movieId": "item", "rating": "rating",
                        "timestamp": "timestamp"})
    assert list(ds.user_ids) == ["a", "b"] and list(ds.users) == [1, 0]
    assert list(ds.timestamps) == [10, 11] and ds.ratings.tolist() == [4.5, 2.0]
    assert ds.name == "x"
    auto = load_table(p)  # userId/movieId are recognised names
    np.testing.assert_array_equal(auto.users, ds.users)
    assert load_table(p, min_rating=3).n_interactions == 1
    q = write("y.tsv", "user\titem\n1\t2\n")
    assert load_path(q).n_interactions == 1


def test_parquet(tmp_path):
    p = tmp_path / "d.parquet"
    pd.DataFrame({"u": [3, 1, 3], "i": [1.0, 2.0, 1.0],
                  "when": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:01:00",
                                          "2001-09-09 01:46:40"])}).to_parquet(p)
    ds = load_table(p, {"u": "user", "i": "item", "when": "timestamp"})
    assert list(ds.user_ids) == ["1", "3"] and list(ds.item_ids) == ["1", "2"]
    assert list(ds.timestamps) == [10, 60, 1_000_000_000]


def test_table_mapping_errors(write, tmp_path):
    p = write("x.csv", "userId,movieId\n1,2\n")
    with _raises(DataFormatError, "x.csv", "'userid'", "did you mean 'userId'"):
        load_table(p, {"userid": "user", "movieId": "item"})
    with _raises(ConfigError, "unknown role 'itme'", "did you mean 'item'"):
        load_table(p, {"userId": "user", "movieId": "itme"})
    with _raises(DataFormatError, "no item column"):
        load_table(write("z.csv", "user,thing\n1,2\n"))
    with _raises(ConfigError, "no rating column"):
        load_table(p, min_rating=3)


def test_table_bad_values_name_line_and_field(write, tmp_path):
    p = write("x.csv", "user,item,timestamp\n1,2,10\n1,3,11\n2,3,soon\n")
    with _raises(DataFormatError, "x.csv", "line 4", "'timestamp'", "'soon'"):
        load_table(p)
    p = write("q.csv", 'user,item,timestamp\n1,"a,b",10\n1,3,11,12\n')
    with _raises(DataFormatError, "q.csv", "line 3", "expected 3 fields"):
        load_table(p)
    pq = tmp_path / "b.parquet"
    pd.DataFrame({"user": ["1", "2"], "item": ["1", "1"], "timestamp": ["5", "x"]}).to_parquet(pq)
    with _raises(DataFormatError, "b.parquet", "row 2", "'timestamp'"):
        load_table(pq)
    bad = write("c.parquet", b"PAR1 not really")
    with _raises(DataFormatError, "c.parquet", "not a readable Parquet file"):
        load_table(bad)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("body", "fragments"), [
    # too many fields on line 3
    (HEAD + "1\t1\t1\t5\n2\t2\t1\t6\t9\n", ["line 3", "expected 4 fields", "found 5"]),
    # too few on line 2 (not the last line)
    (HEAD + "1\t1\t1\n2\t2\t1\t6\n", ["line 2", "expected 4 fields", "found 3"]),
    # truncated last line
    (HEAD + "1\t1\t1\t5\n2\t2", ["line 3", "found 2", "truncated"]),
    # non-numeric timestamp, line numbers count the blank line
    (HEAD + "1\t1\t1\t5\n\n2\t2\t1\tyesterday\n", ["line 4", "'timestamp'", "'yesterday'"]),
    (HEAD + "1\t1\tgood\t5\n", ["line 2", "'rating'", "'good'"]),
    (HEAD + "1\t1\t1\tinf\n", ["line 2", "'timestamp'", "'inf'"]),
    (HEAD + "1\t1\t1\t5\n\t2\t1\t6\n", ["line 3", "'user_id'", "empty value"]),
    ("user_id\titem_id:token\n1\t1\n", ["line 1", "field 1", "'name:type'"]),
    ("user_id:token\titem_id:tokn\n1\t1\n", ["line 1", "field 2", "unknown type 'tokn'"]),
    ("", ["line 1", "empty"]),
    (HEAD, ["no interactions"]),
    ("uid:token\titem_id:token\n1\t1\n", ["missing column 'user_id'", "uid"]),
    (HEAD.encode() + b"1\t1\t1\t5\n2\t\xff\xfe\t1\t6\n", ["line 3", "UTF-8"]),
])
def test_atomic_errors_name_file_line_field(write, tmp_path, body, fragments):
    write("e/e.inter", body)
    with _raises(DataFormatError, "e.inter", *fragments):
        load_recbole(tmp_path / "e")


def test_attribute_file_errors(write, tmp_path):
    write("e/e.inter", HEAD + "1\t1\t1\t5\n")
    write("e/e.user", "user_id:token\tage:token\n1\t3\n1\t4\n")
    with _raises(DataFormatError, "e.user", "line 3", "duplicate id '1'"):
        load_recbole(tmp_path / "e")
    write("r/u.data", "1\t1\t5\t100\n")
    write("r/u.user", "1|24|M|technician\n")
    with _raises(DataFormatError, "u.user", "line 1", "expected 5 fields"):
        load_movielens_100k(tmp_path / "r")


def test_raw_100k_errors(write, tmp_path):
    write("r/u.data", "1\t1\t5\t100\n2\t1\t5\tabc\n")
    with _raises(DataFormatError, "u.data", "line 2", "'timestamp'", "'abc'"):
        load_movielens_100k(tmp_path / "r")
    write("s/u.data", "1 1 5 100\n")
    with _raises(DataFormatError, "u.data", "line 1", "expected 4 fields"):
        load_movielens_100k(tmp_path / "s")
    write("t/ratings.dat", "1::2::3\n")
    with _raises(DataFormatError, "ratings.dat", "line 1", "found 3"):
        load_movielens_1m(tmp_path / "t")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.inter"))):
        load_recbole(tmp_path, "none")
    with _raises(DataFormatError, "no dataset files found"):
        load_path(tmp_path)


# ---------------------------------------------------------------------------- load_dataset
def test_load_dataset_by_path_and_by_name_from_cache(ml100k, ml100k_dir, tmp_path):
    assert load_dataset(str(ml100k_dir)).n_interactions == 100_000
    assert load_dataset(ml100k_dir / "ml-100k.inter").n_users == 943
    cache = tmp_path / "cache" / "ml-100k"
    cache.mkdir(parents=True)
    for ext in ("inter", "user", "item"):  # placed "by hand" (symlinks, no copy)
        (cache / f"ml-100k.{ext}").symlink_to(ml100k_dir / f"ml-100k.{ext}")
    ds = load_dataset("ML-100K", tmp_path / "cache", download=False)
    assert ds.name == "ml-100k"
    np.testing.assert_array_equal(ds.items, ml100k.items)


def test_load_dataset_unknown_and_uncached(tmp_path):
    with _raises(UnknownNameError, "unknown dataset 'ml-100'", "did you mean 'ml-100k'",
                 "ml-1m"):
        load_dataset("ml-100", tmp_path)
    with _raises(UnknownNameError, "known datasets: adult, compas, ml-100k, ml-1m"):
        load_dataset("netflix", tmp_path)
    with _raises(TrustrecError, "'ml-1m' is not in", "ml-1m.zip", str(tmp_path)):
        load_dataset("ml-1m", tmp_path, download=False)
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "nope" / "x.csv"))
