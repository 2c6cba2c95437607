"""GroupLens's ML-100K files → RecBole's atomic layout (what the cache may hold → tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustrec.data import CATALOG, load_recbole
from trustrec.data.atomic import movielens_100k_to_atomic
from trustrec.data.fetch import WheelSource
from trustrec.data.loaders import ML100K_GENRES
from trustrec.errors import DataFormatError

#: RecBole's item 267 (no title, no date in GroupLens's file) is spelled "unkonwn" there.
RECBOLE_QUIRK_ITEM = "267"


@pytest.fixture(scope="module")
def converted(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory,
              grouplens_100k) -> Path:
    """The atomic files written back from GroupLens-format files of the real data."""
    root = tmp_path_factory.mktemp("atomic")
    grouplens_100k(ml100k_dir, root / "raw")
    return movielens_100k_to_atomic(root / "raw", root / "ml-100k")


def test_interactions_and_users_come_out_as_recbole_ships_them(converted):
    wheel = next(s for s in CATALOG["ml-100k"].sources if isinstance(s, WheelSource))
    for name in ("ml-100k.inter", "ml-100k.user"):
        digest = hashlib.sha256((converted / name).read_bytes()).hexdigest()
        assert digest == wheel.sha256[name], name


def test_items_match_recbole_except_its_misspelt_unknown(converted, ml100k_dir):
    ours = (converted / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    theirs = (ml100k_dir / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    assert len(ours) == len(theirs) == 1683 and ours[0] == theirs[0]
    differ = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    assert differ == [("267\tunknown\t\tunknown", "267\tunkonwn\tunkonwn\tunknown")]
    # RecBole's rule kept: the last parenthesised part is the "year", even "(V)"
    assert "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\t" \
           "Animation Children's" in ours


def test_the_converted_dataset_equals_the_package_index_copy(converted, ml100k):
    ds = load_recbole(converted, "ml-100k")
    for f in ("users", "items", "timestamps", "ratings", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(ds, f), getattr(ml100k, f), err_msg=f)
    pd.testing.assert_frame_equal(ds.user_attributes, ml100k.user_attributes)
    same = ml100k.item_ids != RECBOLE_QUIRK_ITEM
    pd.testing.assert_frame_equal(ds.item_attributes[same], ml100k.item_attributes[same])
    assert ds.item_attributes.loc[0, "movie_title"] == "Toy Story"
    assert ds.item_attributes.loc[0, "class"] == "Animation Children's Comedy"


def test_title_without_year_takes_the_release_date(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    flags = ["0"] * len(ML100K_GENRES)
    flags[5] = "1"  # Comedy
    (raw / "u.data").write_text("1\t1\t5\t100\n")
    (raw / "u.user").write_text("1|24|M|technician|85711\n")
    (raw / "u.item").write_bytes("|".join(["1", "Amélie", "01-Jan-2001", "", "u", *flags])
                                 .encode("latin-1") + b"\n")
    out = movielens_100k_to_atomic(raw, tmp_path / "out")
    assert (out / "ml-100k.item").read_text(encoding="utf-8").splitlines()[1] == \
        "1\tAmélie\t2001\tComedy"
    with pytest.raises(FileExistsError):
        movielens_100k_to_atomic(raw, out)


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("u.data", "1\t1\t5\n", "u.data: line 1: 3 fields, expected 4"),
    ("u.user", "1|24|M|technician\n", "u.user: line 1: 4 fields, expected 5"),
    ("u.item", "1|A (1995)|||u|" + "|".join(["2"] * 19) + "\n", "u.item: line 1: a genre"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, content, fragment):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = {"u.data": "1\t1\t5\t100\n", "u.user": "1|24|M|technician|85711\n",
            "u.item": "1|A (1995)|||u|" + "|".join(["0"] * 19) + "\n"}
    for fname, text in {**good, name: content}.items():
        (raw / fname).write_text(text)
    with pytest.raises(DataFormatError, match=fragment.replace("|", r"\|")):
        movielens_100k_to_atomic(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_named(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "u.data").write_text("1\t1\t5\t100\n")
    (raw / "u.item").write_text("1|A (1995)|||u|" + "|".join(["0"] * 19) + "\n")
    with pytest.raises(FileNotFoundError, match="u.user"):
        movielens_100k_to_atomic(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
